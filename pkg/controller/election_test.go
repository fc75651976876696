// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

var getOpts = metav1.GetOptions{}

// runAsync runs m.Run in a goroutine; the channel gets its error.
func runAsync(ctx context.Context, m *Manager, work Work) <-chan error {
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, work) }()
	return done
}

// The safe handoff on shutdown: the work's context is cancelled, and the
// lease is released only after the work has returned; Run returns nil.
func TestShutdownReleasesAfterWorkReturned(t *testing.T) {
	cs := fake.NewClientset()
	ev := &leaseEvents{}
	recordLeaseWrites(cs, ev)
	m, _ := newTestManager(t, cs, "a")
	started := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, m, func(ctx context.Context) error {
		close(started)
		<-ctx.Done()
		ev.add("work returned")
		return nil
	})
	within(t, started, "the work to start")
	if !m.IsLeader() {
		t.Error("IsLeader() = false while the work runs")
	}
	cancel()
	if err := within(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	returned, released := ev.indexOf("work returned"), ev.indexOf("release")
	if returned < 0 || released < 0 || released < returned {
		t.Fatalf("want the work to return, then the release; events: %q", ev.list())
	}
	if h := holder(t, cs); h != "" {
		t.Errorf("lease holder after shutdown = %q, want none (released)", h)
	}
}

// A work that ignores its context beyond the shutdown timeout: no release
// (the lease expires instead), and Run says so.
func TestShutdownTimeoutDoesNotRelease(t *testing.T) {
	cs := fake.NewClientset()
	ev := &leaseEvents{}
	recordLeaseWrites(cs, ev)
	m, logs := newTestManager(t, cs, "a", WithShutdownTimeout(20*time.Millisecond))
	started, unblock := make(chan struct{}), make(chan struct{})
	defer close(unblock)
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, m, func(context.Context) error {
		close(started)
		<-unblock // ignores its context
		return nil
	})
	within(t, started, "the work to start")
	cancel()
	if err := within(t, done, "Run to return"); !errors.Is(err, ErrWorkStillRunning) {
		t.Fatalf("Run = %v, want ErrWorkStillRunning", err)
	}
	if i := ev.indexOf("release"); i >= 0 {
		t.Fatalf("the lease was released while the work still runs; events: %q", ev.list())
	}
	if h := holder(t, cs); h != "a" {
		t.Errorf("lease holder = %q, want a (left to expire)", h)
	}
	if want := "the work did not return within the shutdown timeout"; !strings.Contains(logs.String(), want) {
		t.Errorf("logs lack %q:\n%s", want, logs)
	}
}

// Two replicas on one API server: the standby's work starts only after the
// leader's work has returned, and the leader's release is what hands over.
func TestHandoffBetweenReplicas(t *testing.T) {
	cs := fake.NewClientset()
	ev := &leaseEvents{}
	recordLeaseWrites(cs, ev)
	work := func(name string, started chan<- struct{}) Work {
		return func(ctx context.Context) error {
			ev.add(name + " started")
			close(started)
			<-ctx.Done()
			ev.add(name + " returned")
			return nil
		}
	}
	a, _ := newTestManager(t, cs, "a")
	b, _ := newTestManager(t, cs, "b")
	aStarted, bStarted := make(chan struct{}), make(chan struct{})
	actx, acancel := context.WithCancel(context.Background())
	adone := runAsync(actx, a, work("a", aStarted))
	within(t, aStarted, "a to lead")
	bctx, bcancel := context.WithCancel(context.Background())
	defer bcancel()
	bdone := runAsync(bctx, b, work("b", bStarted))

	acancel()
	if err := within(t, adone, "a's Run to return"); err != nil {
		t.Fatalf("a: Run = %v", err)
	}
	within(t, bStarted, "b to lead after a's release")
	bcancel()
	if err := within(t, bdone, "b's Run to return"); err != nil {
		t.Fatalf("b: Run = %v", err)
	}
	evs := ev.list()
	aRet, rel, bAcq, bStart := ev.indexOf("a returned"), ev.indexOf("release"), ev.indexOf("renew b"), ev.indexOf("b started")
	if !(aRet >= 0 && aRet < rel && rel < bAcq && bAcq < bStart) {
		t.Fatalf("want: a returned < release < b acquires < b started; events: %q", evs)
	}
}

