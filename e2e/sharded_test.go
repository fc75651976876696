// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"sigs.k8s.io/yaml"

	"github.com/incluster/incluster/cmd/example-controller/app"
	"github.com/incluster/incluster/pkg/controller"
)

var shardedDeployDir = filepath.Join("..", "deploy", "controller-sharded")

// shardTimeline is what the test's watches saw: each shard Lease's holders
// and each hash write, with the time the watch delivered them.
type shardTimeline struct {
	mu      sync.Mutex
	holders map[int][]holderSeen // shard -> in order
	writes  []hashWrite
	uids    map[string]types.UID
}

type holderSeen struct {
	at     time.Time
	holder string
}

type hashWrite struct {
	at     time.Time
	name   string
	uid    types.UID
	writer string
}

// watchShards records the shard Leases' holders and the hash writes of
// ConfigMaps in ns until ctx ends.
func watchShards(t *testing.T, ctx context.Context, ns, lease string, count int) *shardTimeline {
	tl := &shardTimeline{holders: map[int][]holderSeen{}, uids: map[string]types.UID{}}
	lw, err := client.CoordinationV1().Leases(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "incluster.dev/shard-role=shard"})
	if err != nil {
		t.Fatalf("watching the shard Leases: %v", err)
	}
	cw, err := client.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{LabelSelector: hashLabel + "=true"})
	if err != nil {
		t.Fatalf("watching the ConfigMaps: %v", err)
	}
	go func() {
		defer lw.Stop()
		for ev := range lw.ResultChan() {
			l, ok := ev.Object.(*coordinationv1.Lease)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			var i int
			if _, err := fmt.Sscanf(strings.TrimPrefix(l.Name, lease+"-shard-"), "%d", &i); err != nil || i >= count {
				continue
			}
			h := ""
			if l.Spec.HolderIdentity != nil {
				h = *l.Spec.HolderIdentity
			}
			tl.mu.Lock()
			if hs := tl.holders[i]; len(hs) == 0 || hs[len(hs)-1].holder != h {
				tl.holders[i] = append(hs, holderSeen{time.Now(), h})
			}
			tl.mu.Unlock()
		}
	}()
	go func() {
		defer cw.Stop()
		last := map[string]string{}
		for ev := range cw.ResultChan() {
			cm, ok := ev.Object.(*corev1.ConfigMap)
			if !ok || ev.Type == watch.Deleted {
				continue
			}
			tl.mu.Lock()
			tl.uids[cm.Name] = cm.UID
			if h, w := cm.Annotations[hashAnnotation], cm.Annotations[writerAnnot]; h != "" && w != "" && last[cm.Name] != h+w {
				last[cm.Name] = h + w
				tl.writes = append(tl.writes, hashWrite{time.Now(), cm.Name, cm.UID, w})
			}
			tl.mu.Unlock()
		}
	}()
	return tl
}

// check fails t for each hash write by a replica that did not hold the
// object's shard then: the holder the Lease watch saw within slack of the
// write (the two watches are separate streams).
func (tl *shardTimeline) check(t *testing.T, count int, slack time.Duration) (writes int) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	bad := 0
	for _, w := range tl.writes {
		shard := -1
		for i := range count {
			if (controller.Shard{Index: i, Count: count}).Contains(w.uid) {
				shard = i
			}
		}
		ok := false
		hs := tl.holders[shard]
		for j, h := range hs {
			end := time.Now()
			if j+1 < len(hs) {
				end = hs[j+1].at
			}
			if h.holder == w.writer && !w.at.Before(h.at.Add(-slack)) && !w.at.After(end.Add(slack)) {
				ok = true
			}
		}
		if !ok {
			bad++
			if bad <= 5 {
				t.Errorf("ConfigMap %s (shard %d) hashed by %s at %s, which did not hold the shard then; holders: %v", w.name, shard, w.writer, w.at.Format("15:04:05.000"), hs)
			}
		}
	}
	if bad > 5 {
		t.Errorf("%d writes in all by a replica that did not hold the shard", bad)
	}
	return len(tl.writes)
}

