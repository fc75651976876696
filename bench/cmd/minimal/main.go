// SPDX-License-Identifier: Apache-2.0

// Command minimal is the baseline of make bench: the least a client-go
// program does to GET /api from inside a pod (rest.InClusterConfig, one raw
// GET), and the size of a program that links the typed clientset.
package main

import (
	"context"
	"fmt"
	"os"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

func main() {
	cfg, err := rest.InClusterConfig()
	if err != nil {
		fmt.Fprintln(os.Stderr, "minimal:", err)
		os.Exit(3)
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "minimal:", err)
		os.Exit(3)
	}
	b, err := cs.Discovery().RESTClient().Get().AbsPath("/api").SetHeader("Accept", "application/json").DoRaw(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, "minimal:", err)
		os.Exit(4)
	}
	os.Stdout.Write(append(b, '\n'))
}
