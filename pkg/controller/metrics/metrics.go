// SPDX-License-Identifier: Apache-2.0

// Package metrics measures a controller.Manager with Prometheus and serves
// /metrics the way kubebuilder scaffolds it: HTTPS on :8443, each scrape
// authenticated with a TokenReview and authorized with a
// SubjectAccessReview (get on the non-resource URL /metrics).
//
//	mx := metrics.New()
//	m, err := controller.New(c, "my-controller", controller.WithMetrics(mx))
//
// One registry per Metrics (Registry, for the program's own collectors)
// holds, under controller-runtime's names and labels, so that dashboards
// and alerts made for it work:
//
//   - the loops' workqueues: workqueue_depth, workqueue_adds_total,
//     workqueue_queue_duration_seconds, workqueue_work_duration_seconds,
//     workqueue_unfinished_work_seconds,
//     workqueue_longest_running_processor_seconds, workqueue_retries_total
//     (labels name and controller: the loop's name);
//   - the reconciles: controller_runtime_reconcile_total{controller,result}
//     (result success, error, requeue_after),
//     controller_runtime_reconcile_errors_total,
//     controller_runtime_reconcile_panics_total,
//     controller_runtime_reconcile_time_seconds,
//     controller_runtime_max_concurrent_reconciles,
//     controller_runtime_active_workers;
//   - client-go's REST client, for the whole process (client-go has one
//     set of hooks): rest_client_requests_total{code,method,host},
//     rest_client_request_duration_seconds{verb,host},
//     rest_client_rate_limiter_duration_seconds{verb,host} (series only
//     when client-side rate limiting is on: incluster.DefaultQPS turns it
//     off);
//   - the election: leader_election_master_status{name} (1 on the replica
//     that runs the work, 0 on standbys),
//     incluster_leader_election_transitions_total{name} (holders seen
//     change), incluster_leader_election_last_renew_timestamp_seconds{name};
//   - incluster_preflight_missing_rules (RBAC rules missing now);
//   - the Go runtime's and the process's collectors.
package metrics

import (
	"context"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	clientmetrics "k8s.io/client-go/tools/metrics"
	"k8s.io/client-go/util/workqueue"

	"github.com/incluster/incluster/pkg/controller"
)

// DefaultAddress is where New serves /metrics: kubebuilder's port.
const DefaultAddress = ":8443"

// Metrics is a controller.Metrics on a Prometheus registry of its own.
type Metrics struct {
	o   options
	reg *prometheus.Registry

	queue queueMetrics

	reconciles     *prometheus.CounterVec
	reconcileErrs  *prometheus.CounterVec
	panics         *prometheus.CounterVec
	reconcileTime  *prometheus.HistogramVec
	maxConcurrent  *prometheus.GaugeVec
	activeWorkers  *prometheus.GaugeVec
	leader         *prometheus.GaugeVec
	transitions    *prometheus.CounterVec
	lastRenew      *prometheus.GaugeVec
	preflightRules prometheus.Gauge

	mu       sync.Mutex
	lastSeen map[string]string // lease -> holder last observed

	addr atomic.Value // the listener's address, once Serve listens (for tests)
}

var _ controller.Metrics = (*Metrics)(nil)

// Option changes New's Metrics.
type Option func(*options)

type options struct {
	address  string
	certDir  string
	insecure bool
}

// WithAddress sets where /metrics is served (default ":8443"); "" or "0"
// serves nothing (the figures are still measured: Registry).
func WithAddress(addr string) Option { return func(o *options) { o.address = addr } }

// WithCertDir serves the certificate and key in dir's tls.crt and tls.key
// (a mounted kubernetes.io/tls Secret, e.g. cert-manager's), and serves the
// new ones within seconds when they change, without a restart. Without it
// a self-signed certificate is made at start.
func WithCertDir(dir string) Option { return func(o *options) { o.certDir = dir } }

// WithInsecureServing serves /metrics over plain HTTP to anyone, without
// authentication and authorization: for development only (it says so in
// the log), as kubebuilder's --metrics-secure=false.
func WithInsecureServing() Option { return func(o *options) { o.insecure = true } }