// shardStatuses asks each Ready pod's /shards.
func (e *controllerEnv) shardStatuses(ctx context.Context) map[string]controller.ShardStatus {
	out := map[string]controller.ShardStatus{}
	for _, p := range e.pods(ctx) {
		if !podReady(&p) || p.DeletionTimestamp != nil || (e.stopped != "" && p.Spec.NodeName == e.stopped) {
			continue
		}
		code, body := e.probe(ctx, p.Name, "/shards")
		var st controller.ShardStatus
		if code == 200 && json.Unmarshal([]byte(body), &st) == nil {
			out[p.Name] = st
		}
	}
	return out
}

// waitBalanced waits until n Ready replicas hold every shard once between
// them, none more than ceil(count/n) + 1, and returns how long that took.
func (e *controllerEnv) waitBalanced(t *testing.T, n, count int, timeout time.Duration) (time.Duration, map[string][]int) {
	t.Helper()
	start := time.Now()
	limit := (count+n-1)/n + 1
	var held map[string][]int
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		sts := e.shardStatuses(ctx)
		held = map[string][]int{}
		seen := map[int]int{}
		for pod, st := range sts {
			held[pod] = st.Held
			for _, i := range st.Held {
				seen[i]++
			}
		}
		if len(sts) != n || len(seen) != count {
			return false, nil
		}
		for _, h := range held {
			if len(h) > limit || len(h) == 0 {
				return false, nil
			}
		}
		for _, c := range seen {
			if c != 1 {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("%d replicas: shards held %v after %s; want all %d once, 1 to %d on each", n, held, timeout, count, limit)
	}
	return time.Since(start), held
}

func (e *controllerEnv) scale(t *testing.T, n int) {
	t.Helper()
	_, err := client.AppsV1().Deployments(e.ns).Patch(t.Context(), e.deployment.Name, types.MergePatchType,
		[]byte(fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)), metav1.PatchOptions{})
	if err != nil {
		t.Fatalf("scaling to %d: %v", n, err)
	}
}

// touchAll changes the data of the ConfigMaps and waits until each carries
// the hash of its new data.
func (e *controllerEnv) touchAll(t *testing.T, names []string, value string, timeout time.Duration) time.Duration {
	t.Helper()
	ctx := t.Context()
	start := time.Now()
	patch := []byte(fmt.Sprintf(`{"data":{"v":%q}}`, value))
	for _, n := range names {
		if _, err := client.CoreV1().ConfigMaps(e.ns).Patch(ctx, n, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatalf("changing %s: %v", n, err)
		}
	}
	e.waitAllHashed(t, timeout)
	return time.Since(start)
}

// waitAllHashed waits until every labelled ConfigMap carries the hash of its
// data.
func (e *controllerEnv) waitAllHashed(t *testing.T, timeout time.Duration) {
	t.Helper()
	var left []string
	err := wait.PollUntilContextTimeout(t.Context(), 250*time.Millisecond, timeout, true, func(ctx context.Context) (bool, error) {
		l, err := client.CoreV1().ConfigMaps(e.ns).List(ctx, metav1.ListOptions{LabelSelector: hashLabel + "=true"})
		if err != nil {
			return false, nil
		}
		left = left[:0]
		for i := range l.Items {
			if l.Items[i].Annotations[hashAnnotation] != app.ConfigHash(&l.Items[i]) {
				left = append(left, l.Items[i].Name)
			}
		}
		return len(left) == 0, nil
	})
	if err != nil {
		sort.Strings(left)
		t.Fatalf("%d ConfigMaps without the hash of their data after %s, e.g. %v", len(left), timeout, left[:min(5, len(left))])
	}
}

// deploySharded deploys deploy/controller-sharded (deploy/controller with
// its Role and its Deployment patch) in a new namespace, with extraArgs
// after the patch's arguments.
func deploySharded(t *testing.T, name string, extraArgs ...string) *controllerEnv {
	t.Helper()
	var patch appsv1.Deployment
	var role rbacv1.Role
	if err := yamlUnmarshal(filepath.Join(shardedDeployDir, "deployment-patch.yaml"), &patch); err != nil {
		t.Fatal(err)
	}
	if err := yamlFirstDoc(filepath.Join(shardedDeployDir, "role.yaml"), &role); err != nil {
		t.Fatal(err)
	}
	return deployController(t, name, func(e *controllerEnv) {
		e.role.Rules = role.Rules
		e.deployment.Spec.Replicas = patch.Spec.Replicas
		spec := &e.deployment.Spec.Template.Spec
		spec.TopologySpreadConstraints = patch.Spec.Template.Spec.TopologySpreadConstraints
		spec.Containers[0].Args = append(patch.Spec.Template.Spec.Containers[0].Args, extraArgs...)
	})
}

