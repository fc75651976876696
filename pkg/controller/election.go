// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Causes of the work's cancellation.
var (
	errShutdown     = errors.New("shutting down")
	errRenewStopped = errors.New("the lease is no longer renewed")
	errRenewOverdue = errors.New("the lease was not renewed within the renew deadline")
	errRoundOver    = errors.New("the election round is over")
)

// leaseTakenError is the cause of the work's cancellation when the Lease
// names another holder.
type leaseTakenError struct{ holder string }

func (e *leaseTakenError) Error() string { return "the Lease is held by " + e.holder }

// errReleaseRefused is what leaseGate answers client-go's release with while
// the work runs; client-go logs it and lets the lease expire.
var errReleaseRefused = errors.New("lease release refused: the leader's work has not returned yet; the lease will expire instead")

// errShutdownDeadline is what leaseGate answers once the shutdown's time is
// spent: no election request starts after it.
var errShutdownDeadline = errors.New("the shutdown timeout is spent: no more lease requests")

// leaseGate is the resourcelock.Interface given to client-go's elector, and
// the one place where this replica decides whether it may run the work. It
// wraps a LeaseLock and:
//
//   - bounds every request (requestTimeout, and the shutdown deadline once
//     set), so that one hung request cannot cost the lease or the shutdown;
//   - records the renewTime of each renewal it wrote as holder (for
//     /healthz and the watchdog): the time client-go stamped into the Lease
//     before sending it, so a slow but successful write is not counted as
//     later than it was;
//   - stops the work at the first sign that the Lease names another holder:
//     a Get of the elector, or one of heldBy's checks (the Lease watch);
//   - refuses to release the lease (client-go's release is an Update with
//     an empty holder) while the work runs, or before the work has started
//     if it is going to (client-go's ReleaseOnCancel releases when its
//     renew loop stops, whether or not the leader's function has returned),
//     and when the Lease names another holder (client-go would overwrite
//     it: its release checks a stale view of who holds it).
type leaseGate struct {
	resourcelock.Interface
	now            func() time.Time
	requestTimeout time.Duration
	onTaken        func(holder string) // called once, when the Lease is first found taken, before the work is cancelled; with mu held
	onRenewed      func(t time.Time)   // called after each write of the Lease as this replica's, with its renewTime; nil: none

	mu        sync.Mutex
	closed    bool // no work may start any more
	started   bool // the work was started in this round
	running   bool // the work runs
	cancel    context.CancelCauseFunc
	held      bool      // this replica wrote the Lease as its holder in this round
	lastRenew time.Time // the renewTime of that write
	takenBy   string    // another holder the Lease named after this replica held it
	released  bool      // the release was written
	deadline  time.Time // no request after it (shutdown); zero: none
	// unconfirmed: a write naming this replica as holder got no answer (its
	// context ended in flight): the API server may have applied it while
	// client-go counts it as failed, and would then not give the Lease back.
	unconfirmed bool
}

func newLeaseGate(lock resourcelock.Interface, now func() time.Time, requestTimeout time.Duration) *leaseGate {
	return &leaseGate{Interface: lock, now: now, requestTimeout: requestTimeout}
}

// requestContext bounds one request by the request timeout and the
// shutdown deadline.
func (g *leaseGate) requestContext(ctx context.Context) (context.Context, context.CancelFunc, error) {
	g.mu.Lock()
	deadline := g.deadline
	g.mu.Unlock()
	d := g.requestTimeout
	if !deadline.IsZero() {
		left := deadline.Sub(g.now())
		if left <= 0 {
			return nil, nil, errShutdownDeadline
		}
		d = min(d, left)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	return ctx, cancel, nil
}

// setDeadline makes every request end by t.
func (g *leaseGate) setDeadline(t time.Time) {
	g.mu.Lock()
	g.deadline = t
	g.mu.Unlock()
}

// Get reads the Lease; a holder other than this replica stops the work.
func (g *leaseGate) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	ctx, cancel, err := g.requestContext(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer cancel()
	r, raw, err := g.Interface.Get(ctx)
	if err == nil && r != nil {
		g.observe(r.HolderIdentity)
	}
	return r, raw, err
}

// Create is the first acquisition of a new Lease.
func (g *leaseGate) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	ctx, cancel, err := g.requestContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	err = g.Interface.Create(ctx, r)
	g.renewed(r, err)
	return err
}

