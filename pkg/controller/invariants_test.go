// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// These tests pin the invariant "never two leaders working at once" on the
// paths where it can break: a Lease taken by another holder, a renewal
// that is slow or hangs, a panic, a shutdown that must end in time, and
// readiness before the caches synced.

// takeLease makes the Lease name holder, for an hour, as an operator's
// edit or another Deployment with the same lease name would.
func takeLease(t *testing.T, cs *fake.Clientset, holder string) {
	t.Helper()
	l, err := cs.CoordinationV1().Leases(testNS).Get(context.Background(), "test-lease", getOpts)
	if err != nil {
		t.Fatal(err)
	}
	now, hour := metav1.NewMicroTime(time.Now()), int32(3600)
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds = &holder, &hour
	l.Spec.AcquireTime, l.Spec.RenewTime = &now, &now
	if _, err := cs.CoordinationV1().Leases(testNS).Update(context.Background(), l, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// optimisticLeases gives the fake's Leases the API server's optimistic
// concurrency: each write gets a new resourceVersion, and an update that
// carries an older one fails with 409 Conflict. client-go's renewal relies
// on it (its fast path writes with the last resourceVersion it saw).
func optimisticLeases(cs *fake.Clientset) {
	var rv atomic.Int64
	stamp := func(a k8stesting.Action) (bool, runtime.Object, error) {
		l := a.(interface{ GetObject() runtime.Object }).GetObject().(*coordinationv1.Lease)
		if a.GetVerb() == "update" {
			cur, err := cs.Tracker().Get(a.GetResource(), l.Namespace, l.Name)
			if err == nil && cur.(*coordinationv1.Lease).ResourceVersion != l.ResourceVersion {
				return true, nil, apierrors.NewConflict(a.GetResource().GroupResource(), l.Name, errors.New("the object has been modified"))
			}
		}
		l.ResourceVersion = strconv.FormatInt(rv.Add(1), 10)
		return false, nil, nil
	}
	cs.PrependReactor("create", "leases", stamp)
	cs.PrependReactor("update", "leases", stamp)
}

// The Lease taken by another holder stops the work at once, seen by the
// Lease watch (with a retry period of an hour, the elector would not look
// again) or by the elector's own Get (with the watch blind). IsLeader is
// false from the cancellation on; the replica neither releases the other
// holder's lease (client-go would: it checks a stale view) nor takes it
// while it is held, and works no more.
func TestLeaseTaken(t *testing.T) {
	for _, via := range []string{"watch", "elector"} {
		t.Run(via, func(t *testing.T) {
			cs := fake.NewClientset()
			optimisticLeases(cs)
			var opts []Option
			retry := 50 * time.Millisecond
			if via == "watch" {
				retry = time.Hour
				opts = []Option{WithLeaseDuration(3 * time.Hour), WithRenewDeadline(2 * time.Hour), WithRetryPeriod(retry)}
			} else {
				cs.PrependWatchReactor("leases", func(k8stesting.Action) (bool, watch.Interface, error) {
					return true, watch.NewFake(), nil // the watch never tells
				})
			}
			m, logs := newTestManager(t, cs, "a", opts...)
			var starts atomic.Int32
			var warnedBefore atomic.Bool // the WARN was logged when the work saw the cancellation
			started, causes, proceed := make(chan struct{}), make(chan error, 1), make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := runAsync(ctx, m, func(ctx context.Context) error {
				if starts.Add(1) == 1 {
					close(started)
				}
				<-ctx.Done()
				warnedBefore.Store(strings.Contains(logs.String(), "stopping the work"))
				causes <- context.Cause(ctx)
				<-proceed
				return nil
			})
			within(t, started, "the work to start")
			takenAt := time.Now()
			takeLease(t, cs, "intruder")
			cause := within(t, causes, "the work to be cancelled after the take-over")
			t.Logf("work cancelled %s after the Lease named another holder (via the %s)", time.Since(takenAt).Round(time.Millisecond), via)
			var taken *leaseTakenError
			if !errors.As(cause, &taken) || taken.holder != "intruder" {
				t.Fatalf("the work's cancel cause = %v, want the Lease held by intruder", cause)
			}
			if !warnedBefore.Load() {
				t.Error("the work saw its cancellation before the WARN naming the holder was logged: a log reader sees the work's return first")
			}
			if m.IsLeader() {
				t.Error("IsLeader() = true after the Lease was taken")
			}
			if code, body := probe(m, "/leader"); code != 503 {
				t.Errorf("/leader = %d %q after the Lease was taken, want 503", code, body)
			}
			close(proceed)
			for !strings.Contains(logs.String(), "the Lease was taken by another holder and the work stopped; contending again") {
				select {
				case err := <-done:
					t.Fatalf("Run returned %v; want it to contend again", err)
				case <-time.After(time.Millisecond):
				}
			}
			time.Sleep(10 * min(retry, 50*time.Millisecond)) // the next round's tries
			if h := holder(t, cs); h != "intruder" {
				t.Errorf("lease holder = %q after the take-over, want intruder (released or taken back while held)", h)
			}
			if n := starts.Load(); n != 1 {
				t.Errorf("the work started %d times, want once: it ran while another holder held the lease", n)
			}
			if want := `msg="the Lease is held by another holder: stopping the work"`; !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "holder=intruder") {
				t.Errorf("logs lack %s holder=intruder:\n%s", want, logs)
			}
			cancel()
			if err := within(t, done, "Run to return"); err != nil {
				t.Fatalf("Run = %v", err)
			}
			if h := holder(t, cs); h != "intruder" {
				t.Errorf("lease holder after shutdown = %q, want intruder", h)
			}
		})
	}
}

// wrapLock makes m's election use wrap(the Lease lock).
func wrapLock(m *Manager, wrap func(resourcelock.Interface) resourcelock.Interface) {
	inner := m.newLock
	m.newLock = func() resourcelock.Interface { return wrap(inner()) }
}

// stallLock stalls Updates that stall selects until their context ends.
type stallLock struct {
	resourcelock.Interface
	stall   func(resourcelock.LeaderElectionRecord) bool
	stalled chan struct{} // gets a value after each stalled Update
}

func (l *stallLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	if l.stall(r) {
		<-ctx.Done()
		l.stalled <- struct{}{}
		return ctx.Err()
	}
	return l.Interface.Update(ctx, r)
}

// One renewal that hangs costs neither the lease nor the work: each
// election request has its own timeout (max(renew deadline / 2, 1 s) =
// 1.5 s here), so client-go's next try renews within the renew deadline.
func TestHungRenewal(t *testing.T) {
	cs := fake.NewClientset()
	m, _ := newTestManager(t, cs, "a", WithLeaseDuration(4*time.Second), WithRenewDeadline(3*time.Second), WithRetryPeriod(500*time.Millisecond))
	var renewals, hung atomic.Int32
	stalled := make(chan struct{}, 1)
	wrapLock(m, func(l resourcelock.Interface) resourcelock.Interface {
		return &stallLock{Interface: l, stalled: stalled, stall: func(r resourcelock.LeaderElectionRecord) bool {
			// the second renewal by this replica hangs, once
			return r.HolderIdentity == "a" && renewals.Add(1) == 2 && hung.Add(1) == 1
		}}
	})
	started, causes := make(chan struct{}), make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := runAsync(ctx, m, func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		causes <- context.Cause(ctx)
		return nil
	})
	within(t, started, "the work to start")
	within(t, stalled, "a renewal to hang and be abandoned")
	for n := renewals.Load(); renewals.Load() < n+2; {
		select {
		case c := <-causes:
			t.Fatalf("the work was cancelled (%v) after one hung renewal", c)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if !m.IsLeader() {
		t.Error("IsLeader() = false after one hung renewal")
	}
	cancel()
	if err := within(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if c := <-causes; !errors.Is(c, errShutdown) {
		t.Errorf("the work's cancel cause = %v, want %v", c, errShutdown)
	}
}

// The whole shutdown ends within the shutdown timeout, even when the
// release hangs (client-go alone would wait a renew deadline for it): the
// work gets the timeout but the release's reserve, the release what is
// left.
func TestShutdownBounded(t *testing.T) {
	cs := fake.NewClientset()
	const timeout = 2 * time.Second // the release's reserve: min(3 s, 2 s / 4) = 0.5 s
	m, logs := newTestManager(t, cs, "a", WithLeaseDuration(10*time.Second), WithRenewDeadline(6*time.Second),
		WithRetryPeriod(time.Second), WithShutdownTimeout(timeout))
	stalled := make(chan struct{}, 1)
	wrapLock(m, func(l resourcelock.Interface) resourcelock.Interface {
		return &stallLock{Interface: l, stalled: stalled, stall: func(r resourcelock.LeaderElectionRecord) bool { return r.HolderIdentity == "" }}
	})
	started := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, m, func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		time.Sleep(1200 * time.Millisecond) // slow, but within the work's 1.5 s
		return nil
	})
	within(t, started, "the work to start")
	cancel()
	cancelled := time.Now()
	if err := within(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v", err)
	}
	took := time.Since(cancelled)
	within(t, stalled, "the release to be tried")
	t.Logf("shutdown took %s with a hung release (shutdown timeout %s)", took.Round(time.Millisecond), timeout)
	if took > timeout+300*time.Millisecond {
		t.Errorf("shutdown took %s, want at most the shutdown timeout %s", took.Round(time.Millisecond), timeout)
	}
	if strings.Contains(logs.String(), "lease released") {
		t.Errorf("logs say the lease was released, but the release hung:\n%s", logs)
	}
}

// A panic in the work, or in a handler added with AddEventHandler, is
// recovered: Run returns it (ErrPanicked) after releasing the lease, as
// after any failed work, and it is logged with its stack and counted.
func TestPanic(t *testing.T) {
	for _, where := range []string{"the work", "an event handler"} {
		t.Run(where, func(t *testing.T) {
			cs := fake.NewClientset(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "c"}})
			ev := &leaseEvents{}
			recordLeaseWrites(cs, ev)
			m, logs := newTestManager(t, cs, "a")
			cms, err := NewInformer(m, m.fake().CoreV1().ConfigMaps)
			if err != nil {
				t.Fatal(err)
			}
			done := runAsync(context.Background(), m, func(ctx context.Context) error {
				if where == "the work" {
					var cm *corev1.ConfigMap
					_ = cm.Name // nil pointer dereference
				}
				err := m.AddEventHandler(ctx, cms, cache.ResourceEventHandlerFuncs{
					AddFunc: func(any) { panic("boom in a handler") },
				})
				if err != nil {
					return err
				}
				<-ctx.Done()
				return nil
			})
			err = within(t, done, "Run to return the panic")
			if !errors.Is(err, ErrPanicked) || !strings.Contains(err.Error(), "panic in "+where) {
				t.Fatalf("Run = %v, want a panic in %s (ErrPanicked)", err, where)
			}
			if n := m.Panics(); n != 1 {
				t.Errorf("Panics() = %d, want 1", n)
			}
			if !strings.Contains(logs.String(), "recovered a panic") || !strings.Contains(logs.String(), "goroutine ") {
				t.Errorf("logs lack the panic and its stack:\n%s", logs)
			}
			if ev.indexOf("release") < 0 {
				t.Errorf("the lease was not released after the panic; events: %q", ev.list())
			}
		})
	}
}

