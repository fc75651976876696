// SPDX-License-Identifier: Apache-2.0

//go:build !securemetrics

package main

import metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

// metricsOptions: controller-runtime's default, plain HTTP and no check of
// who scrapes.
func metricsOptions(addr string) metricsserver.Options {
	return metricsserver.Options{BindAddress: addr}
}