// A standby takes a released lease at once, not at its next try: with a
// retry period of an hour, only the watch on the Lease can make b lead
// within the test's time.
func TestStandbyTakesReleasedLeaseAtOnce(t *testing.T) {
	cs := fake.NewClientset()
	slow := []Option{WithLeaseDuration(3 * time.Hour), WithRenewDeadline(2 * time.Hour), WithRetryPeriod(time.Hour)}
	a, _ := newTestManager(t, cs, "a", slow...)
	b, blogs := newTestManager(t, cs, "b", slow...)
	aStarted, bStarted := make(chan struct{}), make(chan struct{})
	actx, acancel := context.WithCancel(context.Background())
	adone := runAsync(actx, a, func(ctx context.Context) error { close(aStarted); <-ctx.Done(); return nil })
	within(t, aStarted, "a to lead")
	bctx, bcancel := context.WithCancel(context.Background())
	defer bcancel()
	bdone := runAsync(bctx, b, func(ctx context.Context) error { close(bStarted); <-ctx.Done(); return nil })
	observed := make(chan struct{})
	go func() { // b's first try has seen a holding the lease: its next is an hour away
		for l := b.observedLeader.Load(); l == nil || *l != "a"; l = b.observedLeader.Load() {
			time.Sleep(time.Millisecond)
		}
		close(observed)
	}()
	within(t, observed, "b to see a as the leader")

	acancel()
	if err := within(t, adone, "a's Run to return"); err != nil {
		t.Fatalf("a: Run = %v", err)
	}
	within(t, bStarted, "b to lead after a's release, before its next try")
	if !strings.Contains(blogs.String(), "the lease was released: contending at once") {
		t.Errorf("b did not say why it contended again; log:\n%s", blogs)
	}
	bcancel()
	if err := within(t, bdone, "b's Run to return"); err != nil {
		t.Fatalf("b: Run = %v", err)
	}
}

// A standby never writes the Lease and shuts down at once; it is ready,
// and not the leader.
func TestStandby(t *testing.T) {
	other := "someone-else"
	dur := int32(15)
	now := metav1.NewMicroTime(time.Now())
	cs := fake.NewClientset(&coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "test-lease"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &other, LeaseDurationSeconds: &dur, AcquireTime: &now, RenewTime: &now},
	})
	ev := &leaseEvents{}
	recordLeaseWrites(cs, ev)
	contending := make(chan struct{})
	var once sync.Once
	cs.PrependReactor("get", "leases", func(k8stesting.Action) (bool, runtime.Object, error) {
		once.Do(func() { close(contending) })
		return false, nil, nil
	})
	m, _ := newTestManager(t, cs, "b")
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, m, func(context.Context) error { t.Error("the standby's work ran"); return nil })
	within(t, contending, "the standby to contend")
	for _, p := range []struct {
		path string
		code int
	}{{"/readyz", 200}, {"/leader", 503}, {"/healthz", 200}} {
		if code, body := probe(m, p.path); code != p.code {
			t.Errorf("standby %s = %d %q, want %d", p.path, code, body, p.code)
		}
	}
	cancel()
	if err := within(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if evs := ev.list(); len(evs) != 0 {
		t.Errorf("the standby wrote the Lease: %q", evs)
	}
}

// Renewing fails for longer than the renew deadline (an API outage): the
// watchdog cancels the work at the renew deadline, before client-go gives
// up renewing (a retry period later); the lease is never released while the
// work runs, even though it takes several retry periods to return; and the
// replica contends again once it has returned (default), or Run returns
// ErrLeadershipLost (WithExitOnLostLeadership).
func TestLostLease(t *testing.T) {
	for _, exit := range []bool{false, true} {
		t.Run(fmt.Sprintf("exit=%v", exit), func(t *testing.T) {
			cs := fake.NewClientset()
			var outage, running atomic.Bool
			var releasedWhileRunning atomic.Bool
			cs.PrependReactor("update", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
				l := a.(k8stesting.UpdateAction).GetObject().(*coordinationv1.Lease)
				if l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
					if running.Load() {
						releasedWhileRunning.Store(true)
					}
				}
				if outage.Load() {
					return true, nil, apierrors.NewServiceUnavailable("outage")
				}
				return false, nil, nil
			})
			// client-go gives up a retry period (200 ms) after the watchdog.
			opts := []Option{WithLeaseDuration(2 * time.Second), WithRenewDeadline(300 * time.Millisecond), WithRetryPeriod(200 * time.Millisecond)}
			if exit {
				opts = append(opts, WithExitOnLostLeadership())
			}
			m, _ := newTestManager(t, cs, "a", opts...)
			starts := make(chan int, 2)
			causes := make(chan error, 2)
			var n atomic.Int32
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := runAsync(ctx, m, func(ctx context.Context) error {
				running.Store(true)
				starts <- int(n.Add(1))
				<-ctx.Done()
				causes <- context.Cause(ctx)
				time.Sleep(600 * time.Millisecond) // slow to return: client-go tries to release meanwhile
				running.Store(false)
				return nil
			})
			within(t, starts, "the work to start")
			outage.Store(true)
			cause := within(t, causes, "the work to be cancelled by the outage")
			if !errors.Is(cause, errRenewOverdue) {
				t.Errorf("the work's cancel cause = %v, want %v (the watchdog, before client-go stops renewing)", cause, errRenewOverdue)
			}
			if m.IsLeader() {
				t.Error("IsLeader() = true once the work was cancelled for an overdue renewal")
			}
			if exit {
				if err := within(t, done, "Run to return"); !errors.Is(err, ErrLeadershipLost) {
					t.Fatalf("Run = %v, want ErrLeadershipLost", err)
				}
			} else {
				outage.Store(false)
				if i := within(t, starts, "the work to start again after the outage"); i != 2 {
					t.Errorf("start #%d, want #2", i)
				}
				cancel()
				if err := within(t, done, "Run to return"); err != nil {
					t.Fatalf("Run = %v", err)
				}
			}
			if releasedWhileRunning.Load() {
				t.Error("the lease was released while the work ran")
			}
		})
	}
}