// Update acquires, renews or (with an empty holder) releases the lease.
func (g *leaseGate) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	ctx, cancel, err := g.requestContext(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	if r.HolderIdentity == "" {
		return g.release(ctx, r)
	}
	err = g.Interface.Update(ctx, r)
	g.renewed(r, err)
	return err
}

func (g *leaseGate) release(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	g.mu.Lock()
	g.closed = true // from here on no work starts, so none runs during the release
	if g.running {
		// Renewing stopped while the work runs: stop it now rather than
		// after client-go's release attempt.
		g.cancel(errRenewStopped)
		g.mu.Unlock()
		return errReleaseRefused
	}
	if g.takenBy != "" {
		g.mu.Unlock()
		return nil // not ours to give back
	}
	g.mu.Unlock()
	err := g.Interface.Update(ctx, r)
	if err == nil {
		g.mu.Lock()
		g.released = true
		g.mu.Unlock()
	}
	return err
}

// releaseUnconfirmed gives the Lease back when a write of it as this
// replica's got no answer and client-go did not release it: it reads the
// Lease and, if it names this replica, writes the release (as client-go's:
// no holder, a lease of 1 s) with the read's resourceVersion. Only once the
// round is over and the work is not running. It says whether it released.
func (g *leaseGate) releaseUnconfirmed() (bool, error) {
	g.mu.Lock()
	ok := g.unconfirmed && !g.running && !g.released && g.takenBy == ""
	g.mu.Unlock()
	if !ok {
		return false, nil
	}
	ctx, cancel, err := g.requestContext(context.Background())
	if err != nil {
		return false, err
	}
	defer cancel()
	r, _, err := g.Interface.Get(ctx)
	if err != nil || r == nil || r.HolderIdentity != g.Identity() {
		return false, err
	}
	now := metav1.NewTime(g.now())
	if err := g.Interface.Update(ctx, resourcelock.LeaderElectionRecord{
		LeaderTransitions: r.LeaderTransitions, LeaseDurationSeconds: 1, RenewTime: now, AcquireTime: now,
	}); err != nil {
		return false, err
	}
	g.mu.Lock()
	g.released = true
	g.mu.Unlock()
	return true, nil
}

// wasReleased says whether the release was written.
func (g *leaseGate) wasReleased() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.released
}

func (g *leaseGate) renewed(r resourcelock.LeaderElectionRecord, err error) {
	if r.HolderIdentity != g.Identity() {
		return
	}
	if err != nil {
		var status apierrors.APIStatus
		if !errors.As(err, &status) { // no answer from the API server
			g.mu.Lock()
			g.unconfirmed = true
			g.mu.Unlock()
		}
		return
	}
	g.mu.Lock()
	g.held, g.lastRenew = true, r.RenewTime.Time
	g.takenBy = ""
	g.mu.Unlock()
	if g.onRenewed != nil {
		g.onRenewed(r.RenewTime.Time)
	}
}

// observe takes note of the holder the Lease names now. Another holder than
// this replica, once this replica has held it in this round, means the
// lease is lost: the work is cancelled and no work starts any more in this
// round. It says whether the lease was found taken.
func (g *leaseGate) observe(holder string) (taken bool) {
	g.mu.Lock()
	if holder == "" || holder == g.Identity() || !g.held {
		g.mu.Unlock()
		return false // released, ours, or never ours in this round
	}
	if g.takenBy == "" && g.onTaken != nil {
		g.onTaken(holder) // before the cancellation: the work may log its return at once
	}
	g.takenBy = holder
	g.closed = true
	if g.running {
		g.cancel(&leaseTakenError{holder: holder})
	}
	g.mu.Unlock()
	return true
}

// closeIfStandby ends the round if its work has not started: then no work
// starts any more, and it returns true. It returns false, and changes
// nothing, if the work has started.
func (g *leaseGate) closeIfStandby() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.started {
		return false
	}
	g.closed = true
	return true
}

// startWork marks the work as running, with cancel to stop it; false if the
// round is over, the lease released or taken: then the work must not start.
func (g *leaseGate) startWork(cancel context.CancelCauseFunc) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.started, g.running, g.cancel = true, true, cancel
	return true
}

// workReturned allows the release.
func (g *leaseGate) workReturned() {
	g.mu.Lock()
	g.running = false
	g.mu.Unlock()
}

// close ends the round: no work starts any more; the running one, if any,
// is cancelled with cause. It says whether the work was started.
func (g *leaseGate) close(cause error) (started bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
	if g.running {
		g.cancel(cause)
	}
	return g.started
}