// AddEventHandler's handler gets no event after its term ended, and only
// the work's context may add one.
func TestAddEventHandlerTerm(t *testing.T) {
	cs := fake.NewClientset()
	m, _ := newTestManager(t, cs, "a")
	f := informers.NewSharedInformerFactory(cs, 0)
	inf := f.Core().V1().ConfigMaps().Informer()
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); f.Shutdown() }()
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())

	if err := m.AddEventHandler(ctx, inf, cache.ResourceEventHandlerFuncs{}); err == nil {
		t.Error("AddEventHandler with a context Run did not give = nil error")
	}
	termCtx, end := context.WithCancelCause(ctx)
	termCtx = context.WithValue(termCtx, termKey{}, &term{m: m, cancel: end})
	got := make(chan string, 10)
	if err := m.AddEventHandler(termCtx, inf, cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { got <- obj.(*corev1.ConfigMap).Name },
	}); err != nil {
		t.Fatal(err)
	}
	create := func(name string) {
		if _, err := cs.CoreV1().ConfigMaps(testNS).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create("during")
	if name := within(t, got, "the handler to get an add"); name != "during" {
		t.Fatalf("got %q", name)
	}
	end(nil)
	time.Sleep(100 * time.Millisecond) // the removal runs in its own goroutine, right after the cancellation
	create("after")
	select {
	case name := <-got:
		t.Errorf("the handler got %q after its term ended", name)
	case <-time.After(300 * time.Millisecond):
	}
}