// New makes a Metrics with its registry; give it to controller.New with
// controller.WithMetrics. It sends no request and listens nowhere yet.
func New(opts ...Option) *Metrics {
	o := options{address: DefaultAddress}
	for _, opt := range opts {
		opt(&o)
	}
	x := &Metrics{o: o, reg: prometheus.NewRegistry(), lastSeen: map[string]string{}}
	x.queue = newQueueMetrics()
	loop := []string{"controller"}
	x.reconciles = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "controller_runtime_reconcile_total", Help: "Total number of reconciliations per controller",
	}, []string{"controller", "result"})
	x.reconcileErrs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "controller_runtime_reconcile_errors_total", Help: "Total number of reconciliation errors per controller",
	}, loop)
	x.panics = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "controller_runtime_reconcile_panics_total", Help: "Total number of reconciliation panics per controller",
	}, loop)
	x.reconcileTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "controller_runtime_reconcile_time_seconds", Help: "Length of time per reconciliation per controller",
		Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0,
			1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5, 6, 7, 8, 9, 10, 15, 20, 25, 30, 40, 50, 60},
	}, loop)
	x.maxConcurrent = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "controller_runtime_max_concurrent_reconciles", Help: "Maximum number of concurrent reconciles per controller",
	}, loop)
	x.activeWorkers = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "controller_runtime_active_workers", Help: "Number of currently used workers per controller",
	}, loop)
	x.leader = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "leader_election_master_status",
		Help: "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease. Please make sure to group by name.",
	}, []string{"name"})
	x.transitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "incluster_leader_election_transitions_total", Help: "Times this replica saw the Lease's holder change, per lease name.",
	}, []string{"name"})
	x.lastRenew = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "incluster_leader_election_last_renew_timestamp_seconds", Help: "When this replica last renewed the Lease (renewTime, Unix seconds), per lease name.",
	}, []string{"name"})
	x.preflightRules = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "incluster_preflight_missing_rules", Help: "RBAC rules the preflight finds missing now (0: every permission needed is granted).",
	})
	registerClientGo()
	x.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		restRequests, restLatency, restRateLimiter,
		x.reconciles, x.reconcileErrs, x.panics, x.reconcileTime, x.maxConcurrent, x.activeWorkers,
		x.leader, x.transitions, x.lastRenew, x.preflightRules,
	)
	x.queue.register(x.reg)
	return x
}

// Registry is where the figures are, for the program's own collectors
// (they are served with the rest).
func (x *Metrics) Registry() *prometheus.Registry { return x.reg }

// QueueMetrics implements controller.Metrics.
func (x *Metrics) QueueMetrics() workqueue.MetricsProvider { return x.queue }

// LoopStarted implements controller.Metrics.
func (x *Metrics) LoopStarted(loop string, workers int) {
	x.maxConcurrent.WithLabelValues(loop).Set(float64(workers))
	x.activeWorkers.WithLabelValues(loop).Add(0)
	for _, r := range []string{"success", "error", "requeue_after"} {
		x.reconciles.WithLabelValues(loop, r).Add(0) // the series exist from the start
	}
	x.reconcileErrs.WithLabelValues(loop).Add(0)
	x.panics.WithLabelValues(loop).Add(0)
}

// ActiveWorkers implements controller.Metrics.
func (x *Metrics) ActiveWorkers(loop string, delta int) {
	x.activeWorkers.WithLabelValues(loop).Add(float64(delta))
}

// Reconciled implements controller.Metrics.
func (x *Metrics) Reconciled(loop, result string, d time.Duration, panicked bool) {
	x.reconciles.WithLabelValues(loop, result).Inc()
	x.reconcileTime.WithLabelValues(loop).Observe(d.Seconds())
	if result == "error" {
		x.reconcileErrs.WithLabelValues(loop).Inc()
	}
	if panicked {
		x.panics.WithLabelValues(loop).Inc()
	}
}

// Leading implements controller.Metrics.
func (x *Metrics) Leading(lease string, leading bool) {
	v := 0.0
	if leading {
		v = 1
	}
	x.leader.WithLabelValues(lease).Set(v)
}

// LeaderObserved implements controller.Metrics: a change of holder after
// the first one seen counts as a transition.
func (x *Metrics) LeaderObserved(lease, holder string) {
	x.mu.Lock()
	last, seen := x.lastSeen[lease]
	x.lastSeen[lease] = holder
	x.mu.Unlock()
	c := x.transitions.WithLabelValues(lease)
	if seen && last != holder {
		c.Inc()
	}
}

// Renewed implements controller.Metrics.
func (x *Metrics) Renewed(lease string, t time.Time) {
	x.lastRenew.WithLabelValues(lease).Set(float64(t.UnixMilli()) / 1000)
}

// PreflightMissing implements controller.Metrics.
func (x *Metrics) PreflightMissing(rules int) { x.preflightRules.Set(float64(rules)) }

// Access implements controller.Metrics: checking a scraper's token and its
// permission takes creating TokenReviews and SubjectAccessReviews (cluster
// scope), unless WithInsecureServing or no address.
func (x *Metrics) Access() []authorizationv1.ResourceAttributes {
	if x.o.insecure || !x.serving() {
		return nil
	}
	return []authorizationv1.ResourceAttributes{
		{Verb: "create", Group: authenticationv1.GroupName, Resource: "tokenreviews"},
		{Verb: "create", Group: authorizationv1.GroupName, Resource: "subjectaccessreviews"},
	}
}

