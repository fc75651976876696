// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// This file owns the reconcile loop: the queue of object names, the event
// handlers that feed it for each leadership term, the workers, retries and
// the work's time budget. It is client-go's workqueue and informers, wired
// the way every controller wires them.

// Request names the primary object a reconcile is for.
type Request = cache.ObjectName

// Result says when to reconcile the same object again although nothing
// changed: RequeueAfter > 0 queues it again after that long.
type Result struct {
	RequeueAfter time.Duration
}

// Reconciler makes the world match the primary object req names, as it is
// in the informer's cache now (it may be gone: then clean up, or do
// nothing). It is called again for the same object after an error (with
// backoff), after RequeueAfter, and whenever the object, or an object it
// owns (Owns), changes; never for the same object twice at once. Its ctx is
// cancelled when the term ends (see Work): start no write after that.
type Reconciler func(ctx context.Context, req Request) (Result, error)

// Default loop settings: one worker, as controller-runtime's
// MaxConcurrentReconciles; client-go's controller rate limiter (per object
// 5 ms doubling up to the cap, overall 10 per second with bursts of 100).
const (
	DefaultWorkers    = 1
	DefaultMaxBackoff = 1000 * time.Second
)

// firstPassAhead bounds how many objects of a term's first pass (every
// object the informers hold when the term begins) wait in the queue at
// once: the pass feeds the queue as the workers take from it. Queued all at
// once, as the informer's initial events would, N objects cost the queue
// and its metrics about 250 bytes each for the rest of the process (a
// queue's maps do not shrink), and more while N writes are under way: 2.5
// MiB at 10,000, at a memory limit where that is the difference between
// working and an OOMKill (issue 26, point 4).
const firstPassAhead = 100

// Loop is a reconcile loop: Manager.Loop makes one, Run runs its Work on
// the leader (Loops runs several).
type Loop struct {
	m          *Manager
	name       string
	primary    cache.SharedInformer
	reconcile  Reconciler
	owned      []owned
	workers    int
	maxBackoff time.Duration

	// The handlers are added once, when the Loop is made, and feed the
	// terms running (one, or one per shard held): added at each term's
	// start, an informer would replay its whole cache to them, about 300
	// bytes an object at once (3 MiB at 10,000) on the replica that just
	// took the lease (issue 26, point 4).
	handlersErr error                       // adding them failed: Work returns it
	terms       atomic.Pointer[[]*loopTerm] // the terms running, read by the handlers
	termsMu     sync.Mutex                  // serializes changes of terms
}

// loopTerm is one term of a Loop: its queue, and its shard (nil: all).
type loopTerm struct {
	q     workqueue.TypedRateLimitingInterface[Request]
	shard *Shard
	t     *term
}

type owned struct {
	informer cache.SharedInformer
	owner    schema.GroupKind
}

// LoopOption changes a Loop.
type LoopOption func(*Loop)

// Owns also reconciles the owner of each object of informer that changes:
// the object's controller ownerReference of group and kind owner (e.g.
// schema.GroupKind{Kind: "Secret"}), in the object's namespace. So a
// dependent object deleted or edited by hand is put right, as
// controller-runtime's Owns does.
func Owns(informer cache.SharedInformer, owner schema.GroupKind) LoopOption {
	return func(l *Loop) { l.owned = append(l.owned, owned{informer, owner}) }
}

// Workers sets how many objects are reconciled at once (default 1).
func Workers(n int) LoopOption { return func(l *Loop) { l.workers = max(n, 1) } }

// MaxBackoff caps the wait before an object that failed is tried again
// (default 1000 s, client-go's).
func MaxBackoff(d time.Duration) LoopOption { return func(l *Loop) { l.maxBackoff = d } }

// Loop makes a reconcile loop named name (in logs) that calls reconcile for
// each object of primary (an informer of this Manager) when it is added,
// changed or deleted, and for each object the informer holds when a term
// begins.
func (m *Manager) Loop(name string, primary cache.SharedInformer, reconcile Reconciler, opts ...LoopOption) *Loop {
	l := &Loop{m: m, name: name, primary: primary, reconcile: reconcile, workers: DefaultWorkers, maxBackoff: DefaultMaxBackoff}
	for _, opt := range opts {
		opt(l)
	}
	l.handlersErr = l.addHandlers(primary)
	for _, o := range l.owned {
		if err := l.addOwnedHandlers(o); err != nil && l.handlersErr == nil {
			l.handlersErr = err
		}
	}
	m.mu.Lock()
	m.loops = append(m.loops, l)
	m.mu.Unlock()
	return l
}

// addHandlers adds to informer (the primary, or a shard's informer of it)
// the handlers that queue each object changed for the terms whose shard
// it is in. Initial adds are left to each term's first pass.
func (l *Loop) addHandlers(informer cache.SharedInformer) error {
	enqueue := func(obj any) {
		for _, lt := range l.running() {
			lt.add(obj)
		}
	}
	return l.handle(informer, enqueue, func(_, obj any) { enqueue(obj) })
}

