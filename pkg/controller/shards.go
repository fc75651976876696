// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/bits"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/sharding"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// This file owns sharding (WithShards, docs/sharding.md): which shard an
// object is in, which replica should own each shard, and the coordinator
// that runs one elector per shard this replica should own. The election
// itself, per shard, is election.go's, unchanged.

// MaxShards is the largest shard count WithShards takes.
const MaxShards = 256

// Labels of a shard group's Leases: the group (the Manager's lease name),
// and whether a Lease is a shard's or a member's.
const (
	shardGroupLabel = "incluster.dev/shard-group"
	shardRoleLabel  = "incluster.dev/shard-role"
)

// WithShards splits the work into count shards (a power of two, at most
// MaxShards) by the hash of each object's metadata.uid, the API server's
// shardRange function. Each shard is owned through a Lease of its own,
// "<lease name>-shard-<i>", with the leader's safe handoff; the replicas
// spread the shards among themselves, each renewing a membership Lease
// "<lease name>-member-<hash>", and move them when a replica joins or
// leaves. Run runs the work once per shard held, with a context that
// carries the shard (ShardFrom); a Loop reconciles only its shard's
// objects. The Role then needs get, list, watch, create, update and delete
// on all Leases of the namespace (their names are not known in advance).
func WithShards(count int) Option { return func(o *options) { o.shards = count } }

// WithClientShardFilter makes each shard's informer filter by the hash on
// this side even where the API server would apply a shardSelector: every
// replica then receives every object (and keeps its shards'). For comparing
// the two, or for a server whose sharded watch misbehaves.
func WithClientShardFilter() Option { return func(o *options) { o.clientShardFilter = true } }

// Shard is one of Count parts of a controller's objects: those whose
// metadata.uid hashes (64-bit FNV-1a) into the Index-th of Count equal
// ranges of the hash, as the API server's shardRange selects them.
type Shard struct{ Index, Count int }

// shardKey is the work context's key for its Shard.
type shardKey struct{}

// ShardFrom returns the shard the work of ctx is for; false when the
// Manager is not sharded.
func ShardFrom(ctx context.Context) (Shard, bool) {
	s, ok := ctx.Value(shardKey{}).(Shard)
	return s, ok
}

// shardIndex is the shard of uid among count (a power of two): the top
// bits of its hash.
func shardIndex(uid types.UID, count int) int {
	h, _ := strconv.ParseUint(sharding.HashField(string(uid)), 16, 64) // always 16 hex digits
	if count <= 1 {
		return 0
	}
	return int(h >> (64 - bits.TrailingZeros(uint(count))))
}

// Contains says whether the object with this uid is in the shard.
func (s Shard) Contains(uid types.UID) bool { return shardIndex(uid, s.Count) == s.Index }

// Range returns the shard's hash range [start, end) as the API server's
// shardRange takes it: "0x" and 16 lowercase hex digits, and
// "0x10000000000000000" for the end of the last shard.
func (s Shard) Range() (start, end string) {
	width := uint64(1) << (64 - bits.TrailingZeros(uint(s.Count))) // 0 when Count is 1: the whole range
	bound := func(i int) string {
		if i >= s.Count {
			return "0x10000000000000000"
		}
		return fmt.Sprintf("0x%016x", uint64(i)*width)
	}
	return bound(s.Index), bound(s.Index + 1)
}

// Selector is the shard as a ListOptions.shardSelector.
func (s Shard) Selector() string {
	start, end := s.Range()
	return fmt.Sprintf("shardRange(object.metadata.uid, '%s', '%s')", start, end)
}

func (s Shard) String() string { return fmt.Sprintf("%d/%d", s.Index, s.Count) }

// containsObject says whether obj (or a tombstone of it) is in the shard.
func (s Shard) containsObject(obj any) bool {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	o, err := meta.Accessor(obj)
	return err == nil && s.Contains(o.GetUID())
}