// shardedStart is deploy/controller-sharded started by startSharded.
type shardedStart struct {
	e        *controllerEnv
	tl       *shardTimeline // its shard Leases' holders and hash writes, watched from before the start
	names    []string       // the labelled ConfigMaps
	replicas int
	pods     []corev1.Pod     // the Ready replicas
	balanced time.Duration    // from all hashed to the shards balanced
	held     map[string][]int // pod -> shards held, once balanced
}

// startSharded deploys deploy/controller-sharded (deploySharded, with
// extraArgs) and objects labelled ConfigMaps "name-NNN", watches its shards
// and writes, and waits until its replicas are Ready, every ConfigMap is
// hashed and the count shards are balanced.
func startSharded(t *testing.T, name string, count, objects int, extraArgs ...string) shardedStart {
	t.Helper()
	st := shardedStart{e: deploySharded(t, name, extraArgs...)}
	e := st.e
	st.tl = watchShards(t, t.Context(), e.ns, e.lease, count)
	st.names = e.createLabelled(t, name, objects)
	st.replicas = int(*e.deployment.Spec.Replicas)
	st.pods = e.waitReady(st.replicas, 2*time.Minute)
	e.waitAllHashed(t, 2*time.Minute)
	st.balanced, st.held = e.waitBalanced(t, st.replicas, count, 60*time.Second)
	return st
}

// createLabelled creates n labelled ConfigMaps "prefix-NNN" and returns
// their names.
func (e *controllerEnv) createLabelled(t *testing.T, prefix string, n int) []string {
	t.Helper()
	ctx := t.Context()
	var names []string
	for i := range n {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		names = append(names, name)
		create(t, ctx, func() error {
			_, err := client.CoreV1().ConfigMaps(e.ns).Create(ctx, &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{hashLabel: "true"}},
				Data:       map[string]string{"v": "0"},
			}, metav1.CreateOptions{})
			return err
		})
	}
	return names
}

