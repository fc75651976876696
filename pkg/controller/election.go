// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
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

// errReleaseRefused is what leaseGate answers client-go's release with while
// the work runs; client-go logs it and lets the lease expire.
var errReleaseRefused = errors.New("lease release refused: the leader's work has not returned yet; the lease will expire instead")

// leaseGate is the resourcelock.Interface given to client-go's elector: a
// LeaseLock, plus two things. It records when this replica last wrote the
// Lease as its holder (for /healthz and the renewal watchdog). And it
// refuses to release the lease (client-go's release is an Update with an
// empty holder) while the work runs, or before the work has started if it
// is going to: client-go's ReleaseOnCancel releases when its renew loop
// stops, whether or not the leader's function has returned.
type leaseGate struct {
	resourcelock.Interface
	now func() time.Time

	mu        sync.Mutex
	closed    bool // no work may start any more
	started   bool // the work was started in this round
	running   bool // the work runs
	cancel    context.CancelCauseFunc
	lastRenew time.Time
	released  bool // the release was written
}

func newLeaseGate(lock resourcelock.Interface, now func() time.Time) *leaseGate {
	return &leaseGate{Interface: lock, now: now}
}

// Create is the first acquisition of a new Lease.
func (g *leaseGate) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := g.Interface.Create(ctx, r)
	g.renewed(r, err)
	return err
}

// Update acquires, renews or (with an empty holder) releases the lease.
func (g *leaseGate) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	if r.HolderIdentity == "" {
		return g.release(ctx, r)
	}
	err := g.Interface.Update(ctx, r)
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
	g.mu.Unlock()
	err := g.Interface.Update(ctx, r)
	if err == nil {
		g.mu.Lock()
		g.released = true
		g.mu.Unlock()
	}
	return err
}

// wasReleased says whether the release was written.
func (g *leaseGate) wasReleased() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.released
}

func (g *leaseGate) renewed(r resourcelock.LeaderElectionRecord, err error) {
	if err != nil || r.HolderIdentity != g.Identity() {
		return
	}
	g.mu.Lock()
	g.lastRenew = g.now()
	g.mu.Unlock()
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
// round is over or the lease was released: then the work must not start.
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

// leading says whether the work runs, and how long ago the lease was last
// renewed.
func (g *leaseGate) leading() (running bool, sinceRenew time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.running, g.now().Sub(g.lastRenew)
}

// workResult is what the work returned; cancelled if its context had been
// cancelled by then (it did not return on its own).
type workResult struct {
	err       error
	cancelled bool
}

// contend runs one election round: contend for the lease, run the work while
// leading, and end on shutdown (ctx), when the lease is lost, when the work
// returns, or, on a standby, when the leader released the lease (see
// watchLease): the next round's first try comes at once instead of after up
// to 2.2 x the retry period. The lease is released only after the work has
// returned. again: contend once more (the lease was lost and the work has
// returned, or a standby saw the lease released).
func (m *Manager) contend(ctx context.Context, work Work) (again bool, err error) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: m.namespace, Name: m.leaseName},
		Client:     m.cs.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: m.identity}, // no EventRecorder: no events, no RBAC for them
	}
	g := newLeaseGate(lock, time.Now)
	m.round.Store(g)
	workDone := make(chan workResult, 1)
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            g,
		Name:            m.leaseName,
		LeaseDuration:   m.o.leaseDuration,
		RenewDeadline:   m.o.renewDeadline,
		RetryPeriod:     m.o.retryPeriod,
		ReleaseOnCancel: true, // safe: the gate refuses while the work runs, and the election stops only after it returned
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(leCtx context.Context) { m.lead(ctx, leCtx, g, work, workDone) },
			OnStoppedLeading: func() {},
			OnNewLeader: func(id string) {
				m.observedLeader.Store(&id)
				if id != m.identity {
					m.log.Info("leader observed", "leader", id)
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
	case <-m.released:
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
		case <-m.released:
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
	}
	if started := g.close(cause); started && !returned {
		t := time.NewTimer(m.o.shutdownTimeout)
		select {
		case res = <-workDone:
			returned = true
		case <-t.C:
		}
		t.Stop()
		if !returned {
			m.log.Error("the work did not return within the shutdown timeout: not releasing the lease, it expires on its own",
				"shutdownTimeout", m.o.shutdownTimeout.String(), "expiresIn", m.o.leaseDuration.String())
			stopElection() // the gate refuses the release: the work still runs
			<-electionDone
			return false, ErrWorkStillRunning
		}
	}
	// The work has returned or never started: stopping the election now
	// releases the lease if this replica still holds it.
	stopElection()
	<-electionDone
	if g.wasReleased() {
		m.log.Info("lease released after the work returned")
	}
	switch {
	case ctx.Err() != nil:
		return false, nil
	case takeover:
		m.log.Info("the lease was released: contending at once")
		return true, nil
	case returned && !res.cancelled:
		if res.err != nil {
			return false, fmt.Errorf("the work returned: %w", res.err)
		}
		m.log.Info("the work returned on its own")
		return false, nil
	case m.o.exitOnLost:
		return false, ErrLeadershipLost
	default:
		if returned {
			m.log.Warn("leadership lost and the work stopped; contending again")
		}
		return true, nil
	}
}