// addOwnedHandlers adds to an owned informer the handlers that queue the
// owner of each object changed for the terms whose shard the owner is in.
func (l *Loop) addOwnedHandlers(o owned) error {
	enqueue := func(obj any) {
		for _, lt := range l.running() {
			lt.addOwner(obj, o.owner)
		}
	}
	return l.handle(o.informer, enqueue, func(old, obj any) {
		enqueue(old) // the owner may have changed
		enqueue(obj)
	})
}

// handle adds enqueue and update to informer as its handlers, for the
// Loop's life. A panic in them is recovered as a panic of the work: logged,
// counted, and the running terms fail with it.
func (l *Loop) handle(informer cache.SharedInformer, enqueue func(any), update func(old, obj any)) error {
	h := cache.ResourceEventHandlerDetailedFuncs{
		AddFunc: func(obj any, initial bool) {
			if !initial {
				enqueue(obj)
			}
		},
		UpdateFunc: update,
		DeleteFunc: enqueue,
	}
	failRunning := func(err error) {
		for _, lt := range l.running() {
			lt.t.fail(err)
		}
	}
	if _, err := informer.AddEventHandler(l.m.guarded(h, "an event handler of loop "+l.name, failRunning)); err != nil {
		return fmt.Errorf("loop %s: add event handler: %w", l.name, err)
	}
	return nil
}

// add queues obj if it is in lt's shard.
func (lt *loopTerm) add(obj any) {
	if lt.shard != nil && !lt.shard.containsObject(obj) {
		return
	}
	if name, err := cache.DeletionHandlingObjectToName(obj); err == nil {
		lt.q.Add(name)
	}
}

// addOwner queues obj's controller owner of kind owner if the owner is in
// lt's shard.
func (lt *loopTerm) addOwner(obj any, owner schema.GroupKind) {
	if name, uid, ok := ownerOf(obj, owner); ok && (lt.shard == nil || lt.shard.Contains(uid)) {
		lt.q.Add(name)
	}
}

// running returns the terms running now.
func (l *Loop) running() []*loopTerm {
	if p := l.terms.Load(); p != nil {
		return *p
	}
	return nil
}

// begin adds lt to the terms the handlers feed; end removes it.
func (l *Loop) begin(lt *loopTerm) {
	l.termsMu.Lock()
	defer l.termsMu.Unlock()
	terms := append(slices.Clone(l.running()), lt)
	l.terms.Store(&terms)
}

func (l *Loop) end(lt *loopTerm) {
	l.termsMu.Lock()
	defer l.termsMu.Unlock()
	terms := slices.DeleteFunc(slices.Clone(l.running()), func(x *loopTerm) bool { return x == lt })
	l.terms.Store(&terms)
}

