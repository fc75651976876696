// SPDX-License-Identifier: Apache-2.0

package clients_test

import (
	"context"
	"fmt"
	"log"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/incluster/incluster/pkg/clients"
	"github.com/incluster/incluster/pkg/incluster"
)

// A controller's start: the in-cluster client, then client-go's typed
// clientset on the same connection.
func ExampleKubernetes() {
	c, err := incluster.New(incluster.WithUserAgent("my-controller/v0.1.0"))
	if err != nil {
		log.Fatal(err) // names the variable or file at fault and what to do
	}
	cs, err := clients.Kubernetes(c)
	if err != nil {
		log.Fatal(err)
	}
	pods, err := cs.CoreV1().Pods(c.Namespace()).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		log.Fatal(incluster.Explain(err, "list pods in "+c.Namespace()))
	}
	fmt.Printf("%d pods in %s\n", len(pods.Items), c.Namespace())
}