func (x *Metrics) serving() bool { return x.o.address != "" && x.o.address != "0" }

// queueMetrics is the loops' workqueue.MetricsProvider, controller-runtime's
// series: labels name and controller, both the loop's name.
type queueMetrics struct {
	depth, unfinished, longest *prometheus.GaugeVec
	adds, retries              *prometheus.CounterVec
	latency, work              *prometheus.HistogramVec
}

func newQueueMetrics() queueMetrics {
	labels := []string{"name", "controller"}
	gauge := func(name, help string) *prometheus.GaugeVec {
		return prometheus.NewGaugeVec(prometheus.GaugeOpts{Subsystem: "workqueue", Name: name, Help: help}, labels)
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Subsystem: "workqueue", Name: name, Help: help}, labels)
	}
	histogram := func(name, help string) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{Subsystem: "workqueue", Name: name, Help: help,
			Buckets: prometheus.ExponentialBuckets(10e-9, 10, 12)}, labels)
	}
	return queueMetrics{
		depth:      gauge("depth", "Current depth of workqueue"),
		unfinished: gauge("unfinished_work_seconds", "How many seconds of work has been done that is in progress and hasn't been observed by work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by observing the rate at which this increases."),
		longest:    gauge("longest_running_processor_seconds", "How many seconds has the longest running processor for workqueue been running."),
		adds:       counter("adds_total", "Total number of adds handled by workqueue"),
		retries:    counter("retries_total", "Total number of retries handled by workqueue"),
		latency:    histogram("queue_duration_seconds", "How long in seconds an item stays in workqueue before being requested"),
		work:       histogram("work_duration_seconds", "How long in seconds processing an item from workqueue takes."),
	}
}

func (q queueMetrics) register(reg prometheus.Registerer) {
	reg.MustRegister(q.depth, q.unfinished, q.longest, q.adds, q.retries, q.latency, q.work)
}

func (q queueMetrics) NewDepthMetric(name string) workqueue.GaugeMetric {
	return q.depth.WithLabelValues(name, name)
}

func (q queueMetrics) NewAddsMetric(name string) workqueue.CounterMetric {
	return q.adds.WithLabelValues(name, name)
}

func (q queueMetrics) NewLatencyMetric(name string) workqueue.HistogramMetric {
	return q.latency.WithLabelValues(name, name)
}

func (q queueMetrics) NewWorkDurationMetric(name string) workqueue.HistogramMetric {
	return q.work.WithLabelValues(name, name)
}

func (q queueMetrics) NewUnfinishedWorkSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return q.unfinished.WithLabelValues(name, name)
}

func (q queueMetrics) NewLongestRunningProcessorSecondsMetric(name string) workqueue.SettableGaugeMetric {
	return q.longest.WithLabelValues(name, name)
}

func (q queueMetrics) NewRetriesMetric(name string) workqueue.CounterMetric {
	return q.retries.WithLabelValues(name, name)
}

// client-go's REST client metrics are process-wide: client-go takes one set
// of hooks (the first Register wins), so every Metrics serves the same.
var (
	restRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "rest_client_requests_total", Help: "Number of HTTP requests, partitioned by status code, method, and host.",
	}, []string{"code", "method", "host"})
	restBuckets = []float64{0.005, 0.025, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0}
	restLatency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "rest_client_request_duration_seconds", Help: "Request latency in seconds. Broken down by verb and host.", Buckets: restBuckets,
	}, []string{"verb", "host"})
	restRateLimiter = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "rest_client_rate_limiter_duration_seconds", Help: "Client side rate limiter latency in seconds. Broken down by verb, and host.", Buckets: restBuckets,
	}, []string{"verb", "host"})
	clientGoOnce sync.Once
)

func registerClientGo() {
	clientGoOnce.Do(func() {
		clientmetrics.Register(clientmetrics.RegisterOpts{
			RequestResult:      resultAdapter{restRequests},
			RequestLatency:     latencyAdapter{restLatency},
			RateLimiterLatency: latencyAdapter{restRateLimiter},
		})
	})
}

type resultAdapter struct{ *prometheus.CounterVec }

func (a resultAdapter) Increment(_ context.Context, code, method, host string) {
	a.WithLabelValues(code, method, host).Inc()
}

type latencyAdapter struct{ *prometheus.HistogramVec }

func (a latencyAdapter) Observe(_ context.Context, verb string, u url.URL, d time.Duration) {
	a.WithLabelValues(verb, u.Host).Observe(d.Seconds())
}
