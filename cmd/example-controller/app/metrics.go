// SPDX-License-Identifier: Apache-2.0

//go:build !nometrics

package app

import (
	"errors"

	"github.com/incluster/incluster/pkg/controller"
	"github.com/incluster/incluster/pkg/controller/metrics"
)

// withMetrics measures the Manager and serves /metrics as the flags say.
func withMetrics(opts options) controller.Option {
	mopts := []metrics.Option{metrics.WithAddress(opts.metricsAddress)}
	if !opts.metricsSecure {
		mopts = append(mopts, metrics.WithInsecureServing())
	}
	if opts.metricsCertPath != "" {
		mopts = append(mopts, metrics.WithCertDir(opts.metricsCertPath))
	}
	return controller.WithMetrics(metrics.New(mopts...))
}

// isCertificateError: the metrics' serving certificate cannot be read.
func isCertificateError(err error) bool { return errors.Is(err, metrics.ErrCertificate) }
