// SPDX-License-Identifier: Apache-2.0

//go:build nometrics

package app

import "github.com/incluster/incluster/pkg/controller"

// withMetrics, built with -tags nometrics (make bench compares the binary
// sizes): nothing is measured nor served, and no Prometheus code is linked.
func withMetrics(options) controller.Option { return controller.WithMetrics(nil) }

func isCertificateError(error) bool { return false }
