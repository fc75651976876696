// SPDX-License-Identifier: Apache-2.0

//go:build clientgo || controllerruntime

package main

import (
	"os"
	"strings"
)

// namespace reads the pod's namespace as a plain client-go or
// controller-runtime program does: the service-account file. (The library
// finds it itself: POD_NAMESPACE, then the same file.)
func namespace() (string, error) {
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}