// The work returning on its own ends Run with its error, after the release.
func TestWorkReturnsOnItsOwn(t *testing.T) {
	cs := fake.NewClientset()
	ev := &leaseEvents{}
	recordLeaseWrites(cs, ev)
	m, _ := newTestManager(t, cs, "a")
	boom := errors.New("boom")
	err := m.Run(context.Background(), func(context.Context) error { return boom })
	if err == nil || err.Error() != "the work failed: boom" {
		t.Errorf("Run = %v, want: the work failed: boom", err)
	}
	if !errors.Is(err, boom) {
		t.Fatalf("Run = %v, want boom", err)
	}
	if ev.indexOf("release") < 0 {
		t.Errorf("no release after the work returned; events: %q", ev.list())
	}
}

// fakeLock is a resourcelock.Interface that counts writes; Get returns
// record, not found if nil.
type fakeLock struct {
	id       string
	updates  []resourcelock.LeaderElectionRecord
	failNext error
	record   *resourcelock.LeaderElectionRecord
}

func (l *fakeLock) Get(context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	if l.record != nil {
		r := *l.record
		return &r, []byte(r.HolderIdentity), nil
	}
	return nil, nil, apierrors.NewNotFound(schema.GroupResource{Resource: "leases"}, "x")
}
func (l *fakeLock) Create(_ context.Context, r resourcelock.LeaderElectionRecord) error {
	return l.Update(context.Background(), r)
}
func (l *fakeLock) Update(_ context.Context, r resourcelock.LeaderElectionRecord) error {
	if err := l.failNext; err != nil {
		l.failNext = nil
		return err
	}
	l.updates = append(l.updates, r)
	return nil
}
func (l *fakeLock) RecordEvent(string) {}
func (l *fakeLock) Identity() string   { return l.id }
func (l *fakeLock) Describe() string   { return "fake" }
func (l *fakeLock) holders() []string {
	var h []string
	for _, u := range l.updates {
		h = append(h, u.HolderIdentity)
	}
	return h
}

// renewal is the record client-go writes to renew: stamped with its clock.
func renewal(id string, at time.Time) resourcelock.LeaderElectionRecord {
	return resourcelock.LeaderElectionRecord{HolderIdentity: id, RenewTime: metav1.NewTime(at)}
}

