// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/sharding"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
)

// Each object is in exactly one shard, the one whose range the API
// server's own shardRange selector (apimachinery's sharding.Selector, what
// the server evaluates) matches, and the ranges tile the 64-bit hash.
func TestShardRangesAreTheServers(t *testing.T) {
	for _, count := range []int{1, 2, 16, MaxShards} {
		first, _ := Shard{0, count}.Range()
		_, last := Shard{count - 1, count}.Range()
		if first != "0x0000000000000000" || last != "0x10000000000000000" {
			t.Errorf("%d shards: from %s to %s, want the whole hash", count, first, last)
		}
		for i := 1; i < count; i++ {
			_, end := Shard{i - 1, count}.Range()
			if start, _ := (Shard{i, count}).Range(); start != end {
				t.Errorf("%d shards: shard %d starts at %s, shard %d ends at %s", count, i, start, i-1, end)
			}
		}
		for range 500 {
			obj := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{UID: uuid.NewUUID()}}
			var in []int
			for i := range count {
				start, end := Shard{i, count}.Range()
				sel := sharding.NewSelector(sharding.ShardRangeRequirement{Key: "object.metadata.uid", Start: start, End: end})
				if ok, err := sel.Matches(obj); err != nil {
					t.Fatal(err)
				} else if ok {
					in = append(in, i)
				}
			}
			if len(in) != 1 || !(Shard{in[0], count}).Contains(obj.UID) || !(Shard{in[0], count}).containsObject(obj) {
				t.Fatalf("%d shards: uid %s (hash %s) in the server's ranges %v; Contains says shard %d", count, obj.UID, sharding.HashField(string(obj.UID)), in, shardIndex(obj.UID, count))
			}
		}
	}
	if got := (Shard{1, 4}).Selector(); got != "shardRange(object.metadata.uid, '0x4000000000000000', '0x8000000000000000')" {
		t.Errorf("Selector() = %s", got)
	}
}

// The assignment gives every shard one owner, no member more than
// ceil(S/N), and a member that joins or leaves moves few shards: it is
// compared with i mod N, which moves most of them.
func TestAssign(t *testing.T) {
	const count = 16
	members := func(n int) []string {
		var out []string
		for i := range n {
			out = append(out, fmt.Sprintf("controller-%d_%x", i, i*7919))
		}
		return out
	}
	for n := 1; n <= 8; n++ {
		owners := assign(members(n), count)
		load := map[string]int{}
		for i, o := range owners {
			if o == "" {
				t.Fatalf("N=%d: shard %d has no owner", n, i)
			}
			load[o]++
		}
		limit := (count + n - 1) / n
		for o, l := range load {
			if l > limit || l < count/n {
				t.Errorf("N=%d: %s owns %d shards; want floor or ceil of %d/%d", n, o, l, count, n)
			}
		}
		if len(load) != min(n, count) {
			t.Errorf("N=%d: %d members own shards", n, len(load))
		}
		// The order members are given in does not matter.
		shuffled := members(n)
		rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if !slices.Equal(assign(shuffled, count), owners) {
			t.Errorf("N=%d: another order of the members gives another assignment", n)
		}
		if n == 8 {
			break
		}
		// One joins: the shards that move, against i mod N.
		next := assign(members(n+1), count)
		moved, modMoved := 0, 0
		for i := range count {
			if next[i] != owners[i] {
				moved++
			}
			if i%n != i%(n+1) {
				modMoved++
			}
		}
		t.Logf("N=%d -> %d: %d of %d shards move (i mod N: %d)", n, n+1, moved, count, modMoved)
		if moved > count/2 {
			t.Errorf("N=%d -> %d: %d shards move; i mod N moves %d", n, n+1, moved, modMoved)
		}
	}
}

// shardWatch records which replica runs the work of each shard, and fails
// when two run the same shard's work at once: the invariant per shard.
type shardWatch struct {
	t       *testing.T
	mu      sync.Mutex
	running map[int]string // shard -> identity
	twice   atomic.Int32
	most    map[string]int // identity -> most shards run at once there
}

func (w *shardWatch) work(id string) Work {
	return func(ctx context.Context) error {
		sh, ok := ShardFrom(ctx)
		if !ok {
			w.t.Errorf("%s: the work's context has no shard", id)
			return nil
		}
		w.mu.Lock()
		if other, busy := w.running[sh.Index]; busy {
			w.twice.Add(1)
			w.t.Errorf("shard %d: %s starts its work while %s runs it", sh.Index, id, other)
		}
		w.running[sh.Index] = id
		n := 0
		for _, other := range w.running {
			if other == id {
				n++
			}
		}
		if w.most == nil {
			w.most = map[string]int{}
		}
		w.most[id] = max(w.most[id], n)
		w.mu.Unlock()
		<-ctx.Done()
		time.Sleep(20 * time.Millisecond) // writes in flight
		w.mu.Lock()
		if w.running[sh.Index] == id {
			delete(w.running, sh.Index)
		}
		w.mu.Unlock()
		return nil
	}
}

