// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"weak"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// loopEnv is a Manager on a fake clientset with a ConfigMap informer and
// a Secret informer, and a loop over the Secrets that reports each
// reconcile on calls.
type loopEnv struct {
	cs    *fake.Clientset
	m     *Manager
	calls chan Request
	logs  *logBuffer
}

func newLoopEnv(t *testing.T, reconcile func(context.Context, Request) (Result, error), opts ...LoopOption) (*loopEnv, *Loop) {
	t.Helper()
	e := &loopEnv{cs: fake.NewClientset(), calls: make(chan Request, 100)}
	e.m, e.logs = newTestManager(t, e.cs, "a")
	secrets, err := NewInformer(e.m, e.m.fake().CoreV1().Secrets)
	if err != nil {
		t.Fatal(err)
	}
	cms, err := NewInformer(e.m, e.m.fake().CoreV1().ConfigMaps)
	if err != nil {
		t.Fatal(err)
	}
	opts = append([]LoopOption{Owns(cms, schema.GroupKind{Kind: "Secret"})}, opts...)
	l := e.m.Loop("test", secrets, func(ctx context.Context, req Request) (Result, error) {
		e.calls <- req
		return reconcile(ctx, req)
	}, opts...)
	return e, l
}

func (e *loopEnv) run(t *testing.T, work Work) (cancel func()) {
	ctx, stop := context.WithCancel(context.Background())
	done := runAsync(ctx, e.m, work)
	return func() {
		stop()
		if err := within(t, done, "Run to return"); err != nil {
			t.Errorf("Run = %v", err)
		}
	}
}

func (e *loopEnv) create(t *testing.T, obj interface{ GetName() string }) {
	t.Helper()
	var err error
	switch o := obj.(type) {
	case *corev1.Secret:
		_, err = e.cs.CoreV1().Secrets(testNS).Create(context.Background(), o, metav1.CreateOptions{})
	case *corev1.ConfigMap:
		_, err = e.cs.CoreV1().ConfigMaps(testNS).Create(context.Background(), o, metav1.CreateOptions{})
	}
	if err != nil {
		t.Fatal(err)
	}
}

func secret(name string) *corev1.Secret {
	return &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name, UID: "uid-" + types.UID(name)}}
}

func ownedConfigMap(name, owner string) *corev1.ConfigMap {
	yes := true
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name,
		OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Secret", Name: owner, UID: "uid", Controller: &yes}}}}
}