func TestLeaseGate(t *testing.T) {
	now := time.Unix(1000, 0)
	lock := &fakeLock{id: "me"}
	g := newLeaseGate(lock, func() time.Time { return now }, time.Second)
	ctx := context.Background()
	release := resourcelock.LeaderElectionRecord{LeaseDurationSeconds: 1}

	// Renewals are recorded, others' writes and failures not.
	if err := g.Update(ctx, renewal("me", now)); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Second)
	lock.failNext = errors.New("down")
	_ = g.Update(ctx, renewal("me", now))
	if _, _, since := g.state(); since != time.Second {
		t.Errorf("since last renewal = %s, want 1s (a failed renewal does not count)", since)
	}

	// The work runs: the release is refused and the work cancelled.
	var cause error
	if !g.startWork(func(c error) { cause = c }) {
		t.Fatal("startWork = false on an open round")
	}
	if running, _, _ := g.state(); !running {
		t.Error("state() says not running")
	}
	if err := g.Update(ctx, release); !errors.Is(err, errReleaseRefused) {
		t.Fatalf("release while the work runs = %v, want errReleaseRefused", err)
	}
	if !errors.Is(cause, errRenewStopped) {
		t.Errorf("the work's cancel cause = %v, want errRenewStopped", cause)
	}
	if g.wasReleased() {
		t.Error("wasReleased after a refused release")
	}
	// The work returned: now it may be released; no work starts after.
	g.workReturned()
	if err := g.Update(ctx, release); err != nil {
		t.Fatalf("release after the work returned = %v", err)
	}
	if !g.wasReleased() {
		t.Error("wasReleased = false after the release")
	}
	if g.startWork(func(error) {}) {
		t.Error("startWork = true after the release")
	}
	if got, want := lock.holders(), []string{"me", ""}; !slices.Equal(got, want) {
		t.Errorf("writes = %q, want %q", got, want)
	}

	// A closed round starts no work, and close cancels a running one.
	g2 := newLeaseGate(&fakeLock{id: "me"}, time.Now, time.Second)
	var c2 error
	g2.startWork(func(c error) { c2 = c })
	if started := g2.close(errShutdown); !started || !errors.Is(c2, errShutdown) {
		t.Errorf("close = %v, cause %v; want true, errShutdown", started, c2)
	}
	if g2.startWork(func(error) {}) {
		t.Error("startWork = true after close")
	}
}

// A renewal that takes long but succeeds counts from the renewTime written
// into the Lease (which standbys count from), not from when it returned.
func TestLeaseGateRenewTime(t *testing.T) {
	start := time.Unix(1000, 0)
	now := start
	lock := &slowLock{fakeLock: fakeLock{id: "me"}, during: func() { now = now.Add(4 * time.Second) }}
	g := newLeaseGate(lock, func() time.Time { return now }, time.Minute)
	if err := g.Update(context.Background(), renewal("me", start)); err != nil {
		t.Fatal(err)
	}
	if _, _, since := g.state(); since != 4*time.Second {
		t.Errorf("since last renewal = %s right after a renewal stamped 4s ago, want 4s", since)
	}
}

// slowLock runs during inside each Update (a slow API server).
type slowLock struct {
	fakeLock
	during func()
}

func (l *slowLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	l.during()
	return l.fakeLock.Update(ctx, r)
}

// The gate sees the Lease name another holder in the elector's Get: the
// work is cancelled with that cause, IsLeader's view turns false at once,
// no work starts again in the round, and client-go's release (which
// checks its own stale view of who holds the lease) writes nothing.
func TestLeaseGateTaken(t *testing.T) {
	lock := &fakeLock{id: "me", record: &resourcelock.LeaderElectionRecord{HolderIdentity: "intruder"}}
	g := newLeaseGate(lock, time.Now, time.Second)
	var seen []string
	g.onTaken = func(h string) { seen = append(seen, h) }
	ctx := context.Background()

	// A standby's Get of another holder's Lease is no take-over.
	if _, _, err := g.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if _, taken, _ := g.state(); taken || len(seen) != 0 {
		t.Fatalf("a standby's Get counted as a take-over (onTaken %q)", seen)
	}
	if err := g.Update(ctx, renewal("me", time.Now())); err != nil {
		t.Fatal(err)
	}
	var cause error
	g.startWork(func(c error) { cause = c })
	// onTaken (the WARN) comes before the cancellation, so that a log reader
	// sees it before the work's return.
	g.onTaken = func(h string) {
		if cause != nil {
			t.Errorf("onTaken(%q) called after the work was cancelled (%v): the log would show the work's return first", h, cause)
		}
		seen = append(seen, h)
	}
	if _, _, err := g.Get(ctx); err != nil {
		t.Fatal(err)
	}
	var taken *leaseTakenError
	if !errors.As(cause, &taken) || taken.holder != "intruder" {
		t.Fatalf("the work's cancel cause = %v, want the Lease held by intruder", cause)
	}
	if running, tk, _ := g.state(); !running || !tk {
		t.Errorf("state() = running %v, taken %v; want true, true", running, tk)
	}
	if !slices.Equal(seen, []string{"intruder"}) {
		t.Errorf("onTaken calls = %q, want [intruder]", seen)
	}
	// Found taken before the work started: it never starts.
	g3 := newLeaseGate(lock, time.Now, time.Second)
	if err := g3.Update(ctx, renewal("me", time.Now())); err != nil {
		t.Fatal(err)
	}
	if _, _, err := g3.Get(ctx); err != nil {
		t.Fatal(err)
	}
	if g3.startWork(func(error) {}) {
		t.Error("startWork = true after the Lease was found taken (before any release)")
	}
	lock.updates = lock.updates[:1]
	g.workReturned()
	if err := g.Update(ctx, resourcelock.LeaderElectionRecord{LeaseDurationSeconds: 1}); err != nil {
		t.Errorf("release of a taken lease = %v, want nil (nothing to give back)", err)
	}
	if g.wasReleased() || len(lock.updates) != 1 {
		t.Errorf("the release of a lease another holder holds was written: %q", lock.holders())
	}
	if g.startWork(func(error) {}) {
		t.Error("startWork = true after the lease was taken")
	}
}