// Loops runs the loops' works side by side, as one Work: it returns once
// every one has returned, with the first error.
func Loops(loops ...*Loop) Work {
	return func(ctx context.Context) error {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		errs := make([]error, len(loops))
		var wg sync.WaitGroup
		for i, l := range loops {
			wg.Go(func() {
				if errs[i] = l.Work(ctx); errs[i] != nil {
					cancel(errs[i]) // one failed: the term ends for all
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
}

// Work is the loop as a Work for Manager.Run: for the term of ctx its event
// handlers (added once, when the Loop was made) feed a queue of the term's
// own; it queues every object its informers hold (the first pass, at most
// firstPassAhead waiting at once: fed as the workers take), and runs the
// workers.
// Once ctx is cancelled no reconcile starts; the running ones keep a
// context that lives WorkBudget longer, then is cancelled, and Work returns
// when they have.
func (l *Loop) Work(ctx context.Context) error {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(
		workqueue.NewTypedWithMaxWaitRateLimiter(workqueue.DefaultTypedControllerRateLimiter[Request](), l.maxBackoff),
		workqueue.TypedRateLimitingQueueConfig[Request]{Name: l.name, MetricsProvider: l.m.o.metrics.QueueMetrics()})
	l.m.o.metrics.LoopStarted(l.name, l.workers)
	defer q.ShutDown()
	// Sharded (WithShards), the loop sees only its shard's objects, and
	// owned objects whose owner is in its shard. Its primary informer is
	// then the shard's own, when the Manager made it per shard.
	shard, sharded := ShardFrom(ctx)
	primary := l.primary
	if sub := l.m.shards.informerFor(l.primary, shard); sharded && sub != nil {
		primary = sub
	}
	if l.handlersErr != nil {
		return l.handlersErr
	}
	t, ok := ctx.Value(termKey{}).(*term)
	if !ok || t.m != l.m {
		return fmt.Errorf("loop %s: Work needs the context Run gave the work", l.name)
	}
	var only *Shard
	if sharded {
		only = &shard
	}
	// From here on the handlers feed this term's queue; the first pass
	// below queues what the informers held before.
	lt := &loopTerm{q: q, shard: only, t: t}
	l.begin(lt) // l.end(lt) once the term is over, below
	pass := []firstPass{{primary, lt.add}}
	for _, o := range l.owned {
		pass = append(pass, firstPass{o.informer, func(obj any) { lt.addOwner(obj, o.owner) }})
	}
	// The first pass lists the caches after the term was added to the
	// handlers' and the informers synced (an object the informer adds
	// before it has synced is an initial event too): an object there then
	// is listed, or gone since with a delete event.
	took := make(chan struct{}, 1) // a worker took an object from the queue
	var passing sync.WaitGroup
	passing.Go(func() {
		var synced []cache.InformerSynced
		for _, p := range pass {
			synced = append(synced, p.informer.HasSynced)
		}
		if !cache.WaitForCacheSync(ctx.Done(), synced...) {
			return
		}
		for _, p := range pass {
			// Names, not objects: a listed object written meanwhile
			// would stay alive in the list beside its new version
			// (about 1 KiB each while N writes are under way).
			store := p.informer.GetStore()
			for _, key := range store.ListKeys() {
				for q.Len() >= firstPassAhead {
					select {
					case <-took:
					case <-ctx.Done():
						return
					}
				}
				if obj, exists, err := store.GetByKey(key); err == nil && exists {
					p.enqueue(obj)
				}
			}
		}
	})

	// Reconciles outlive the term by at most the budget: cut at once, a
	// write may still land unseen; left unbounded, after a successor's.
	writes, cut := context.WithCancel(context.WithoutCancel(ctx))
	defer cut()
	context.AfterFunc(ctx, func() { time.AfterFunc(l.m.WorkBudget(), cut) })
	var wg sync.WaitGroup
	for range l.workers {
		wg.Go(func() {
			for l.next(ctx, writes, q, primary.GetStore(), only, took) {
			}
		})
	}
	<-ctx.Done()
	l.end(lt)
	q.ShutDown()
	passing.Wait()
	wg.Wait()
	// What the term left queued goes with its queue (the next term's first
	// pass queues every object again); taken out,
	// so that the queue's depth metric does not keep saying it waits.
	for q.Len() > 0 {
		req, _ := q.Get()
		q.Forget(req)
		q.Done(req)
	}
	return nil
}

// next reconciles one object; false once the queue is shut down or the
// term is over. With shard, an object the primary informer holds now in
// another shard is not reconciled: a name deleted and made again gets a new
// uid, maybe in another shard, whose owner reconciles it.
func (l *Loop) next(ctx, writes context.Context, q workqueue.TypedRateLimitingInterface[Request], store cache.Store, shard *Shard, took chan<- struct{}) bool {
	req, shutdown := q.Get()
	if shutdown {
		return false
	}
	select {
	case took <- struct{}{}:
	default: // the first pass has been told already
	}
	defer q.Done(req)
	if ctx.Err() != nil {
		return false // no reconcile starts once the term is over
	}
	if shard != nil {
		if obj, exists, err := store.GetByKey(req.String()); err == nil && exists && !shard.containsObject(obj) {
			q.Forget(req)
			return true
		}
	}
	mx := l.m.o.metrics
	mx.ActiveWorkers(l.name, 1)
	start := time.Now()
	res, err := l.call(writes, req)
	mx.ActiveWorkers(l.name, -1)
	result := "success"
	switch {
	case err != nil:
		result = "error"
	case res.RequeueAfter > 0:
		result = "requeue_after"
	}
	mx.Reconciled(l.name, result, time.Since(start), isPanic(err))
	switch {
	case err != nil:
		l.m.log.Warn("reconcile failed; retrying with backoff", "loop", l.name, "object", req.String(),
			"err", err, "retries", q.NumRequeues(req))
		q.AddRateLimited(req)
	case res.RequeueAfter > 0:
		q.Forget(req)
		q.AddAfter(req, res.RequeueAfter)
	default:
		q.Forget(req)
	}
	return true
}

// call runs the reconciler and turns a panic into an error: the object is
// retried with backoff, as controller-runtime does.
func (l *Loop) call(ctx context.Context, req Request) (res Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = l.m.recovered("reconcile "+l.name+" "+req.String(), r)
		}
	}()
	return l.reconcile(ctx, req)
}

// firstPass is what a term's first pass queues: each object the informer
// holds, by enqueue.
type firstPass struct {
	informer cache.SharedInformer
	enqueue  func(any)
}

// ownerOf returns the name and uid of obj's controller owner of kind gk, in
// obj's namespace.
func ownerOf(obj any, gk schema.GroupKind) (Request, types.UID, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, err := meta.Accessor(obj)
	if err != nil {
		return Request{}, "", false
	}
	ref := metav1.GetControllerOfNoCopy(o)
	if ref == nil {
		return Request{}, "", false
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil || gv.Group != gk.Group || ref.Kind != gk.Kind {
		return Request{}, "", false
	}
	return Request{Namespace: o.GetNamespace(), Name: ref.Name}, ref.UID, true
}
