// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"log/slog"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	"k8s.io/client-go/util/workqueue"
)

// This file owns what a Manager tells its metrics: the Metrics interface
// and the one place each figure is reported from. The Prometheus side
// (registry, names, the secured /metrics server) is the package
// github.com/incluster/incluster/pkg/controller/metrics; a program that
// does not give WithMetrics links none of it.

// Metrics receives what a Manager measures and serves it. The package
// pkg/controller/metrics implements it with Prometheus, under
// controller-runtime's names; give it with WithMetrics.
type Metrics interface {
	// QueueMetrics is the provider of the loops' workqueues (depth, adds,
	// latency, work duration, unfinished work, retries); each queue is
	// named after its loop.
	QueueMetrics() workqueue.MetricsProvider
	// LoopStarted: a term's loop runs with workers workers.
	LoopStarted(loop string, workers int)
	// ActiveWorkers adds delta to the loop's workers busy reconciling.
	ActiveWorkers(loop string, delta int)
	// Reconciled: one reconcile took d and ended with result: "success",
	// "error" or "requeue_after" (controller-runtime's labels); panicked
	// says whether the error was a recovered panic.
	Reconciled(loop, result string, d time.Duration, panicked bool)
	// Leading: this replica runs the work (true) or not (false).
	Leading(lease string, leading bool)
	// LeaderObserved: the Lease names a holder other than the last seen.
	LeaderObserved(lease, holder string)
	// Renewed: this replica renewed the Lease, at t.
	Renewed(lease string, t time.Time)
	// PreflightMissing: the RBAC rules missing now (0: the preflight passed).
	PreflightMissing(rules int)
	// Access lists what serving needs from the API server (TokenReview and
	// SubjectAccessReview creates): the preflight checks it, Role prints it.
	Access() []authorizationv1.ResourceAttributes
	// Serve starts serving in the background, until stop is called.
	Serve(ctx context.Context, s MetricsServing) (stop func(), err error)
}

// MetricsServing is what a Manager gives Metrics.Serve: its logger, and the
// clients that check a scraper's token.
type MetricsServing struct {
	Log                  *slog.Logger
	TokenReviews         authenticationv1client.TokenReviewsGetter
	SubjectAccessReviews authorizationv1client.SubjectAccessReviewsGetter
}

// WithMetrics measures the Manager into mx and serves it while Run runs, on
// the leader and standbys alike. Without it (or with nil) nothing is
// measured.
func WithMetrics(mx Metrics) Option { return func(o *options) { o.metrics = mx } }

// noMetrics is the Metrics of a Manager without WithMetrics.
type noMetrics struct{}

func (noMetrics) QueueMetrics() workqueue.MetricsProvider               { return nil }
func (noMetrics) LoopStarted(string, int)                               {}
func (noMetrics) ActiveWorkers(string, int)                             {}
func (noMetrics) Reconciled(string, string, time.Duration, bool)        {}
func (noMetrics) Leading(string, bool)                                  {}
func (noMetrics) LeaderObserved(string, string)                         {}
func (noMetrics) Renewed(string, time.Time)                             {}
func (noMetrics) PreflightMissing(int)                                  {}
func (noMetrics) Access() []authorizationv1.ResourceAttributes          { return nil }
func (noMetrics) Serve(context.Context, MetricsServing) (func(), error) { return func() {}, nil }

// serveMetrics starts Metrics.Serve; the replica is a standby until it leads.
func (m *Manager) serveMetrics(ctx context.Context) (stop func(), err error) {
	m.o.metrics.Leading(m.leaseName, false)
	return m.o.metrics.Serve(ctx, MetricsServing{
		Log:                  m.o.logger,
		TokenReviews:         m.cs.AuthenticationV1(),
		SubjectAccessReviews: m.cs.AuthorizationV1(),
	})
}