// cancelWork cancels the running work, if any.
func (g *leaseGate) cancelWork(cause error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.running {
		g.cancel(cause)
	}
}

// state says whether the work runs, whether the lease was found held by
// another holder, and how long ago this replica last renewed it.
func (g *leaseGate) state() (running, taken bool, sinceRenew time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.takenBy != "", g.now().Sub(g.lastRenew)
}

// workResult is what the work returned; cancelled if its context had been
// cancelled by then (it did not return on its own). A recovered panic (of
// the work or of a handler added with AddEventHandler) is an error, not a
// cancellation.
type workResult struct {
	err       error
	cancelled bool
	cause     error // why the work's context was cancelled
}

// requestTimeout bounds each election request, as controller-runtime does:
// max(renew deadline / 2, 1 s). A renewal that hangs is abandoned in time
// for the next try within the renew deadline.
func (m *Manager) requestTimeout() time.Duration {
	return max(m.o.renewDeadline/2, time.Second)
}

// releaseReserve is the part of the shutdown timeout kept for the release
// after the work has returned: one request timeout, at most a quarter of
// the shutdown timeout.
func (m *Manager) releaseReserve() time.Duration {
	return min(m.requestTimeout(), m.o.shutdownTimeout/4)
}

// contend runs one election round: contend for the lease, run the work while
// leading, and end on shutdown (ctx), when the lease is lost or taken, when
// the work returns, or, on a standby, when the leader released the lease
// (see watchLease): the next round's first try comes at once instead of
// after up to 2.2 x the retry period. The lease is released only after the
// work has returned. again: contend once more (the lease was lost and the
// work has returned, or a standby saw the lease released).
func (e *elector) contend(ctx context.Context, work Work) (again bool, err error) {
	g := newLeaseGate(e.newLock(), time.Now, e.m.requestTimeout())
	g.onTaken = func(holder string) {
		e.log.Warn("the Lease is held by another holder: stopping the work", "holder", holder)
	}
	g.onRenewed = func(t time.Time) { e.m.o.metrics.Renewed(e.leaseName, t) }
	e.round.Store(g)
	workDone := make(chan workResult, 1)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            g,
		Name:            e.leaseName,
		LeaseDuration:   e.m.o.leaseDuration,
		RenewDeadline:   e.m.o.renewDeadline,
		RetryPeriod:     e.m.o.retryPeriod,
		ReleaseOnCancel: true, // safe: the gate refuses while the work runs, and the election stops only after it returned
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leCtx context.Context) { e.lead(ctx, leCtx, g, work, workDone) },
			OnStoppedLeading: func() {},
			OnNewLeader: func(id string) {
				e.m.o.metrics.LeaderObserved(e.leaseName, id)
				e.observedLeader.Store(&id)
				if id != e.m.identity {
					e.log.Info("leader observed", "leader", id)
				}
			},
		},
	})
	if err != nil {
		return false, fmt.Errorf("leader election: %w", err) // validate has ruled this out
	}

	// The election's context is not the shutdown's: it is cancelled below,
	// after the work has returned, and client-go releases the lease then.
	select { // a release seen before this round began: this round's first try sees it
	case <-e.released:
	default:
	}
	electionCtx, stopElection := context.WithCancel(context.WithoutCancel(ctx))
	defer stopElection()
	electionDone := make(chan struct{})
	go func() {
		defer close(electionDone)
		le.Run(electionCtx)
	}()

	var res workResult
	returned, takeover := false, false
	for waiting := true; waiting; {
		waiting = false
		select {
		case <-ctx.Done():
		case res = <-workDone:
			returned = true
		case <-electionDone: // renewing failed (client-go stopped); the gate has cancelled the work
		case <-e.released:
			// The leader gave the lease back. A standby ends this round, so
			// that the next one tries at once; a replica that has just
			// acquired it keeps its round.
			takeover = !le.IsLeader() && g.closeIfStandby()
			waiting = !takeover
		}
	}
	cause := errRoundOver
	if ctx.Err() != nil {
		cause = errShutdown
		// The whole shutdown ends by the deadline: the work gets all of it
		// but the release's reserve, and no election request outlives it.
		deadline := e.deadline()
		g.setDeadline(deadline)
	}
	if started := g.close(cause); started && !returned {
		wait := e.m.o.shutdownTimeout // not shutting down: the round ended under the work
		if ctx.Err() != nil {
			wait = time.Until(e.deadline()) - e.m.releaseReserve()
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case res = <-workDone:
			returned = true
		case <-t.C:
		}
		t.Stop()
		if !returned {
			e.log.Error("the work did not return within the shutdown timeout: not releasing the lease, it expires on its own",
				"shutdownTimeout", e.m.o.shutdownTimeout.String(), "expiresIn", e.m.o.leaseDuration.String())
			stopElection() // the gate refuses the release: the work still runs
			<-electionDone
			return false, ErrWorkStillRunning
		}
	}
	// The work has returned or never started: stopping the election now
	// releases the lease if this replica still holds it.
	stopElection()
	<-electionDone
	switch released, err := g.releaseUnconfirmed(); {
	case released:
		e.log.Info("lease released: a write of it as this replica's had got no answer, and the Lease named this replica")
	case err != nil:
		e.log.Warn("could not check whether a write of the Lease without an answer made this replica its holder; if so, it expires after the lease duration", "err", err)
	case g.wasReleased():
		e.log.Info("lease released after the work returned")
	}
	var taken *leaseTakenError
	switch {
	case ctx.Err() != nil:
		return false, nil
	case takeover:
		e.log.Info("the lease was released: contending at once")
		return true, nil
	case returned && !res.cancelled:
		if res.err != nil {
			return false, fmt.Errorf("the work failed: %w", res.err)
		}
		e.log.Info("the work returned on its own")
		return false, nil
	case e.m.o.exitOnLost:
		return false, ErrLeadershipLost
	case errors.As(res.cause, &taken):
		e.log.Warn("the Lease was taken by another holder and the work stopped; contending again", "holder", taken.holder)
		return true, nil
	default:
		if returned {
			e.log.Warn("leadership lost and the work stopped; contending again")
		}
		return true, nil
	}
}