// assign returns, for each of count shards, the member that should own it.
// Each member gets count/len(members) shards, and the first count %
// len(members) members (by the hash of their name) one more: balanced.
// Shards go by rendezvous hashing: of all (member, shard) pairs, by the
// FNV-1a of "member/shard" from the highest down, a pair is taken while the
// shard has no owner and the member has room. Every replica computes the
// same from the same members, and a member that joins or leaves moves few
// shards. members must be non-empty.
func assign(members []string, count int) []string {
	members = slices.Clone(members)
	slices.Sort(members)
	members = slices.Compact(members)
	score := func(member string, shard int) uint64 {
		h := fnv.New64a()
		fmt.Fprintf(h, "%s/%d", member, shard)
		return h.Sum64()
	}
	byHash := slices.Clone(members)
	slices.SortFunc(byHash, func(a, b string) int { return cmp.Compare(score(a, -1), score(b, -1)) })
	room := map[string]int{}
	for i, mbr := range byHash {
		room[mbr] = count / len(members)
		if i < count%len(members) {
			room[mbr]++
		}
	}
	type pair struct {
		member string
		shard  int
		score  uint64
	}
	pairs := make([]pair, 0, count*len(members))
	for _, mbr := range members {
		for i := range count {
			pairs = append(pairs, pair{mbr, i, score(mbr, i)})
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := cmp.Compare(b.score, a.score); c != 0 {
			return c
		}
		if c := strings.Compare(a.member, b.member); c != 0 {
			return c
		}
		return cmp.Compare(a.shard, b.shard)
	})
	owners := make([]string, count)
	for _, p := range pairs {
		if owners[p.shard] == "" && room[p.member] > 0 {
			owners[p.shard] = p.member
			room[p.member]--
		}
	}
	return owners
}

// member is a membership Lease, or a shard's Lease, as last seen changed.
type member struct {
	holder    string
	renewTime string        // as last seen, to tell a renewal
	seenAt    time.Time     // when it was last seen renewed, by this replica's clock
	duration  time.Duration // its leaseDurationSeconds
}

// sharder runs the shards this replica should own: it renews its member
// Lease, keeps the live members from the shard group's Lease watch,
// assigns the shards, and starts one elector per shard assigned here;
// when a shard is assigned elsewhere, it stops that elector, which gives
// the shard's Lease back once the shard's work has returned.
type sharder struct {
	m          *Manager
	count      int
	memberName string
	electors   []*elector
	changed    chan struct{} // the members changed (buffer 1)

	mu       sync.Mutex
	members  map[string]member // by Lease name
	observed []member          // each shard's Lease, as last seen changed
	owners   []string          // the last assignment
	assigned atomic.Int64      // shards assigned here by the last assignment
}

func newSharder(m *Manager, count int) *sharder {
	h := fnv.New32a()
	h.Write([]byte(m.identity))
	s := &sharder{
		m: m, count: count, changed: make(chan struct{}, 1), members: map[string]member{},
		memberName: fmt.Sprintf("%s-member-%08x", m.leaseName, h.Sum32()),
		observed:   make([]member, count),
	}
	for i := range count {
		name := fmt.Sprintf("%s-shard-%d", m.leaseName, i)
		e := m.newElector(name, m.o.logger.With("lease", m.namespace+"/"+name, "identity", m.identity, "shard", i))
		e.shard = &Shard{Index: i, Count: count}
		e.labels = map[string]string{shardGroupLabel: m.leaseName, shardRoleLabel: "shard"}
		e.newLock = func() resourcelock.Interface {
			return &observedLock{Interface: e.newLeaseLock(), identity: m.identity, observed: func() member { return s.observedShard(i) }}
		}
		s.electors = append(s.electors, e)
	}
	return s
}

// expiresIn is how long until shard i's Lease, held by another, expires as
// this replica's watch saw it renewed last; 0 if free, ours, or expired.
func (s *sharder) expiresIn(i int) time.Duration {
	o := s.observedShard(i)
	if o.holder == "" || o.holder == s.m.identity || o.seenAt.IsZero() {
		return 0
	}
	return max(time.Until(o.seenAt.Add(o.duration)), 0)
}

// observedShard returns shard i's Lease as this replica last saw it change.
func (s *sharder) observedShard(i int) member {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.observed[i]
}

