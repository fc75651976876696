// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"fmt"
	"os"

	utilrand "k8s.io/apimachinery/pkg/util/rand"
)

// PodNameEnv is the variable Identity reads the pod's name from. Set it with
// the downward API:
//
//	env:
//	  - name: POD_NAME
//	    valueFrom: {fieldRef: {fieldPath: metadata.name}}
const PodNameEnv = "POD_NAME"

// identitySuffixLen is the length of the random suffix of an identity.
const identitySuffixLen = 5

// Identity returns the name this process holds a Lease under: the pod's name
// from POD_NAME, "_", and 5 random characters, e.g.
// "example-controller-7d9f8b6c5-x2k4q_b7zq9". Outside a pod (POD_NAME unset or
// empty) the hostname takes the pod's name's place. The suffix tells two
// processes apart that share a name: a container restarted in the same pod,
// or pods with hostNetwork, which all have the node's hostname (kubernetes
// #61151). Each call draws a new suffix.
func Identity() (string, error) {
	return identity(os.Getenv, os.Hostname, func() string { return utilrand.String(identitySuffixLen) })
}

func identity(getenv func(string) string, hostname func() (string, error), suffix func() string) (string, error) {
	name := getenv(PodNameEnv)
	if name == "" {
		h, err := hostname()
		if err != nil || h == "" {
			return "", fmt.Errorf("controller identity: %s is not set and the hostname is unknown (%v): set %s from the downward API (fieldRef metadata.name), or give one with WithIdentity", PodNameEnv, err, PodNameEnv)
		}
		name = h
	}
	return name + "_" + suffix(), nil
}
