// SPDX-License-Identifier: Apache-2.0

//go:build inclustermetrics

package main

import (
	"github.com/incluster/incluster/pkg/controller"
	"github.com/incluster/incluster/pkg/controller/metrics"
)

const mode = "incluster+metrics"

// managerOptions measures the Manager into a Prometheus registry, as the
// example controller does; nothing scrapes it (the figures are the
// registry's and the linked code's cost).
func managerOptions() []controller.Option {
	return []controller.Option{controller.WithMetrics(metrics.New(metrics.WithAddress("0")))}
}