// observedLock is a shard's lock that tells client-go's elector how long
// the Lease has gone unrenewed as this replica's watch of the group's
// Leases saw it. client-go judges a Lease held by another from its own
// first look: a new elector (a shard just assigned here, after its owner
// died) would wait a whole lease duration more. When the Lease read now is
// the version the watch saw (same holder, same renewTime), the record's
// leaseDurationSeconds is lowered to what is left of it since the watch saw
// that version, rounded up. Never earlier than client-go would be, had its
// elector been watching since then; the acquisition itself is the usual
// update with the read's resourceVersion.
type observedLock struct {
	resourcelock.Interface
	identity string
	observed func() member
}

func (l *observedLock) Get(ctx context.Context) (*resourcelock.LeaderElectionRecord, []byte, error) {
	r, raw, err := l.Interface.Get(ctx)
	rem, ok := l.remaining(r, err)
	if !ok {
		return r, raw, err
	}
	left := int(math.Ceil(rem.Seconds()))
	if left >= r.LeaseDurationSeconds {
		return r, raw, err
	}
	c := *r
	c.LeaseDurationSeconds = left
	if left <= 0 {
		// Expired. client-go counts a Lease valid while the time it saw
		// this record plus its duration is after a "now" it read before
		// this Get: with 0 the first try would still find it valid.
		c.LeaseDurationSeconds = -1
	}
	if b, jerr := json.Marshal(c); jerr == nil {
		return &c, b, nil
	}
	return r, raw, err
}

// remaining is how long the Lease r read has left, counted from when the
// group watch saw that version; false when that does not apply (an error,
// no holder, ours, or changed since the watch saw it: client-go's own count).
func (l *observedLock) remaining(r *resourcelock.LeaderElectionRecord, err error) (time.Duration, bool) {
	if err != nil || r == nil || r.HolderIdentity == "" || r.HolderIdentity == l.identity {
		return 0, false
	}
	o := l.observed()
	if o.seenAt.IsZero() || o.holder != r.HolderIdentity || o.renewTime != r.RenewTime.UTC().Format(time.RFC3339Nano) {
		return 0, false
	}
	return time.Duration(r.LeaseDurationSeconds)*time.Second - time.Since(o.seenAt), true
}

// seen takes note of a Lease of the group, as watched.
func (s *sharder) seen(l *coordinationv1.Lease, deleted bool) {
	switch l.Labels[shardRoleLabel] {
	case "shard":
		if i, ok := s.shardOf(l.Name); ok && !deleted {
			renew := renewTimeOf(l)
			s.mu.Lock()
			if o := s.observed[i]; o.holder != holderOf(l) || o.renewTime != renew {
				var d time.Duration
				if l.Spec.LeaseDurationSeconds != nil {
					d = time.Duration(*l.Spec.LeaseDurationSeconds) * time.Second
				}
				s.observed[i] = member{holder: holderOf(l), renewTime: renew, seenAt: time.Now(), duration: d}
			}
			s.mu.Unlock()
			s.electors[i].seen(l)
		}
	case "member":
		s.mu.Lock()
		old, had := s.members[l.Name]
		renew := renewTimeOf(l)
		switch {
		case deleted || holderOf(l) == "":
			delete(s.members, l.Name)
		case !had || old.renewTime != renew || old.holder != holderOf(l):
			s.members[l.Name] = member{holder: holderOf(l), renewTime: renew, seenAt: time.Now()}
		}
		s.mu.Unlock()
		if deleted || !had {
			s.signal()
		}
	}
}

// renewTimeOf is the Lease's renewTime as a comparable string ("" if none).
func renewTimeOf(l *coordinationv1.Lease) string {
	if l.Spec.RenewTime == nil {
		return ""
	}
	return l.Spec.RenewTime.UTC().Format(time.RFC3339Nano)
}

func (s *sharder) signal() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

func (s *sharder) shardOf(leaseName string) (int, bool) {
	i, err := strconv.Atoi(strings.TrimPrefix(leaseName, s.m.leaseName+"-shard-"))
	return i, err == nil && i >= 0 && i < s.count && leaseName == fmt.Sprintf("%s-shard-%d", s.m.leaseName, i)
}