// lead runs the work in client-go's OnStartedLeading goroutine. leCtx is
// client-go's, cancelled after its renew loop stopped; the work's context is
// also cancelled at shutdown, by the gate when renewing stops, and by the
// watchdog when the lease is overdue.
func (m *Manager) lead(ctx, leCtx context.Context, g *leaseGate, work Work, done chan<- workResult) {
	workCtx, cancel := context.WithCancelCause(leCtx)
	defer cancel(nil)
	if !g.startWork(cancel) {
		return // the round is over or the lease already released: never start
	}
	defer context.AfterFunc(ctx, func() { cancel(errShutdown) })()
	go m.watchdog(workCtx, g)
	m.log.Info("leading: the work starts")
	err := work(workCtx)
	cancelled := workCtx.Err() != nil
	g.workReturned()
	if cancelled {
		m.log.Info("the work returned", "cancelledBecause", context.Cause(workCtx).Error())
	}
	done <- workResult{err: err, cancelled: cancelled}
}

// watchdog stops the work once the lease has not been renewed within the
// renew deadline: client-go gives up renewing about then too, and standbys
// may take the lease after the lease duration.
func (m *Manager) watchdog(ctx context.Context, g *leaseGate) {
	t := time.NewTicker(max(m.o.retryPeriod/2, time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if running, since := g.leading(); running && since > m.o.renewDeadline {
				m.log.Warn("lease not renewed within the renew deadline: stopping the work",
					"sinceRenewal", since.Round(time.Millisecond).String(), "renewDeadline", m.o.renewDeadline.String())
				g.cancelWork(errRenewOverdue)
				return
			}
		}
	}
}

// newLeaseInformer returns an informer factory for this Manager's Lease
// alone (a field selector on its name, so that a Role can grant list and
// watch with resourceNames), which signals m.released each time the Lease is
// given back: an update that leaves it without a holder. client-go's elector
// looks at the Lease only every retry period (plus jitter); with the watch a
// standby takes a released lease at once, so a rolling update hands over in
// about the time the old leader's work takes to return.
func (m *Manager) newLeaseInformer() informers.SharedInformerFactory {
	f := informers.NewSharedInformerFactoryWithOptions(m.cs, 0,
		informers.WithNamespace(m.namespace),
		informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
			lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", m.leaseName).String()
		}))
	signal := func(obj any) {
		if l, ok := obj.(*coordinationv1.Lease); ok && l.Name == m.leaseName && (l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "") {
			select {
			case m.released <- struct{}{}:
			default: // one signal pending is enough
			}
		}
	}
	// Add too: a release that lands while the watch is (re)established
	// arrives as an add of the initial list.
	_, _ = f.Coordination().V1().Leases().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    signal,
		UpdateFunc: func(_, obj any) { signal(obj) },
	})
	return f
}