// TestShardedController runs deploy/controller-sharded (the example
// controller, 16 shards) with 300 labelled ConfigMaps: with 3 replicas every
// shard is held once and every ConfigMap hashed; scaled to 5, then to 2, the
// shards rebalance (none above ceil(16/N) + 1) and every change is hashed.
// Then one replica is killed: its shards are taken after their Leases
// expire. Throughout, a watch of the shard Leases and one of the ConfigMaps
// check that each hash was written by the replica holding the object's
// shard.
func TestShardedController(t *testing.T) {
	const count, objects = 16, 300
	st := startSharded(t, "sharded", count, objects)
	e, tl, names, replicas, d, held := st.e, st.tl, st.names, st.replicas, st.balanced, st.held
	ctx := t.Context()
	t.Logf("%d replicas: all %d ConfigMaps hashed; shards balanced %.1f s later: %v", replicas, objects, d.Seconds(), held)

	// Each replica caches its shards' ConfigMaps only, asked of the API
	// server by shard (both clusters turn ShardedListAndWatch on): the
	// caches hold each object once between them, every replica says the
	// server filters, and the API server counts a sharded watch per shard.
	cached := 0
	for pod, st := range e.shardStatuses(ctx) {
		if len(st.Informers) != 1 || st.Informers[0].Filter != "server" {
			t.Errorf("%s: sharded informers %+v; want the ConfigMaps', filtered by the API server", pod, st.Informers)
			continue
		}
		cached += st.Informers[0].Cached
		t.Logf("%s: shards %v, %d ConfigMaps cached (of %d)", pod, st.Held, st.Informers[0].Cached, objects)
	}
	if cached != objects {
		t.Errorf("the replicas cache %d ConfigMaps between them; want each of the %d once", cached, objects)
	}
	// The API server's own count of watch events it filtered out by shard
	// selector: each change below reaches the one shard's watches and is
	// filtered out of the others'.
	filtered0, err := apiserverGauge(ctx, "apiserver_watch_filtered_events_total", `resource="configmaps"`)
	if err != nil {
		filtered0 = 0 // no series yet: nothing filtered so far
	}
	if n, err := apiserverGauge(ctx, "apiserver_watch_shards_total", `resource="configmaps"`); err == nil {
		t.Logf("the API server's apiserver_watch_shards_total{resource=configmaps} reads %v (not checked: it has read -1 with 16 sharded watches open)", n)
	}

	for i, n := range []int{5, 2} {
		e.scale(t, n)
		d, held := e.waitBalanced(t, n, count, 90*time.Second)
		took := e.touchAll(t, names, fmt.Sprint(i+1), 2*time.Minute)
		t.Logf("scaled to %d: shards balanced in %.1f s: %v; %d changes hashed in %.1f s", n, d.Seconds(), held, objects, took.Seconds())
		if i == 0 {
			filtered, err := apiserverGauge(ctx, "apiserver_watch_filtered_events_total", `resource="configmaps"`)
			t.Logf("the API server filtered %v watch events of configmaps out by shard selector (%v before the %d changes)", filtered, filtered0, objects)
			if err != nil || filtered-filtered0 < objects {
				t.Errorf("apiserver_watch_filtered_events_total{resource=configmaps} went from %v to %v (%v) over %d changes: want each change filtered out of another shard's watch", filtered0, filtered, err, objects)
			}
		}
	}

	// A replica SIGKILLed (nothing given back): its shards are taken once
	// their Leases expire and its member Lease is seen no more, lease
	// duration after its last renewal; its container restarts meanwhile and
	// joins again under a new identity.
	kill := os.Getenv("E2E_KILL_CONTAINER")
	if kill == "" {
		t.Fatal("E2E_KILL_CONTAINER is not set (hack/e2e.sh and hack/kind.sh set it)")
	}
	victim := ""
	for pod, st := range e.shardStatuses(ctx) {
		if len(st.Held) > 0 {
			victim = pod
		}
	}
	p, err := client.CoreV1().Pods(e.ns).Get(ctx, victim, metav1.GetOptions{})
	if err != nil || len(p.Status.ContainerStatuses) == 0 {
		t.Fatalf("pod %s: %v", victim, err)
	}
	killed := time.Now()
	if out, err := exec.Command("/bin/sh", "-c", kill+" "+p.Status.ContainerStatuses[0].ContainerID).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", kill, err, out)
	}
	time.Sleep(time.Second) // the kubelet notices; the pod is not Ready until it restarted
	e.waitReady(2, 2*time.Minute)
	_, held = e.waitBalanced(t, 2, count, 90*time.Second)
	d = time.Since(killed)
	took := e.touchAll(t, names, "after-kill", 2*time.Minute)
	// The dead member is seen no more a lease duration after its last
	// renewal; then its shards are assigned to the live ones, whose new
	// electors count the shards' Leases from when the watch saw them renewed
	// (not from their own first look: that would be twice the lease
	// duration). So the lease duration, + the retries' jitter, + two retry
	// periods for the restarted replica to settle its view of the members
	// before it takes shards, + 3 s for the restart and the probes' polling.
	retry, err := time.ParseDuration(flagValue(e, "--retry-period", "2s"))
	if err != nil {
		t.Fatal(err)
	}
	bound := leaseBound(e, &coordinationv1.Lease{}) + 2*retry + 3*time.Second
	t.Logf("SIGKILL of %s: every shard held again, balanced, %.1f s after the kill (bound %s): %v; %d changes hashed in %.1f s", victim, d.Seconds(), bound, held, objects, took.Seconds())
	if d > bound {
		t.Errorf("the killed replica's shards were held again %.1f s after the kill; want within %s", d.Seconds(), bound)
	}

	time.Sleep(time.Second) // the last writes' watch events
	writes := tl.check(t, count, 2*time.Second)
	t.Logf("%d hash writes watched, each by the holder of its object's shard", writes)

	// The API server restarted under the replicas (an outage shorter than
	// the renew deadline): no shard changes owner, none is acquired again,
	// and the work goes on.
	restart := os.Getenv("E2E_RESTART_APISERVER")
	if restart == "" {
		t.Fatal("E2E_RESTART_APISERVER is not set (hack/e2e.sh and hack/kind.sh set it)")
	}
	shardLeases := func() map[string]string {
		l, err := client.CoordinationV1().Leases(e.ns).List(ctx, metav1.ListOptions{LabelSelector: "incluster.dev/shard-role=shard"})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, x := range l.Items {
			out[x.Name] = fmt.Sprintf("%s (transitions %d, acquired %s)", leaseHolder(&x), leaseTransitions(&x), leaseAcquired(&x).UTC().Format(time.RFC3339Nano))
		}
		return out
	}
	before := shardLeases()
	stopped := time.Now()
	if out, err := exec.Command("/bin/sh", "-c", restart).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", restart, err, out)
	}
	away := time.Since(stopped)
	took = e.touchAll(t, names, "after-restart", 2*time.Minute)
	after := shardLeases()
	changed := 0
	for name, b := range before {
		if after[name] != b {
			changed++
			t.Errorf("%s: %s before the API server restart, %s after", name, b, after[name])
		}
	}
	t.Logf("API server restarted (away at most %.1f s): %d of %d shard Leases changed; %d changes hashed in %.1f s after", away.Seconds(), changed, len(before), objects, took.Seconds())
	if len(before) != count {
		t.Errorf("%d shard Leases, want %d", len(before), count)
	}
	for _, p := range e.pods(ctx) {
		if r := restarts(&p); r > 0 && p.Name != victim {
			t.Errorf("pod %s restarted %d times", p.Name, r)
		}
	}
}