// live returns the identities of the members seen renewed within the lease
// duration, this replica's always, sorted, each once.
func (s *sharder) live(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []string{s.m.identity}
	for _, mb := range s.members {
		if now.Sub(mb.seenAt) < s.m.o.leaseDuration {
			out = append(out, mb.holder)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// shardRun is one elector's run: contend for its shard until stopped.
type shardRun struct {
	stop     context.CancelFunc
	stopping bool
	done     chan struct{}
	err      error // why the run ended on its own (the work failed, returned, or ErrLeadershipLost)
}

// run is Run's loop when sharded: it returns when ctx is cancelled (after
// every shard's work returned and its Lease was given back), or when a
// shard's work failed or returned on its own (after the others stopped).
func (s *sharder) run(ctx context.Context, work Work) error {
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		s.renewMember(ctx)
	}()
	s.settle(ctx)
	runs := make([]*shardRun, s.count)
	ended := make(chan struct{}, s.count)
	tick := time.NewTicker(s.m.o.retryPeriod)
	defer tick.Stop()
	var failed error
	for {
		live := s.live(time.Now())
		owners := assign(live, s.count)
		s.mu.Lock()
		if !slices.Equal(owners, s.owners) {
			s.owners = owners
			s.m.log.Info("shards assigned", "here", s.mine(owners), "members", len(live))
		}
		s.mu.Unlock()
		mine := 0
		for i, r := range runs {
			if r != nil {
				select {
				case <-r.done:
					if r.err != nil && failed == nil {
						failed = r.err
					}
					runs[i], r = nil, nil
				default:
				}
			}
			want := owners[i] == s.m.identity && failed == nil && ctx.Err() == nil
			if want {
				mine++
			}
			switch {
			case want && r == nil:
				runs[i] = s.start(ctx, i, work, ended)
			case !want && r != nil && !r.stopping:
				r.stopping = true
				r.stop() // the shard's work stops; its Lease is given back once it returned
			}
		}
		s.assigned.Store(int64(mine))
		if failed != nil || ctx.Err() != nil {
			if !slices.ContainsFunc(runs, func(r *shardRun) bool { return r != nil }) {
				<-renewed
				return failed
			}
		}
		select {
		case <-ctx.Done():
		case <-s.changed:
		case <-ended:
		case <-tick.C:
		}
		if ctx.Err() != nil {
			// Members that see this one gone take its shards as soon as
			// their Leases are given back.
			<-renewed
			s.deleteMember()
			for _, r := range runs {
				if r != nil {
					<-r.done
				}
			}
		}
	}
}

// settle returns once the members seen have not changed for two retry
// periods, or after the lease duration, or when ctx ends. Replicas that
// start together (a Deployment's) see each other's member Leases a moment
// apart; without it, the first to start would contend for every shard,
// cache them all and give most back a moment later: the peak memory of a
// single replica in each.
func (s *sharder) settle(ctx context.Context) {
	quiet := 2 * s.m.o.retryPeriod
	bound := time.NewTimer(s.m.o.leaseDuration)
	defer bound.Stop()
	t := time.NewTimer(quiet)
	defer t.Stop()
	s.m.log.Info("waiting for the members to settle before taking shards", "quiet", quiet, "at most", s.m.o.leaseDuration)
	for {
		select {
		case <-ctx.Done():
			return
		case <-bound.C:
			return
		case <-t.C:
			return
		case <-s.changed:
			t.Reset(quiet)
		}
	}
}

func (s *sharder) mine(owners []string) []int {
	var out []int
	for i, o := range owners {
		if o == s.m.identity {
			out = append(out, i)
		}
	}
	return out
}

// start runs shard i's elector until stop is called (or ctx is cancelled:
// the process shuts down), round after round.
func (s *sharder) start(ctx context.Context, i int, work Work, ended chan<- struct{}) *shardRun {
	e := s.electors[i]
	rctx, stop := context.WithCancel(ctx)
	r := &shardRun{stop: stop, done: make(chan struct{})}
	var once sync.Once
	var at time.Time
	e.deadline = func() time.Time {
		if ctx.Err() != nil {
			return s.m.shutdownDeadline() // the process shuts down: its deadline
		}
		once.Do(func() { at = time.Now().Add(s.m.o.shutdownTimeout) })
		return at
	}
	// The shard's informers live as long as a term of its Lease: made
	// once the Lease is ours (a replica contending for a shard held by
	// another caches nothing of it), stopped and waited for after the work
	// returned. The work starts once they have synced.
	shardWork := func(ctx context.Context) error {
		informers, stopInformers := context.WithCancel(context.WithoutCancel(ctx))
		synced, wait := s.startShard(informers, i)
		defer func() {
			stopInformers()
			wait()
		}()
		if !cache.WaitForCacheSync(ctx.Done(), synced...) {
			return nil // cancelled before the shard's caches synced
		}
		return work(ctx)
	}
	go func() {
		defer func() {
			close(r.done)
			select {
			case ended <- struct{}{}:
			default: // one pending is enough: run looks at every shard
			}
		}()
		// A Lease another holder stopped renewing, due to expire within a
		// retry period: the first try waits for its expiry (or its
		// release), instead of failing now and trying again up to 2.2
		// retry periods later (client-go's jittered retry).
		if d := s.expiresIn(i); d > 0 && d <= s.m.o.retryPeriod {
			t := time.NewTimer(d + time.Millisecond)
			select {
			case <-rctx.Done():
			case <-t.C:
			case <-e.released: // the first try sees the release
			}
			t.Stop()
		}
		for rctx.Err() == nil {
			again, err := e.contend(rctx, shardWork)
			if err != nil {
				r.err = fmt.Errorf("shard %d: %w", i, err)
				return
			}
			if !again && rctx.Err() == nil {
				r.err = fmt.Errorf("shard %d: %w", i, errShardWorkReturned)
				return
			}
		}
	}()
	return r
}

// errShardWorkReturned: a shard's work returned while its context was not
// cancelled. Sharded, the work runs once per shard for as long as the shard
// is held, so returning on its own ends Run.
var errShardWorkReturned = errors.New("the work returned on its own; sharded, it must run until its context is cancelled")

// renewMember keeps this replica's member Lease renewed every retry period
// until ctx is cancelled.
func (s *sharder) renewMember(ctx context.Context) {
	t := time.NewTicker(s.m.o.retryPeriod)
	defer t.Stop()
	failing := false
	for {
		err := s.writeMember(ctx)
		switch {
		case err != nil && !failing && ctx.Err() == nil:
			s.m.log.Warn("could not renew the member Lease; the other replicas stop counting this one after the lease duration", "lease", s.memberName, "err", err)
		case err == nil && failing:
			s.m.log.Info("member Lease renewed again", "lease", s.memberName)
		}
		failing = err != nil
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sharder) writeMember(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.m.requestTimeout())
	defer cancel()
	leases := s.m.cs.CoordinationV1().Leases(s.m.namespace)
	now := metav1.NowMicro()
	secs := int32(s.m.o.leaseDuration / time.Second)
	l, err := leases.Get(ctx, s.memberName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: s.memberName, Labels: map[string]string{shardGroupLabel: s.m.leaseName, shardRoleLabel: "member"}},
			Spec:       coordinationv1.LeaseSpec{HolderIdentity: &s.m.identity, LeaseDurationSeconds: &secs, AcquireTime: &now, RenewTime: &now},
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &s.m.identity, &secs, &now
	_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
	return err
}

// deleteMember deletes this replica's member Lease, so that the others
// reassign its shards at once instead of after the lease duration.
func (s *sharder) deleteMember() {
	ctx, cancel := context.WithTimeout(context.Background(), s.m.requestTimeout())
	defer cancel()
	err := s.m.cs.CoordinationV1().Leases(s.m.namespace).Delete(ctx, s.memberName, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		s.m.log.Warn("could not delete the member Lease; the others reassign its shards after the lease duration", "lease", s.memberName, "err", err)
	}
}

// held returns the shards whose work runs here under a Lease renewed within
// the renew deadline.
func (s *sharder) held() []int {
	var out []int
	for i, e := range s.electors {
		if e.leading() {
			out = append(out, i)
		}
	}
	return out
}

// ShardStatus is what /shards answers.
type ShardStatus struct {
	Identity string `json:"identity"`
	Of       int    `json:"of"`
	Held     []int  `json:"held"`     // shards whose work runs here
	Assigned []int  `json:"assigned"` // shards the assignment gives this replica
	Members  int    `json:"members"`  // live members, this one included
	// Informers says, per sharded informer (a Loop's primary), who filters
	// by shard ("server": the API server, shardSelector; "client": this
	// replica) and how many objects its shards' caches hold here.
	Informers []ShardedInformer `json:"informers"`
}

// ShardedInformer is one informer made per shard, in ShardStatus.
type ShardedInformer struct {
	Resource string `json:"resource"` // resource.group, as kubectl names it
	Filter   string `json:"filter"`   // server or client
	Cached   int    `json:"cached"`
}

// Shards returns this replica's shards; Of is 0 when not sharded.
func (m *Manager) Shards() ShardStatus {
	st := ShardStatus{Identity: m.identity, Held: []int{}, Assigned: []int{}}
	s := m.shards
	if s == nil {
		return st
	}
	st.Of = s.count
	st.Held = append(st.Held, s.held()...)
	s.mu.Lock()
	owners := s.owners
	s.mu.Unlock()
	st.Assigned = append(st.Assigned, s.mine(owners)...)
	st.Members = len(s.live(time.Now()))
	m.mu.Lock()
	entries := slices.Clone(m.informers)
	m.mu.Unlock()
	st.Informers = []ShardedInformer{}
	for _, e := range entries {
		subs, sharded := e.shardInformers()
		if !sharded {
			continue
		}
		si := ShardedInformer{Resource: e.what, Filter: "client"}
		e.mu.Lock()
		if e.server {
			si.Filter = "server"
		}
		e.mu.Unlock()
		for _, sub := range subs {
			si.Cached += len(sub.GetStore().ListKeys())
		}
		st.Informers = append(st.Informers, si)
	}
	return st
}

// This part owns the informers per shard: a Loop's primary informer, when
// the Manager made it (NewInformer, DynamicInformer, MetadataInformer) and
// it is no Loop's owned informer, is made again for each shard held here,
// each caching that shard only; the Manager-wide one is not started.
// Owned objects are routed by their owner's uid, which the server cannot
// select by: their informers stay whole.

// entryOf is what the Manager's informers (Informer[T]) have.
type entryOf interface{ informerEntry() *informerEntry }

// prepare marks the informers to shard and asks the API server, once per
// informer, whether it filters by shard: a list with a shardSelector that
// comes back with metadata.shardInfo was filtered by the server
// (ShardedListAndWatch on); without it the server ignored the selector, and
// each shard's informer filters by the hash itself. Call it before the
// Manager's informers start.
func (s *sharder) prepare(ctx context.Context) {
	s.m.mu.Lock()
	owned := map[*informerEntry]bool{}
	var primaries []*informerEntry
	for _, l := range s.m.loops {
		if e, ok := l.primary.(entryOf); ok && e.informerEntry() != nil {
			primaries = append(primaries, e.informerEntry())
		}
		for _, o := range l.owned {
			if e, ok := o.informer.(entryOf); ok {
				owned[e.informerEntry()] = true
			}
		}
	}
	s.m.mu.Unlock()
	for _, e := range primaries {
		e.mu.Lock()
		already := e.sharded
		e.mu.Unlock()
		if owned[e] || already {
			continue
		}
		server := !s.m.o.clientShardFilter && serverShards(ctx, e)
		e.mu.Lock()
		e.sharded, e.server, e.subs = true, server, map[int]cache.SharedIndexInformer{}
		e.mu.Unlock()
		switch {
		case server:
			s.m.log.Info("sharded list and watch: the API server filters each shard's informer (shardSelector)", "resource", e.what)
		case s.m.o.clientShardFilter:
			s.m.log.Info("sharded list and watch: each shard's informer receives every object and keeps its shard's (WithClientShardFilter)", "resource", e.what)
		default:
			s.m.log.Info("sharded list and watch: not served (the ShardedListAndWatch feature gate is off, or an older server): each shard's informer receives every object and keeps its shard's", "resource", e.what)
		}
	}
}

// serverShards asks for one object of half the hash range, and says
// whether the answer says the server applied the shardSelector.
func serverShards(ctx context.Context, e *informerEntry) bool {
	ctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	obj, err := e.lw.ListWithContextFunc(ctx, metav1.ListOptions{Limit: 1, ShardSelector: Shard{Index: 0, Count: 2}.Selector()})
	if err != nil {
		return false // the informers' own lists will say what is wrong
	}
	if u, ok := obj.(*unstructured.UnstructuredList); ok {
		_, found, _ := unstructured.NestedMap(u.Object, "metadata", "shardInfo")
		return found
	}
	if a, ok := obj.(metav1.ListMetaAccessor); ok {
		if lm, ok := a.GetListMeta().(*metav1.ListMeta); ok {
			return lm.ShardInfo != nil
		}
	}
	return false
}

// startShard makes and starts each sharded informer for shard i, until ctx
// ends; it returns their HasSynced, and a func that waits until they
// stopped once ctx ended.
func (s *sharder) startShard(ctx context.Context, i int) ([]cache.InformerSynced, func()) {
	var synced []cache.InformerSynced
	var running sync.WaitGroup
	sh := Shard{Index: i, Count: s.count}
	s.m.mu.Lock()
	entries, loops := slices.Clone(s.m.informers), slices.Clone(s.m.loops)
	s.m.mu.Unlock()
	for _, e := range entries {
		e.mu.Lock()
		sharded, server := e.sharded, e.server
		e.mu.Unlock()
		if !sharded {
			continue
		}
		inf, err := e.newInformer(cache.ToListWatcherWithWatchListSemantics(shardListWatch(e.lw, sh, server), e.semantics))
		if err != nil {
			s.m.log.Error("cannot make the shard's informer", "resource", e.what, "shard", i, "err", err)
			continue
		}
		// The handlers of the Loops whose primary this is, before it
		// starts: added later, it would replay its cache to them.
		for _, l := range loops {
			if eo, ok := l.primary.(entryOf); ok && eo.informerEntry() == e {
				if err := l.addHandlers(inf); err != nil {
					s.m.log.Error("cannot add a loop's handlers to the shard's informer", "resource", e.what, "shard", i, "err", err)
				}
			}
		}
		e.mu.Lock()
		e.subs[i] = inf
		e.mu.Unlock()
		running.Go(func() { inf.RunWithContext(ctx) })
		synced = append(synced, inf.HasSynced)
		context.AfterFunc(ctx, func() {
			e.mu.Lock()
			if e.subs[i] == inf {
				delete(e.subs, i)
			}
			e.mu.Unlock()
		})
	}
	return synced, running.Wait
}

// shardListWatch is lw for shard sh: with the server's shardSelector, or
// (server false) keeping only sh's objects of what comes back.
func shardListWatch(lw *cache.ListWatch, sh Shard, server bool) *cache.ListWatch {
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			o.ShardSelector = sh.Selector()
			obj, err := lw.ListWithContextFunc(ctx, o)
			if err != nil || server {
				return obj, err
			}
			items, err := meta.ExtractList(obj)
			if err != nil {
				return nil, err
			}
			kept := items[:0]
			for _, it := range items {
				if sh.containsObject(it) {
					kept = append(kept, it)
				}
			}
			return obj, meta.SetList(obj, kept)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			o.ShardSelector = sh.Selector()
			w, err := lw.WatchFuncWithContext(ctx, o)
			if err != nil || server {
				return w, err
			}
			return watch.Filter(w, func(ev watch.Event) (watch.Event, bool) {
				switch ev.Type {
				case watch.Added, watch.Modified, watch.Deleted:
					return ev, sh.containsObject(ev.Object)
				}
				return ev, true // bookmarks and errors
			}), nil
		},
	}
}

// informerFor returns the informer of shard sh for primary, nil if primary
// is not made per shard here (or s is nil).
func (s *sharder) informerFor(primary cache.SharedInformer, sh Shard) cache.SharedIndexInformer {
	if s == nil {
		return nil
	}
	eo, ok := primary.(entryOf)
	if !ok || eo.informerEntry() == nil {
		return nil
	}
	e := eo.informerEntry()
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.sharded {
		return nil
	}
	return e.subs[sh.Index]
}