// Each election request gets its own timeout, and none outlives the
// shutdown deadline.
func TestLeaseGateRequestTimeout(t *testing.T) {
	lock := &hangLock{fakeLock: fakeLock{id: "me"}}
	g := newLeaseGate(lock, time.Now, 50*time.Millisecond)
	done := make(chan error, 1)
	go func() { done <- g.Update(context.Background(), renewal("me", time.Now())) }()
	if err := within(t, done, "a hung request to time out"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung Update = %v, want DeadlineExceeded", err)
	}
	g = newLeaseGate(lock, time.Now, time.Hour)
	g.setDeadline(time.Now().Add(50 * time.Millisecond))
	go func() { done <- g.Update(context.Background(), renewal("me", time.Now())) }()
	if err := within(t, done, "a hung request to end at the shutdown deadline"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("hung Update = %v, want DeadlineExceeded", err)
	}
	g.setDeadline(time.Now().Add(-time.Second))
	if _, _, err := g.Get(context.Background()); !errors.Is(err, errShutdownDeadline) {
		t.Errorf("Get after the deadline = %v, want errShutdownDeadline", err)
	}
}

// hangLock's Update waits for its context.
type hangLock struct{ fakeLock }

func (l *hangLock) Update(ctx context.Context, _ resourcelock.LeaderElectionRecord) error {
	<-ctx.Done()
	return ctx.Err()
}

// An acquisition whose write lands but whose answer is lost (its context
// ended in flight: a shutdown, a shard given back) leaves the Lease naming
// this replica while client-go counts the write as failed and gives
// nothing back: without releaseUnconfirmed the Lease would wait out its
// duration (seen in the sharded e2e: a shard moved 17 s late on a scale
// down). The gate notes the write without an answer and, once the round is
// over, reads the Lease and gives it back if it names this replica; not if
// it names another, and not after a write the server answered.
func TestUnansweredAcquisitionReleased(t *testing.T) {
	for _, tc := range []struct {
		name, holderAfter string
		answer            error
		wantReleased      bool
	}{
		{"lost answer", "a", context.Canceled, true},
		{"lost answer, taken since", "b", context.Canceled, false},
		{"refused by the server", "", apierrors.NewConflict(coordinationv1.Resource("leases"), "test-lease", errors.New("modified")), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cs := fake.NewClientset()
			gvr := coordinationv1.SchemeGroupVersion.WithResource("leases")
			cs.PrependReactor("create", "leases", func(a k8stesting.Action) (bool, runtime.Object, error) {
				l := a.(k8stesting.CreateAction).GetObject().(*coordinationv1.Lease).DeepCopy()
				if apierrors.IsConflict(tc.answer) {
					return true, nil, tc.answer // refused: nothing written
				}
				if tc.holderAfter != "a" {
					l.Spec.HolderIdentity = &tc.holderAfter // another holder wrote after it
				}
				if err := cs.Tracker().Create(gvr, l, l.Namespace); err != nil {
					return true, nil, err
				}
				return true, nil, tc.answer // written, but the answer is lost
			})
			m, _ := newTestManager(t, cs, "a")
			g := newLeaseGate(m.newLock(), time.Now, time.Second)
			now := metav1.NewTime(time.Now())
			err := g.Create(context.Background(), resourcelock.LeaderElectionRecord{HolderIdentity: "a", LeaseDurationSeconds: 15, AcquireTime: now, RenewTime: now})
			if err == nil {
				t.Fatal("the create got its answer")
			}
			released, err := g.releaseUnconfirmed()
			if err != nil || released != tc.wantReleased {
				t.Fatalf("releaseUnconfirmed() = %v, %v; want %v", released, err, tc.wantReleased)
			}
			if tc.holderAfter == "" {
				return
			}
			want := tc.holderAfter
			if tc.wantReleased {
				want = ""
			}
			if got := holder(t, cs); got != want {
				t.Errorf("the Lease names %q, want %q", got, want)
			}
		})
	}
}