// apiserverGauge returns the sum of the API server's series name whose
// labels contain labels, from its /metrics.
func apiserverGauge(ctx context.Context, name, labels string) (float64, error) {
	raw, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return 0, err
	}
	sum, found := 0.0, false
	for _, line := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(line, name+"{") || !strings.Contains(line, labels) {
			continue
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndex(line, " ")+1:], &v); err == nil {
			sum, found = sum+v, true
		}
	}
	if !found {
		return 0, fmt.Errorf("no series %s{%s} (is the ShardedListAndWatch feature gate on?)", name, labels)
	}
	return sum, nil
}

// TestShardedControllerClientFilter runs deploy/controller-sharded with
// --shard-filter=client: each replica receives every ConfigMap and keeps
// its shards' (the mode of an API server without ShardedListAndWatch). The
// same outcome: every ConfigMap hashed by its shard's holder, each cached
// once between the replicas, each replica saying it filters itself.
func TestShardedControllerClientFilter(t *testing.T) {
	const count, objects = 16, 100
	st := startSharded(t, "shardclient", count, objects, "--shard-filter=client")
	e, tl, replicas, held := st.e, st.tl, st.replicas, st.held
	ctx := t.Context()
	cached := 0
	for pod, st := range e.shardStatuses(ctx) {
		if len(st.Informers) != 1 || st.Informers[0].Filter != "client" {
			t.Errorf("%s: sharded informers %+v; want the ConfigMaps', filtered by the replica", pod, st.Informers)
			continue
		}
		cached += st.Informers[0].Cached
	}
	if cached != objects {
		t.Errorf("the replicas cache %d ConfigMaps between them; want each of the %d once", cached, objects)
	}
	time.Sleep(time.Second) // the last writes' watch events
	writes := tl.check(t, count, 2*time.Second)
	t.Logf("%d replicas filtering on their side: shards %v; %d ConfigMaps cached once between them; %d hash writes, each by its shard's holder", replicas, held, cached, writes)
}