// failLists makes list calls on resource fail while failing is true and
// counts them.
func failLists(cs *fake.Clientset, resource string, failing *atomic.Bool, calls chan<- struct{}) {
	cs.PrependReactor("list", resource, func(k8stesting.Action) (bool, runtime.Object, error) {
		select {
		case calls <- struct{}{}:
		default:
		}
		if failing.Load() {
			return true, nil, apierrors.NewServiceUnavailable("list fails")
		}
		return false, nil, nil
	})
}

// /readyz answers 200 and the work starts only once every informer, the
// Lease's too, has synced; a sync that never completes keeps the replica
// unready and idle until shutdown.
func TestReadyOnlyAfterSync(t *testing.T) {
	for _, resource := range []string{"configmaps", "leases"} {
		t.Run(resource, func(t *testing.T) {
			cs := fake.NewClientset()
			var failing atomic.Bool
			failing.Store(true)
			calls := make(chan struct{}, 1)
			failLists(cs, resource, &failing, calls)
			m, _ := newTestManager(t, cs, "a")
			if _, err := NewInformer(m, m.fake().CoreV1().ConfigMaps); err != nil {
				t.Fatal(err)
			}
			started := make(chan struct{})
			ctx, cancel := context.WithCancel(context.Background())
			done := runAsync(ctx, m, func(ctx context.Context) error { close(started); <-ctx.Done(); return nil })
			within(t, calls, "the informer to list "+resource)
			time.Sleep(200 * time.Millisecond) // the other informer syncs meanwhile
			if code, body := probe(m, "/readyz"); code != 503 {
				t.Errorf("/readyz = %d %q while %s has not synced, want 503", code, body, resource)
			}
			select {
			case <-started:
				t.Errorf("the work started before %s synced", resource)
			default:
			}
			failing.Store(false)
			within(t, started, "the work to start once "+resource+" synced")
			if code, body := probe(m, "/readyz"); code != 200 {
				t.Errorf("/readyz = %d %q after the sync, want 200", code, body)
			}
			cancel()
			if err := within(t, done, "Run to return"); err != nil {
				t.Fatalf("Run = %v", err)
			}
		})
	}
	t.Run("never synced", func(t *testing.T) {
		cs := fake.NewClientset()
		var failing atomic.Bool
		failing.Store(true)
		calls := make(chan struct{}, 1)
		failLists(cs, "configmaps", &failing, calls)
		m, logs := newTestManager(t, cs, "a")
		if _, err := NewInformer(m, m.fake().CoreV1().ConfigMaps); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := runAsync(ctx, m, func(context.Context) error { t.Error("the work started without a synced cache"); return nil })
		within(t, calls, "the informer to list")
		cancel()
		if err := within(t, done, "Run to return"); err != nil {
			t.Fatalf("Run = %v", err)
		}
		if code, _ := probe(m, "/readyz"); code != 503 || strings.Contains(logs.String(), "caches synced") {
			t.Errorf("/readyz = %d, logs:\n%s\nwant 503 and no \"caches synced\"", code, logs)
		}
	})
}