// lead runs the work in client-go's OnStartedLeading goroutine. leCtx is
// client-go's, cancelled after its renew loop stopped; the work's context is
// also cancelled at shutdown, by the gate when renewing stops or the Lease
// names another holder, by the watchdog when the lease is overdue, and by a
// panic in a handler of AddEventHandler.
func (e *elector) lead(ctx, leCtx context.Context, g *leaseGate, work Work, done chan<- workResult) {
	workCtx, cancel := context.WithCancelCause(leCtx)
	defer cancel(nil)
	if !g.startWork(cancel) {
		return // the round is over or the lease already released: never start
	}
	defer context.AfterFunc(ctx, func() { cancel(errShutdown) })()
	go e.watchdog(workCtx, g)
	e.log.Info("leading: the work starts")
	e.m.o.metrics.Leading(e.leaseName, true)
	t := &term{m: e.m, cancel: cancel}
	wctx := context.WithValue(workCtx, termKey{}, t)
	if e.shard != nil {
		wctx = context.WithValue(wctx, shardKey{}, *e.shard)
	}
	err := e.m.runWork(wctx, work)
	cause := context.Cause(workCtx)
	if perr := t.err(); perr != nil && err == nil {
		err = perr // a handler panicked: the work failed
	}
	cancelled := workCtx.Err() != nil && !isPanic(err)
	g.workReturned()
	e.m.o.metrics.Leading(e.leaseName, false)
	if cancelled {
		e.log.Info("the work returned", "cancelledBecause", cause.Error())
	}
	done <- workResult{err: err, cancelled: cancelled, cause: cause}
}

// watchdog stops the work once the lease has not been renewed for the renew
// deadline, counted from the renewTime of the last renewal: client-go gives
// up renewing about then too, and standbys may take the lease after the
// lease duration. It wakes exactly when the deadline would pass.
func (e *elector) watchdog(ctx context.Context, g *leaseGate) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		_, _, since := g.state()
		if left := e.m.o.renewDeadline - since; left > 0 {
			t.Reset(left)
			continue
		}
		e.log.Warn("lease not renewed within the renew deadline: stopping the work",
			"sinceRenewal", since.Round(time.Millisecond).String(), "renewDeadline", e.m.o.renewDeadline.String())
		g.cancelWork(errRenewOverdue)
		return
	}
}

// elector contends for one Lease and runs the work while it holds it, one
// election round after another (contend): the Manager's Lease, or one
// shard's (shards.go). Each has its own gate, release signal and holder
// check; what they share (client, identity, durations) is the Manager's.
type elector struct {
	m              *Manager
	leaseName      string
	log            *slog.Logger
	shard          *Shard                        // the shard the work is for; nil: the whole controller
	labels         map[string]string             // of the Lease, when this elector creates it
	newLock        func() resourcelock.Interface // newLeaseLock; tests wrap it
	deadline       func() time.Time              // when a shutdown of this elector must be over
	round          atomic.Pointer[leaseGate]     // the current election round
	observedLeader atomic.Pointer[string]
	released       chan struct{} // the Lease was given back (buffer 1)
	checking       atomic.Bool   // checkHolder runs
}