// Every event of the primary informer, and of an owned object, reconciles
// the primary object; a deletion too.
func TestLoopEvents(t *testing.T) {
	e, l := newLoopEnv(t, func(context.Context, Request) (Result, error) { return Result{}, nil })
	e.create(t, secret("s1")) // in the cache when the term begins: replayed
	stop := e.run(t, l.Work)
	defer stop()
	want := func(what string, name string) {
		t.Helper()
		if got := within(t, e.calls, what); got != (Request{Namespace: testNS, Name: name}) {
			t.Fatalf("%s: reconciled %v, want %s/%s", what, got, testNS, name)
		}
	}
	want("the cache's Secret at the start of the term", "s1")
	e.create(t, secret("s2"))
	want("a new Secret", "s2")
	e.create(t, ownedConfigMap("c", "s1"))
	want("a new ConfigMap owned by s1", "s1")
	notOwned := ownedConfigMap("d", "s1")
	notOwned.OwnerReferences[0].Kind = "Deployment"
	e.create(t, notOwned)
	select {
	case r := <-e.calls:
		t.Fatalf("a ConfigMap owned by a Deployment reconciled %v", r)
	case <-time.After(300 * time.Millisecond):
	}
	if err := e.cs.CoreV1().ConfigMaps(testNS).Delete(context.Background(), "c", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want("the owned ConfigMap deleted", "s1")
	if err := e.cs.CoreV1().Secrets(testNS).Delete(context.Background(), "s2", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	want("the Secret deleted", "s2")
}

// An error retries the object with backoff; RequeueAfter reconciles it
// again after that long; a panic is recovered, counted and retried, and the
// work goes on.
func TestLoopRetries(t *testing.T) {
	var n atomic.Int32
	e, l := newLoopEnv(t, func(_ context.Context, req Request) (Result, error) {
		switch n.Add(1) {
		case 1:
			return Result{}, errors.New("boom")
		case 2:
			panic("kaboom")
		case 3:
			return Result{RequeueAfter: 50 * time.Millisecond}, nil
		}
		return Result{}, nil
	})
	e.create(t, secret("s1"))
	stop := e.run(t, l.Work)
	for i := range 4 {
		within(t, e.calls, fmt.Sprintf("reconcile #%d", i+1))
	}
	if got := e.m.Panics(); got != 1 {
		t.Errorf("Panics() = %d, want 1", got)
	}
	stop()
	for _, want := range []string{`msg="reconcile failed; retrying with backoff"`, "err=boom", "panic in reconcile test app/s1: kaboom"} {
		if !strings.Contains(e.logs.String(), want) {
			t.Errorf("logs lack %q:\n%s", want, e.logs)
		}
	}
	select {
	case r := <-e.calls:
		t.Errorf("a 5th reconcile of %v, want none after success", r)
	default:
	}
}

// When the term ends, no reconcile starts, and the one running keeps its
// context for WorkBudget, then is cut off; the work returns once it has.
func TestLoopTermEnds(t *testing.T) {
	var mu sync.Mutex
	var cutAfter time.Duration
	ended := make(chan time.Time, 1)
	release := make(chan struct{})
	e, l := newLoopEnv(t, func(ctx context.Context, req Request) (Result, error) {
		if req.Name == "s1" {
			at := <-ended
			<-ctx.Done()
			mu.Lock()
			cutAfter = time.Since(at)
			mu.Unlock()
			close(release)
		}
		return Result{}, nil
	})
	e.create(t, secret("s1"))
	ctx, end := context.WithCancel(context.Background())
	defer end()
	stop := e.run(t, func(workCtx context.Context) error {
		termCtx, endTerm := context.WithCancel(workCtx) // ends with the test's end() too
		defer context.AfterFunc(ctx, endTerm)()
		return l.Work(termCtx)
	})
	defer stop()
	within(t, e.calls, "the first reconcile")
	e.create(t, secret("s2")) // queued behind s1 (one worker)
	time.Sleep(50 * time.Millisecond)
	end()
	ended <- time.Now()
	within(t, release, "the running reconcile to be cut off")
	mu.Lock()
	defer mu.Unlock()
	if b := e.m.WorkBudget(); cutAfter < b-20*time.Millisecond {
		t.Errorf("the running reconcile was cut %s after the term ended, want the budget %s", cutAfter, b)
	}
	time.Sleep(100 * time.Millisecond)
	select {
	case r := <-e.calls:
		t.Errorf("reconcile of %v started after the term ended", r)
	default:
	}
}

// Loops runs several loops in one term: each reconciles its own objects;
// a loop that cannot start (its informer stopped) ends the term for all,
// and Run returns its error.
func TestLoops(t *testing.T) {
	cs := fake.NewClientset(configMap(testNS, "c1", nil),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "s1"}})
	m, _ := newTestManager(t, cs, "a")
	secrets, err := NewInformer(m, cs.CoreV1().Secrets)
	if err != nil {
		t.Fatal(err)
	}
	cms, err := NewInformer(m, cs.CoreV1().ConfigMaps)
	if err != nil {
		t.Fatal(err)
	}
	seen := make(chan string, 10)
	report := func(kind string) Reconciler {
		return func(_ context.Context, req Request) (Result, error) {
			seen <- kind + " " + req.Name
			return Result{}, nil
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := runAsync(ctx, m, Loops(m.Loop("secrets", secrets, report("secret")), m.Loop("configmaps", cms, report("configmap"))))
	got := map[string]bool{}
	for len(got) < 2 {
		got[within(t, seen, "both loops to reconcile")] = true
	}
	if !got["secret s1"] || !got["configmap c1"] {
		t.Errorf("reconciled %v, want secret s1 and configmap c1", got)
	}
	cancel()
	if err := within(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v", err)
	}

	// An informer that has stopped (m's, now that its Run returned) takes
	// no handler: that loop fails, and with it the term.
	m2, _ := newTestManager(t, fake.NewClientset(), "b")
	good, err := NewInformer(m2, m2.fake().CoreV1().ConfigMaps)
	if err != nil {
		t.Fatal(err)
	}
	done = runAsync(t.Context(), m2, Loops(m2.Loop("bad", secrets, report("bad")), m2.Loop("good", good, report("good"))))
	err = within(t, done, "Run to return after the bad loop failed")
	if err == nil || !strings.Contains(err.Error(), "loop bad") {
		t.Errorf("Run = %v, want the bad loop's error", err)
	}
}

// While a term's first pass waits for the workers it holds the names of
// the objects it has yet to queue, not the objects: an object changed
// meanwhile (by the work itself, typically) is not kept alive beside its
// new version. With N writes under way that was about 1 KiB each, the
// leader's heap growing by N KiB at the smallest memory limit (issue 26,
// point 4).
func TestFirstPassKeepsNoObject(t *testing.T) {
	const n = 3 * firstPassAhead
	release := make(chan struct{})
	e, l := newLoopEnv(t, func(ctx context.Context, _ Request) (Result, error) {
		select { // the one worker holds on: the pass waits, its list kept
		case <-release:
		case <-ctx.Done():
		}
		return Result{}, nil
	})
	for i := range n {
		e.create(t, secret(fmt.Sprintf("s%03d", i)))
	}
	stop := e.run(t, l.Work)
	defer stop()
	defer close(release) // before stop: deferred calls run last first
	within(t, e.calls, "the first reconcile")
	go func() { // the reconciles after release report too: keep calls from filling up
		for {
			select {
			case <-e.calls:
			case <-t.Context().Done():
				return
			}
		}
	}()

	store := l.primary.GetStore()
	var listed []weak.Pointer[corev1.Secret]
	for _, obj := range store.List() {
		listed = append(listed, weak.Make(obj.(*corev1.Secret)))
	}
	for i := range n { // a new version of each: the cache lets go of the old
		s := secret(fmt.Sprintf("s%03d", i))
		s.Labels = map[string]string{"v": "2"}
		if _, err := e.cs.CoreV1().Secrets(testNS).Update(context.Background(), s, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		updated := 0
		for _, obj := range store.List() {
			if obj.(*corev1.Secret).Labels["v"] == "2" {
				updated++
			}
		}
		if updated == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d Secrets updated in the cache after 20 s", updated, n)
		}
	}
	alive := 0
	for range 3 {
		runtime.GC()
		alive = 0
		for _, p := range listed {
			if p.Value() != nil {
				alive++
			}
		}
		if alive == 0 {
			return
		}
	}
	t.Errorf("%d of the %d objects the cache held when the term began are alive after their new versions replaced them: the first pass keeps what it listed", alive, n)
}

// replayCounter is an informer that counts the handlers added to it after
// it synced: each of those gets the whole cache replayed as adds.
type replayCounter struct {
	cache.SharedInformer
	replays atomic.Int32
}

func (r *replayCounter) AddEventHandler(h cache.ResourceEventHandler) (cache.ResourceEventHandlerRegistration, error) {
	if r.HasSynced() {
		r.replays.Add(1)
	}
	return r.SharedInformer.AddEventHandler(h)
}

// A term's start adds no event handler: the loop's handlers were added
// once, before the informers started, and feed each term's queue in turn.
// Added at each term's start, they would get the informer's whole cache
// replayed, about 300 bytes an object at once, on the replica that just
// took the lease (issue 26, point 4). Each term still reconciles what
// changes during it, and what the cache held when it began.
func TestLoopTermStartReplaysNothing(t *testing.T) {
	cs := fake.NewClientset(&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "s0"}})
	m, _ := newTestManager(t, cs, "a")
	secrets, err := NewInformer(m, cs.CoreV1().Secrets)
	if err != nil {
		t.Fatal(err)
	}
	counted := &replayCounter{SharedInformer: secrets}
	calls := make(chan string, 100)
	l := m.Loop("test", counted, func(_ context.Context, req Request) (Result, error) {
		calls <- req.Name
		return Result{}, nil
	})
	want := func(name, what string) {
		t.Helper()
		for {
			if got := within(t, calls, what); got == name {
				return
			}
		}
	}
	terms := make(chan context.CancelFunc)
	ctx, cancel := context.WithCancel(t.Context())
	done := runAsync(ctx, m, func(ctx context.Context) error {
		for range 2 {
			term, end := context.WithCancel(ctx)
			terms <- end
			if err := l.Work(term); err != nil {
				return err
			}
		}
		<-ctx.Done()
		return nil
	})
	for i := range 2 {
		end := within(t, terms, fmt.Sprintf("term %d", i+1))
		want("s0", fmt.Sprintf("term %d: the cache's Secret reconciled (first pass)", i+1))
		name := fmt.Sprintf("s%d", i+1)
		if _, err := cs.CoreV1().Secrets(testNS).Create(t.Context(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		want(name, fmt.Sprintf("term %d: a new Secret reconciled", i+1))
		end()
	}
	cancel()
	if err := within(t, done, "Run to return"); err != nil {
		t.Errorf("Run = %v", err)
	}
	if n := counted.replays.Load(); n != 0 {
		t.Errorf("%d handlers were added to the synced informer in two terms (each replays the whole cache); want none", n)
	}
}
