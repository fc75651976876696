// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/incluster/incluster/pkg/controller"
)

// value returns the value of the series name{labels} in reg, and whether it
// is there.
func value(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	series:
		for _, m := range f.GetMetric() {
			for k, v := range labels {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == k && l.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				return m.GetCounter().GetValue(), true
			case dto.MetricType_GAUGE:
				return m.GetGauge().GetValue(), true
			case dto.MetricType_HISTOGRAM:
				return float64(m.GetHistogram().GetSampleCount()), true
			}
		}
	}
	return 0, false
}

// waitValue waits up to 5 s for name{labels} to be want.
func waitValue(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string, want float64) {
	t.Helper()
	var got float64
	var ok bool
	for range 500 {
		if got, ok = value(t, reg, name, labels); ok && got == want {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%s%v = %v (present: %v), want %v", name, labels, got, ok, want)
}

// newMetricsManager is a Manager on cs with metrics (not served), as the
// leader "me" of Lease app/lease, and its ConfigMap informer.
func newMetricsManager(t *testing.T, cs *fake.Clientset) (*controller.Manager, *Metrics, *controller.Informer[*corev1.ConfigMap]) {
	t.Helper()
	mx := New(WithAddress("0"))
	m, err := controller.NewForClientset(cs, "app", "lease", controller.WithMetrics(mx),
		controller.WithAccessCheck(controller.AllowAll), controller.WithProbeAddress("0"),
		controller.WithIdentity("me"), controller.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	cms, err := controller.NewInformer(m, cs.CoreV1().ConfigMaps)
	if err != nil {
		t.Fatal(err)
	}
	return m, mx, cms
}

// TestManagerMetrics runs a Manager on fakes with a loop whose reconciles
// succeed, fail, panic and requeue, and reads the series a scraper would.
func TestManagerMetrics(t *testing.T) {
	cs := fake.NewClientset()
	for _, name := range []string{"ok", "fails", "panics", "requeues"} {
		if _, err := cs.CoreV1().ConfigMaps("app").Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	m, mx, cms := newMetricsManager(t, cs)
	var failed, panicked atomic.Bool
	loop := m.Loop("cms", cms, func(_ context.Context, req controller.Request) (controller.Result, error) {
		switch req.Name {
		case "fails":
			if !failed.Swap(true) {
				return controller.Result{}, errors.New("once")
			}
		case "panics":
			if !panicked.Swap(true) {
				panic("once")
			}
		case "requeues":
			return controller.Result{RequeueAfter: time.Hour}, nil
		}
		return controller.Result{}, nil
	}, controller.Workers(3))

	reg := mx.Registry()
	lease := map[string]string{"name": "lease"}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- m.Run(ctx, loop.Work) }()

	waitValue(t, reg, "leader_election_master_status", lease, 1)
	cm := map[string]string{"controller": "cms"}
	waitValue(t, reg, "controller_runtime_reconcile_total", map[string]string{"controller": "cms", "result": "success"}, 3) // ok; fails and panics after their retry
	waitValue(t, reg, "controller_runtime_reconcile_total", map[string]string{"controller": "cms", "result": "error"}, 2)
	waitValue(t, reg, "controller_runtime_reconcile_total", map[string]string{"controller": "cms", "result": "requeue_after"}, 1)
	waitValue(t, reg, "controller_runtime_reconcile_errors_total", cm, 2)
	waitValue(t, reg, "controller_runtime_reconcile_panics_total", cm, 1)
	waitValue(t, reg, "controller_runtime_reconcile_time_seconds", cm, 6)
	waitValue(t, reg, "controller_runtime_max_concurrent_reconciles", cm, 3)
	waitValue(t, reg, "controller_runtime_active_workers", cm, 0)
	q := map[string]string{"name": "cms", "controller": "cms"}
	waitValue(t, reg, "workqueue_adds_total", q, 6) // 4 from the informer, 2 retries
	waitValue(t, reg, "workqueue_retries_total", q, 3)
	waitValue(t, reg, "workqueue_depth", q, 0)
	waitValue(t, reg, "workqueue_work_duration_seconds", q, 6)
	waitValue(t, reg, "incluster_preflight_missing_rules", nil, 0)
	if v, ok := value(t, reg, "incluster_leader_election_last_renew_timestamp_seconds", lease); !ok || time.Since(time.UnixMilli(int64(v*1000))) > time.Minute {
		t.Errorf("last renew timestamp = %v (present: %v), want about now", v, ok)
	}
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := value(t, reg, name, nil); !ok {
			t.Errorf("%s is missing: want the Go and process collectors", name)
		}
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitValue(t, reg, "leader_election_master_status", lease, 0)
}

// A term that ends with objects queued leaves workqueue_depth at 0, not at
// what was queued: the queue goes with the term.
func TestQueueDepthAfterTerm(t *testing.T) {
	cs := fake.NewClientset()
	for i := range 20 {
		if _, err := cs.CoreV1().ConfigMaps("app").Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: fmt.Sprintf("cm-%02d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	m, mx, cms := newMetricsManager(t, cs)
	// One worker, whose first reconcile lasts until the term ends: the
	// others stay queued.
	loop := m.Loop("cms", cms, func(ctx context.Context, _ controller.Request) (controller.Result, error) {
		<-ctx.Done()
		return controller.Result{}, nil
	}, controller.Workers(1))
	reg := mx.Registry()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- m.Run(ctx, loop.Work) }()
	q := map[string]string{"name": "cms", "controller": "cms"}
	waitValue(t, reg, "workqueue_depth", q, 19)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	waitValue(t, reg, "workqueue_depth", q, 0)
}

// TestFirstPassPaced: a term's first pass queues the objects the cache
// holds as the workers take them, not all at once: with 1,000 ConfigMaps
// and one worker the queue never holds more than 100 (a queue's maps keep
// the size they once had), and every one is reconciled.
func TestFirstPassPaced(t *testing.T) {
	const n = 1000
	cs := fake.NewClientset()
	for i := range n {
		if _, err := cs.CoreV1().ConfigMaps("app").Create(t.Context(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: fmt.Sprintf("cm-%04d", i)}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	m, mx, cms := newMetricsManager(t, cs)
	reg := mx.Registry()
	q := map[string]string{"name": "cms", "controller": "cms"}
	var mu sync.Mutex
	seen, deepest := map[string]bool{}, 0.0
	all := make(chan struct{})
	loop := m.Loop("cms", cms, func(_ context.Context, req controller.Request) (controller.Result, error) {
		depth, _ := value(t, reg, "workqueue_depth", q)
		mu.Lock()
		defer mu.Unlock()
		deepest = max(deepest, depth)
		if seen[req.Name] = true; len(seen) == n {
			close(all)
		}
		return controller.Result{}, nil
	}, controller.Workers(1))
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- m.Run(ctx, loop.Work) }()
	select {
	case <-all:
	case <-time.After(30 * time.Second):
		mu.Lock()
		t.Errorf("%d of %d ConfigMaps reconciled after 30 s", len(seen), n)
		mu.Unlock()
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if deepest > 100 {
		t.Errorf("the queue held %v objects at once in the first pass; want at most 100", deepest)
	}
}

// TestLeaderObserved counts changes of holder, not the first one seen.
func TestLeaderObserved(t *testing.T) {
	mx := New(WithAddress("0"))
	for _, h := range []string{"a", "a", "b", "a"} {
		mx.LeaderObserved("lease", h)
	}
	if v, _ := value(t, mx.Registry(), "incluster_leader_election_transitions_total", map[string]string{"name": "lease"}); v != 2 {
		t.Errorf("transitions = %v after holders a, a, b, a; want 2", v)
	}
}

// TestAccess: the secure filter's two creates are checked by the preflight
// and printed with the Role; insecure or not served: none.
func TestAccess(t *testing.T) {
	cs := fake.NewClientset()
	m, err := controller.NewForClientset(cs, "app", "lease", controller.WithMetrics(New()), controller.WithIdentity("me"))
	if err != nil {
		t.Fatal(err)
	}
	role := m.Role("r", "")
	for _, want := range []string{"kind: ClusterRole", `resources: ["tokenreviews"]`, `resources: ["subjectaccessreviews"]`} {
		if !strings.Contains(role, want) {
			t.Errorf("Role has no %s:\n%s", want, role)
		}
	}
	for _, mx := range []*Metrics{New(WithInsecureServing()), New(WithAddress("0"))} {
		if a := mx.Access(); len(a) != 0 {
			t.Errorf("Access() = %v, want none", a)
		}
	}
}

// TestPreflightChecksServingAccess: without create on tokenreviews the
// Manager stays in its RBAC preflight, not Ready, and /readyz names the
// ClusterRole rule to add; the gauge counts it.
func TestPreflightChecksServingAccess(t *testing.T) {
	cs := fake.NewClientset()
	mx := New(WithAddress("127.0.0.1:0"))
	m, err := controller.NewForClientset(cs, "app", "lease", controller.WithMetrics(mx), controller.WithIdentity("me"),
		controller.WithProbeAddress("0"), controller.WithPreflightInterval(10*time.Millisecond),
		controller.WithLogger(slog.New(slog.DiscardHandler)),
		controller.WithAccessCheck(func(_ context.Context, a authorizationv1.ResourceAttributes) (bool, error) {
			return a.Resource != "tokenreviews", nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- m.Run(ctx, func(ctx context.Context) error { <-ctx.Done(); return nil }) }()
	waitValue(t, mx.Registry(), "incluster_preflight_missing_rules", nil, 1)
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	want := `add to a ClusterRole bound to the service account by a ClusterRoleBinding: apiGroups ["authentication.k8s.io"] resources ["tokenreviews"] verbs ["create"]`
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), want) {
		t.Errorf("/readyz: %d %s; want 503 naming %s", rec.Code, rec.Body.String(), want)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
