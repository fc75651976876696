// SPDX-License-Identifier: Apache-2.0

//go:build securemetrics

package main

import (
	"sigs.k8s.io/controller-runtime/pkg/metrics/filters"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// metricsOptions: /metrics as kubebuilder's cmd/main.go scaffolds it (its
// --metrics-secure, on by default) and as the example controller serves it:
// HTTPS with a self-signed certificate, each scrape authenticated with a
// TokenReview and authorized with a SubjectAccessReview.
func metricsOptions(addr string) metricsserver.Options {
	return metricsserver.Options{
		BindAddress:    addr,
		SecureServing:  true,
		FilterProvider: filters.WithAuthenticationAndAuthorization,
	}
}