// owners returns, per identity, the shards whose work runs there.
func (w *shardWatch) owners() map[string][]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string][]int{}
	for i, id := range w.running {
		out[id] = append(out[id], i)
	}
	return out
}

// waitShards waits until the works of all count shards run, spread over
// exactly ids with at most limit each; it returns the last spread seen.
func (w *shardWatch) waitShards(ids []string, count, limit int) (map[string][]int, bool) {
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := w.owners()
		n, ok := 0, len(got) == len(ids)
		for _, id := range ids {
			n += len(got[id])
			ok = ok && len(got[id]) >= 1 && len(got[id]) <= limit
		}
		if ok && n == count {
			return got, true
		}
		if time.Now().After(deadline) {
			return got, false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Three replicas share 8 shards, at most 3 each, and each shard's work runs
// on one replica at a time; one replica shuts down: the two others take its
// shards (at most 4 each); a new one joins: it gets its share, given back
// by the others after their work for it returned.
func TestShardsMoveBetweenReplicas(t *testing.T) {
	const count = 8
	cs := fake.NewClientset()
	optimisticLeases(cs)
	w := &shardWatch{t: t, running: map[int]string{}}
	type replica struct {
		m      *Manager
		cancel context.CancelFunc
		wait   func() error
	}
	start := func(id string) replica {
		m, _ := newTestManager(t, cs, id, WithShards(count))
		ctx, cancel := context.WithCancel(context.Background())
		done := runAsync(ctx, m, w.work(id))
		r := replica{m: m, cancel: cancel, wait: sync.OnceValue(func() error { return within(t, done, id+"'s Run to return") })}
		t.Cleanup(func() { cancel(); _ = r.wait() })
		return r
	}
	a, _, c := start("a"), start("b"), start("c")
	if got, ok := w.waitShards([]string{"a", "b", "c"}, count, 3); !ok {
		t.Fatalf("3 replicas: shards run as %v; want all 8, 1 to 3 on each", got)
	} else {
		t.Logf("3 replicas: %v", got)
	}
	if st := a.m.Shards(); st.Of != count || st.Members != 3 || len(st.Held) == 0 {
		t.Errorf("a's Shards() = %+v", st)
	}

	c.cancel()
	if err := c.wait(); err != nil {
		t.Fatalf("c's Run: %v", err)
	}
	if got, ok := w.waitShards([]string{"a", "b"}, count, 4); !ok {
		t.Fatalf("c gone: shards run as %v; want all 8 on a and b, 4 each", got)
	} else {
		t.Logf("c shut down: %v", got)
	}
	if _, err := cs.CoordinationV1().Leases(testNS).Get(context.Background(), c.m.shards.memberName, getOpts); err == nil {
		t.Errorf("c's member Lease %s is still there after its Run returned", c.m.shards.memberName)
	}

	start("d")
	if got, ok := w.waitShards([]string{"a", "b", "d"}, count, 3); !ok {
		t.Fatalf("d joined: shards run as %v; want all 8, 1 to 3 on each", got)
	} else {
		t.Logf("d joined: %v", got)
	}
	if n := w.twice.Load(); n > 0 {
		t.Fatalf("%d times a shard's work started while another replica ran it", n)
	}
}

// A loop of a sharded Manager reconciles only the objects of its shard,
// and of owned objects only those whose owner is in it.
func TestLoopOnlyItsShard(t *testing.T) {
	cs := fake.NewClientset()
	var objs []*corev1.ConfigMap
	for i := range 64 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: fmt.Sprintf("cm-%d", i), UID: uuid.NewUUID()}}
		objs = append(objs, cm)
		if _, err := cs.CoreV1().ConfigMaps(testNS).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := newTestManager(t, cs, "a", WithShards(4))
	cms := cs.CoreV1().ConfigMaps(testNS)
	inf := cache.NewSharedIndexInformer(cache.ToListWatcherWithWatchListSemantics(&cache.ListWatch{
		ListWithContextFunc:  func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return cms.List(ctx, o) },
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) { return cms.Watch(ctx, o) },
	}, cs), &corev1.ConfigMap{}, 0, cache.Indexers{})
	ictx, stopInformer := context.WithCancel(context.Background())
	defer stopInformer()
	go inf.RunWithContext(ictx)
	cache.WaitForCacheSync(ictx.Done(), inf.HasSynced)
	shard := Shard{Index: 2, Count: 4}
	var mu sync.Mutex
	seen := map[string]bool{}
	l := m.Loop("test", inf, func(_ context.Context, req Request) (Result, error) {
		mu.Lock()
		seen[req.Name] = true
		mu.Unlock()
		return Result{}, nil
	})
	ctx, cancel := context.WithCancel(context.WithValue(context.WithValue(context.Background(), termKey{}, &term{m: m, cancel: func(error) {}}), shardKey{}, shard))
	done := make(chan error, 1)
	go func() { done <- l.Work(ctx) }()
	want := map[string]bool{}
	for _, o := range objs {
		if shard.Contains(o.UID) {
			want[o.Name] = true
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // anything else queued would be reconciled by now
	cancel()
	within(t, done, "the loop to return")
	mu.Lock()
	defer mu.Unlock()
	for name := range seen {
		if !want[name] {
			t.Errorf("reconciled %s, which is not in shard %v", name, shard)
		}
	}
	if len(seen) != len(want) || len(want) == 0 {
		t.Errorf("reconciled %d objects, want the %d of shard %v", len(seen), len(want), shard)
	}
	if _, _, ok := ownerOf(&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{APIVersion: "v1", Kind: "Secret", Name: "s", UID: types.UID("u"), Controller: new(true)}}}}, corev1.SchemeGroupVersion.WithKind("Secret").GroupKind()); !ok {
		t.Error("ownerOf found no owner")
	}
}

