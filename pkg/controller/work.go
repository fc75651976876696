// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
)

// Work is what the elected replica runs. Its context is cancelled at
// shutdown, when the lease could not be renewed within the renew deadline,
// when the Lease names another holder, and when a handler added with
// AddEventHandler panics. Then the work must start no new write, and return
// once its writes in flight have their answer, within WorkBudget: the lease
// is given back only after it has returned, but on a lost renewal a
// successor may take the lease WorkBudget after the cancellation, and a
// write that lands after that can interleave with the successor's.
//
// If it returns while ctx is not cancelled, Run gives the lease back and
// returns the work's error. A panic in it is recovered: logged with its
// stack, counted (Panics), and returned by Run as an error that wraps
// ErrPanicked, after the lease was released as for any failed work.
type Work func(ctx context.Context) error

// ErrPanicked is wrapped by the error Run returns when the work or one of
// its handlers panicked.
var ErrPanicked = errors.New("panic")

// panicError is a recovered panic.
type panicError struct {
	where string
	value any
}

func (e *panicError) Error() string { return fmt.Sprintf("panic in %s: %v", e.where, e.value) }
func (e *panicError) Unwrap() error { return ErrPanicked }

func isPanic(err error) bool { return errors.Is(err, ErrPanicked) }

// WorkBudget is how long the work may take, after its context is cancelled,
// until its last write has its answer: the lease duration minus the renew
// deadline (a standby may take the lease that long after the watchdog
// cancelled the work) minus half a retry period (the time the cancellation
// takes to reach the work). 4 s with the defaults. Bound each write's
// context by it (see the example controller's writeContext); Run does not
// wait for writes the work has left behind.
//
// On shutdown the lease is released only after the work returned, so the
// budget there is the shutdown timeout's. When the Lease is taken by
// another holder (an operator's edit, another Deployment with the same
// lease name), the other holder works already: the work is cancelled at
// the first sign of it, and a resourceVersion precondition on each write is
// what keeps the data right.
func (m *Manager) WorkBudget() time.Duration {
	return workBudget(m.o)
}

func workBudget(o options) time.Duration {
	return o.leaseDuration - o.renewDeadline - o.retryPeriod/2
}

// Panics returns how many panics of the work and of its handlers were
// recovered since New.
func (m *Manager) Panics() uint64 { return m.panics.Load() }

// termKey is the work context's key for the current term.
type termKey struct{}

// term is one leadership term: the work's context and how to fail it.
type term struct {
	m      *Manager
	cancel context.CancelCauseFunc
	mu     sync.Mutex
	failed error // the first panic of a handler
}

// fail cancels the work with err, and keeps the first err.
func (t *term) fail(err error) {
	t.mu.Lock()
	if t.failed == nil {
		t.failed = err
	}
	t.mu.Unlock()
	t.cancel(err)
}

func (t *term) err() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.failed
}

// runWork runs the work and turns a panic into an error.
func (m *Manager) runWork(ctx context.Context, work Work) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = m.recovered("the work", r)
		}
	}()
	return work(ctx)
}

// recovered logs and counts a panic and returns it as an error.
func (m *Manager) recovered(where string, r any) error {
	n := m.panics.Add(1)
	m.log.Error("recovered a panic: the work fails, the lease is handled as after any failed work",
		"where", where, "panic", fmt.Sprint(r), "panics", n, "stack", string(debug.Stack()))
	return &panicError{where: where, value: r}
}

// AddEventHandler adds h to informer for the leadership term of ctx, the
// work's context: the informer replays its cache to h as adds, and h is
// removed once ctx is cancelled, so that the next term does not get each
// event twice. A panic in h is recovered as a panic of the work: logged,
// counted, and the work's context is cancelled with it, so that Run
// returns it once the work has returned.
func (m *Manager) AddEventHandler(ctx context.Context, informer cache.SharedInformer, h cache.ResourceEventHandler) error {
	t, ok := ctx.Value(termKey{}).(*term)
	if !ok || t.m != m {
		return errors.New("controller: AddEventHandler needs the context Run gave the work")
	}
	reg, err := informer.AddEventHandler(m.guarded(h, "an event handler", func(err error) { t.fail(err) }))
	if err != nil {
		return fmt.Errorf("add event handler: %w", err)
	}
	context.AfterFunc(ctx, func() { _ = informer.RemoveEventHandler(reg) })
	return nil
}

// guarded is h with a panic in it recovered as a panic of the work:
// logged, counted, and given to fail.
func (m *Manager) guarded(h cache.ResourceEventHandler, where string, fail func(error)) cache.ResourceEventHandler {
	guard := func(f func()) {
		defer func() {
			if r := recover(); r != nil {
				fail(m.recovered(where, r))
			}
		}()
		f()
	}
	return cache.ResourceEventHandlerDetailedFuncs{
		AddFunc:    func(obj any, initial bool) { guard(func() { h.OnAdd(obj, initial) }) },
		UpdateFunc: func(old, obj any) { guard(func() { h.OnUpdate(old, obj) }) },
		DeleteFunc: func(obj any) { guard(func() { h.OnDelete(obj) }) },
	}
}
