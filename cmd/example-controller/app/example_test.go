// SPDX-License-Identifier: Apache-2.0

package app_test

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"

	"github.com/incluster/incluster/cmd/example-controller/app"
)

// The hash the controller writes into incluster.dev/hash: the same for the
// same data and binaryData, whatever the map order.
func ExampleConfigHash() {
	cm := &corev1.ConfigMap{Data: map[string]string{"log-level": "info", "port": "8080"}}
	fmt.Println(app.ConfigHash(cm)[:16])
	// Output: b2fb3f3e19ee0b64
}