// A replica that dies holding a shard: the shard is assigned elsewhere once
// its member Lease is seen unrenewed for the lease duration, and taken at
// once then, not a lease duration later: the new owner's elector is told
// how long the shard's Lease has gone unrenewed (observedLock). Without
// that, client-go's elector would count the lease duration from its own
// first look, and the shard would wait twice the lease duration. Nor a
// jittered retry period later (up to 2.2): a new elector's first try waits
// for the Lease's expiry when it is that close, and finds it expired then.
// With a retry period of 1 s, taken within 0.5 s of the lease duration.
func TestDeadReplicasShardTakenAfterOneLeaseDuration(t *testing.T) {
	for _, retry := range []time.Duration{100 * time.Millisecond, time.Second} {
		t.Run("retry "+retry.String(), func(t *testing.T) { deadReplicasShardTaken(t, retry) })
	}
}

func deadReplicasShardTaken(t *testing.T, retry time.Duration) {
	const lease = 3 * time.Second
	cs := fake.NewClientset()
	optimisticLeases(cs)
	// "dead" renewed its member Lease and both shards' once, just now, then
	// died. "a" starts: the shards are assigned to it once dead's member
	// Lease is seen unrenewed for a lease duration.
	now := metav1.NowMicro()
	secs, dead := int32(lease/time.Second), "dead"
	for name, role := range map[string]string{"test-lease-member-dead": "member", "test-lease-shard-0": "shard", "test-lease-shard-1": "shard"} {
		if _, err := cs.CoordinationV1().Leases(testNS).Create(context.Background(), &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: map[string]string{shardGroupLabel: "test-lease", shardRoleLabel: role}},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &dead, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	died := time.Now()
	w := &shardWatch{t: t, running: map[int]string{}}
	m, _ := newTestManager(t, cs, "a", WithShards(2), WithLeaseDuration(lease), WithRenewDeadline(2*time.Second), WithRetryPeriod(retry))
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, m, w.work("a"))
	defer func() { cancel(); within(t, done, "Run to return") }()
	if _, ok := w.waitShards([]string{"a"}, 2, 2); !ok {
		t.Fatal("the shards never taken")
	}
	took := time.Since(died)
	t.Logf("both shards taken %.2f s after their owner died (lease duration %s, retry period %s)", took.Seconds(), lease, retry)
	if took > lease+500*time.Millisecond {
		t.Errorf("both shards taken %.2f s after their owner died; want within 0.5 s of the lease duration (%s): not twice it, nor retry periods after it", took.Seconds(), lease)
	}
}