// TestMultiNodeShardedNodeStop runs deploy/controller-sharded (3 replicas,
// 16 shards, spread over the nodes by its topologySpreadConstraints) with 300
// labelled ConfigMaps in a cluster of several nodes, and stops the worker
// node whose replicas hold the most shards (E2E_STOP_NODE: hack/kind.sh
// stop-node, a `docker stop` of the node's container, at once: a node that
// fails, nothing given back). Its shards are held again by the replicas of
// the other node within the lease duration + 2 retry periods (with the
// retries' jitter) of the stop, as the Lease watch sees; every ConfigMap
// changed while they moved is hashed after, each write by its shard's
// holder. It runs where a node can be stopped (make e2e-multinode; the
// single-node runs leave it out, hack/e2e.sh) and last there: the stopped
// node stays down until the cluster is deleted.
func TestMultiNodeShardedNodeStop(t *testing.T) {
	stop := os.Getenv("E2E_STOP_NODE")
	if stop == "" {
		t.Fatal("E2E_STOP_NODE is not set: this case needs a cluster of several nodes, one of which it stops (make e2e-multinode; hack/kind.sh sets it)")
	}
	const count, objects = 16, 300
	st := startSharded(t, "nodestop", count, objects)
	e, tl, names, replicas, pods, held := st.e, st.tl, st.names, st.replicas, st.pods, st.held
	ctx := t.Context()

	// The replicas are spread over the nodes.
	byNode := map[string][]string{}
	for _, p := range pods {
		byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p.Name)
	}
	if len(byNode) < 2 {
		t.Fatalf("the %d replicas run on %d node %v; deploy/controller-sharded's topologySpreadConstraints should spread them over the worker nodes", replicas, len(byNode), byNode)
	}
	victim, lost := "", []int(nil)
	for node, ps := range byNode {
		var shards []int
		for _, p := range ps {
			shards = append(shards, held[p]...)
		}
		if len(shards) > len(lost) {
			victim, lost = node, shards
		}
	}
	sort.Ints(lost)
	survivors := replicas - len(byNode[victim])
	t.Logf("replicas by node: %v; shards %v; stopping %s, whose replicas hold shards %v", byNode, held, victim, lost)

	e.stopped = victim
	out, err := exec.Command("/bin/sh", "-c", stop+" "+victim).CombinedOutput()
	stopped := time.Now()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", stop, victim, err, out)
	}
	t.Logf("%s", strings.TrimSpace(string(out)))
	// Every ConfigMap changes while its shard may be moving.
	patch := []byte(`{"data":{"v":"node-stopped"}}`)
	for _, n := range names {
		if _, err := client.CoreV1().ConfigMaps(e.ns).Patch(ctx, n, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatalf("changing %s: %v", n, err)
		}
	}

	// Each lost shard is held again by a replica of another node, as the
	// Lease watch sees.
	onVictim := map[string]bool{}
	for _, p := range byNode[victim] {
		onVictim[p] = true
	}
	podOf := func(identity string) string { return strings.SplitN(identity, "_", 2)[0] }
	var moved time.Duration
	var movedTo map[int]string
	err = wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 2*time.Minute, true, func(context.Context) (bool, error) {
		tl.mu.Lock()
		defer tl.mu.Unlock()
		moved, movedTo = 0, map[int]string{}
		for _, i := range lost {
			hs := tl.holders[i]
			last := hs[len(hs)-1]
			if last.holder == "" || onVictim[podOf(last.holder)] || last.at.Before(stopped) {
				return false, nil
			}
			moved, movedTo[i] = max(moved, last.at.Sub(stopped)), podOf(last.holder)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("the shards %v of the stopped node's replicas are not all held by others 2 minutes after the stop", lost)
	}
	l, err := client.CoordinationV1().Leases(e.ns).Get(ctx, fmt.Sprintf("%s-shard-%d", e.lease, lost[0]), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bound := leaseBound(e, l)
	t.Logf("node %s stopped: its shards %v held again by %v, the last %.1f s after the stop (bound: lease duration + 2 retry periods with jitter, %s)", victim, lost, movedTo, moved.Seconds(), bound)
	if moved > bound {
		t.Errorf("the stopped node's shards were held again %.1f s after the stop; want within %s", moved.Seconds(), bound)
	}
	_, held = e.waitBalanced(t, survivors, count, 60*time.Second)
	e.waitAllHashed(t, 2*time.Minute)
	t.Logf("%d replicas left: shards %v; every ConfigMap changed during the move is hashed", survivors, held)
	time.Sleep(time.Second) // the last writes' watch events
	writes := tl.check(t, count, 2*time.Second)
	t.Logf("%d hash writes watched, each by the holder of its object's shard", writes)
}

// yamlFirstDoc decodes the first YAML document of file into out.
func yamlFirstDoc(file string, out any) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal([]byte(strings.Split(string(data), "\n---")[0]), out); err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return nil
}