func (m *Manager) newElector(leaseName string, log *slog.Logger) *elector {
	e := &elector{m: m, leaseName: leaseName, log: log, released: make(chan struct{}, 1), deadline: m.shutdownDeadline}
	e.newLock = e.newLeaseLock
	return e
}

// leading says whether this elector runs the work under a Lease renewed
// within the renew deadline and not found held by another holder.
func (e *elector) leading() bool {
	g := e.round.Load()
	if g == nil {
		return false
	}
	running, taken, since := g.state()
	return running && !taken && since < e.m.o.renewDeadline
}

// newLeaseLock is the election's lock: the Lease in the pod's namespace.
func (e *elector) newLeaseLock() resourcelock.Interface {
	return &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: e.m.namespace, Name: e.leaseName},
		Labels:     e.labels,
		Client:     e.m.cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: e.m.identity}, // no EventRecorder: no events, no RBAC for them
	}
}

// seen takes note of the Lease as watched: given back (no holder) signals
// e.released: client-go's elector looks at the Lease only every retry
// period (plus jitter); with the watch a standby takes a released lease at
// once, so a rolling update hands over in about the time the old leader's
// work takes to return. Another holder, while this replica leads, makes
// checkHolder read the Lease and stop the work if that is so.
func (e *elector) seen(l *coordinationv1.Lease) {
	switch holder := holderOf(l); holder {
	case "":
		select {
		case e.released <- struct{}{}:
		default: // one signal pending is enough
		}
	case e.m.identity:
	default:
		e.checkHolder()
	}
}

// newLeaseInformer returns an informer of the Manager's Leases: its Lease
// alone (a field selector on its name, so that a Role can grant list and
// watch with resourceNames), or, sharded, every Lease of its shard group (a
// label selector). Each Lease it sees goes to the elector of that name
// (elector.seen), and to the shard coordinator when sharded.
func (m *Manager) newLeaseInformer() cache.SharedIndexInformer {
	leases := m.cs.CoordinationV1().Leases(m.namespace)
	tweak := func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("metadata.name", m.leaseName).String()
	}
	desc := "the Lease " + m.leaseName
	if m.o.shards > 0 {
		tweak = func(o *metav1.ListOptions) { o.LabelSelector = shardGroupLabel + "=" + m.leaseName }
		desc = "the Leases of shard group " + m.leaseName
	}
	inf := cache.NewSharedIndexInformerWithOptions(cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return leases.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return leases.Watch(ctx, o)
		},
	}, m.cs), &coordinationv1.Lease{}, cache.SharedIndexInformerOptions{ObjectDescription: desc})
	seen := func(obj any, deleted bool) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		l, ok := obj.(*coordinationv1.Lease)
		switch {
		case !ok:
		case m.shards != nil:
			m.shards.seen(l, deleted)
		case l.Name == m.leaseName && !deleted:
			m.elector.seen(l)
		}
	}
	// Add too: a release that lands while the watch is (re)established
	// arrives as an add of the initial list.
	_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { seen(obj, false) },
		UpdateFunc: func(_, obj any) { seen(obj, false) },
		DeleteFunc: func(obj any) { seen(obj, true) },
	})
	return inf
}

// checkHolder reads the Lease, if this replica leads, and stops the work if
// the Lease names another holder. The watch that calls it may deliver an
// event older than this replica's own acquisition; the read is current.
// One check runs at a time.
func (e *elector) checkHolder() {
	g := e.round.Load()
	if g == nil {
		return
	}
	if running, taken, _ := g.state(); !running || taken || !e.checking.CompareAndSwap(false, true) {
		return
	}
	go func() {
		defer e.checking.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), e.m.requestTimeout())
		defer cancel()
		l, err := e.m.cs.CoordinationV1().Leases(e.m.namespace).Get(ctx, e.leaseName, metav1.GetOptions{})
		if err != nil {
			return // the elector's next renewal will tell
		}
		g.observe(holderOf(l))
	}()
}

// holderOf returns the Lease's holder, "" if none.
func holderOf(l *coordinationv1.Lease) string {
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}