// Sharded, a Loop's primary informer is made per shard held: each
// replica's cache (Informer.List) holds exactly the objects of its shards,
// and each object is reconciled. The fake API server ignores shardSelector
// (no metadata.shardInfo), so this is the client-side mode: each shard's
// informer keeps its shard's objects of every one sent.
func TestShardInformersHoldTheirShards(t *testing.T) {
	const count = 4
	cs := fake.NewClientset()
	optimisticLeases(cs)
	var want []string
	for i := range 64 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: fmt.Sprintf("cm-%d", i), UID: uuid.NewUUID()}}
		want = append(want, cm.Name)
		if _, err := cs.CoreV1().ConfigMaps(testNS).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	reconciled := map[string]bool{}
	type replica struct {
		m   *Manager
		cms *Informer[*corev1.ConfigMap]
	}
	var replicas []replica
	for _, id := range []string{"a", "b"} {
		m, _ := newTestManager(t, cs, id, WithShards(count))
		cms, err := NewInformer(m, cs.CoreV1().ConfigMaps)
		if err != nil {
			t.Fatal(err)
		}
		loop := m.Loop("test", cms, func(ctx context.Context, req Request) (Result, error) {
			sh, _ := ShardFrom(ctx)
			cm, err := cms.Get(req.Namespace, req.Name)
			if err != nil {
				t.Errorf("%s, shard %v: Get(%s): %v", id, sh, req, err)
				return Result{}, nil
			}
			if !sh.Contains(cm.UID) {
				t.Errorf("%s: shard %v reconciles %s, of another shard", id, sh, req)
			}
			mu.Lock()
			reconciled[req.Name] = true
			mu.Unlock()
			return Result{}, nil
		})
		ctx, cancel := context.WithCancel(context.Background())
		done := runAsync(ctx, m, loop.Work)
		t.Cleanup(func() { cancel(); within(t, done, id+"'s Run to return") })
		replicas = append(replicas, replica{m, cms})
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok := true
		total := 0
		for _, r := range replicas {
			st := r.m.Shards()
			cached, err := r.cms.List("", nil)
			if err != nil {
				t.Fatal(err)
			}
			total += len(cached)
			for _, cm := range cached {
				if !slices.Contains(st.Held, shardIndex(cm.UID, count)) {
					ok = false // a shard given back, not yet dropped
				}
			}
			ok = ok && len(st.Held) == count/2
		}
		mu.Lock()
		n := len(reconciled)
		mu.Unlock()
		if ok && total == len(want) && n == len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 20 s: %d of %d reconciled, %d cached in all (want each cache to hold its shards' only, all %d between them); shards %+v %+v",
				n, len(want), total, len(want), replicas[0].m.Shards(), replicas[1].m.Shards())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, r := range replicas {
		cached, _ := r.cms.List("", nil)
		t.Logf("%s holds shards %v and caches %d of the %d ConfigMaps", r.m.Identity(), r.m.Shards().Held, len(cached), len(want))
	}
}

// When the API server answers a shardSelector with metadata.shardInfo (it
// applied it: ShardedListAndWatch on), the shard's informers send the
// selector and keep what comes back; when it does not, they filter. The
// fake API server here filters and says so, like a server with the gate.
func TestServerShardsDetected(t *testing.T) {
	cs := fake.NewClientset()
	var asked atomic.Int32
	cs.PrependReactor("list", "configmaps", func(a k8stesting.Action) (bool, runtime.Object, error) {
		o := a.(k8stesting.ListActionImpl).GetListOptions()
		if o.ShardSelector == "" {
			return false, nil, nil
		}
		asked.Add(1)
		return true, &corev1.ConfigMapList{ListMeta: metav1.ListMeta{ShardInfo: &metav1.ShardInfo{Selector: o.ShardSelector}}}, nil
	})
	m, logs := newTestManager(t, cs, "a", WithShards(2))
	cms, err := NewInformer(m, cs.CoreV1().ConfigMaps)
	if err != nil {
		t.Fatal(err)
	}
	m.Loop("test", cms, func(context.Context, Request) (Result, error) { return Result{}, nil })
	m.shards.prepare(context.Background())
	if e := cms.entry; !e.sharded || !e.server {
		t.Fatalf("sharded %v, server %v; want both", e.sharded, e.server)
	}
	if !strings.Contains(logs.String(), "the API server filters each shard") {
		t.Errorf("log: %s", logs.String())
	}
	m.synced.Store(true)
	if code, body := probe(m, "/readyz"); code != 200 || !strings.Contains(body, "sharded configmaps: filtered by the API server") {
		t.Errorf("/readyz: %d %q; want 200 and the filter's line", code, body)
	}

	// WithClientShardFilter: filtered here although the server would.
	m3, logs3 := newTestManager(t, cs, "c", WithShards(2), WithClientShardFilter())
	cms3, _ := NewInformer(m3, cs.CoreV1().ConfigMaps)
	m3.Loop("test", cms3, func(context.Context, Request) (Result, error) { return Result{}, nil })
	m3.shards.prepare(context.Background())
	if e := cms3.entry; !e.sharded || e.server || !strings.Contains(logs3.String(), "WithClientShardFilter") {
		t.Errorf("WithClientShardFilter: sharded %v, server %v; log %s", e.sharded, e.server, logs3.String())
	}

	plain := fake.NewClientset()
	m2, logs2 := newTestManager(t, plain, "b", WithShards(2))
	cms2, _ := NewInformer(m2, plain.CoreV1().ConfigMaps)
	m2.Loop("test", cms2, func(context.Context, Request) (Result, error) { return Result{}, nil })
	m2.shards.prepare(context.Background())
	if e := cms2.entry; !e.sharded || e.server {
		t.Fatalf("without shardInfo: sharded %v, server %v; want sharded, not by the server", e.sharded, e.server)
	}
	if !strings.Contains(logs2.String(), "not served") {
		t.Errorf("log: %s", logs2.String())
	}
	m2.synced.Store(true)
	if code, body := probe(m2, "/readyz"); code != 200 || !strings.Contains(body, "sharded configmaps: filtered by this replica") {
		t.Errorf("/readyz without shardInfo: %d %q; want 200 and the filter's line", code, body)
	}
	if asked.Load() == 0 {
		t.Error("the server was never asked with a shardSelector")
	}
}

// Replicas that start together wait for each other before taking shards:
// none ever runs (and caches) more than its share, as they would if the
// first to start contended for every shard and gave most back a moment
// later.
func TestReplicasStartedTogetherTakeTheirShareOnly(t *testing.T) {
	const count, n = 16, 4
	cs := fake.NewClientset()
	optimisticLeases(cs)
	w := &shardWatch{t: t, running: map[int]string{}}
	ids := []string{"a", "b", "c", "d"}
	for _, id := range ids {
		m, _ := newTestManager(t, cs, id, WithShards(count), WithLeaseDuration(3*time.Second), WithRenewDeadline(2*time.Second), WithRetryPeriod(250*time.Millisecond))
		ctx, cancel := context.WithCancel(context.Background())
		done := runAsync(ctx, m, w.work(id))
		t.Cleanup(func() { cancel(); within(t, done, id+"'s Run to return") })
	}
	got, ok := w.waitShards(ids, count, count/n)
	if !ok {
		t.Fatalf("shards run as %v; want all %d, %d on each of %v", got, count, count/n, ids)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t.Logf("most shards run at once per replica: %v", w.most)
	for _, id := range ids {
		if w.most[id] > count/n {
			t.Errorf("%s ran %d shards at once; its share is %d of %d among %d replicas", id, w.most[id], count/n, count, n)
		}
	}
}

// A replica contending for a shard that another holds caches none of its
// objects: the shard's informers start once its Lease is written as ours.
func TestShardCachedOnlyOnceHeld(t *testing.T) {
	const lease = 3 * time.Second
	cs := fake.NewClientset()
	optimisticLeases(cs)
	for i := range 32 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: fmt.Sprintf("cm-%d", i), UID: uuid.NewUUID()}}
		if _, err := cs.CoreV1().ConfigMaps(testNS).Create(context.Background(), cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// Both shards held by "other", renewed just now: a waits a lease
	// duration for them.
	now := metav1.NowMicro()
	secs, other := int32(lease/time.Second), "other"
	for _, name := range []string{"test-lease-shard-0", "test-lease-shard-1"} {
		if _, err := cs.CoordinationV1().Leases(testNS).Create(context.Background(), &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: testNS, Labels: map[string]string{shardGroupLabel: "test-lease", shardRoleLabel: "shard"}},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &other, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	m, _ := newTestManager(t, cs, "a", WithShards(2), WithLeaseDuration(lease), WithRenewDeadline(2*time.Second), WithRetryPeriod(100*time.Millisecond))
	cms, err := NewInformer(m, cs.CoreV1().ConfigMaps)
	if err != nil {
		t.Fatal(err)
	}
	loop := m.Loop("test", cms, func(context.Context, Request) (Result, error) { return Result{}, nil })
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, m, loop.Work)
	defer func() { cancel(); within(t, done, "Run to return") }()
	deadline := time.Now().Add(3 * lease)
	for {
		st := m.Shards()
		cached := 0
		for _, si := range st.Informers {
			cached += si.Cached
		}
		if len(st.Held) == 0 && cached > 0 {
			t.Fatalf("%d objects cached while no shard is held (assigned %v): a shard's cache must wait for its Lease", cached, st.Assigned)
		}
		if len(st.Held) == 2 && cached == 32 {
			t.Logf("both shards held, %d objects cached", cached)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %+v", 3*lease, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
