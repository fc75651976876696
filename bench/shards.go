// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"

	"github.com/incluster/incluster/cmd/example-controller/app"
	"github.com/incluster/incluster/pkg/controller"
)

// shardCount is deploy/controller-sharded's --shards.
const shardCount = 16

// shardsBench measures the sharded example controller (--shards=16, as
// deploy/controller-sharded runs it) with n labelled ConfigMaps of 1 KiB,
// already hashed: the peak RSS of each replica with 1, 2 and 4 replicas,
// with the API server filtering each shard's watch (ShardedListAndWatch, on
// in the local cluster) and with each replica filtering on its side
// (--shard-filter=client: every replica receives every object); and the
// seconds for the shards of a replica stopped with SIGTERM to be held
// again by the other of 2 (the 2 replicas' peaks are read before that
// stop, which gives the survivor every shard). The replicas run as if in pods on this host
// (hack/as-pod.sh, under GNU time for the peak RSS), each with its own
// probe port to read /shards. The start-up size is one replica's peak in an
// empty namespace. Goal (issue 27): with the server filtering, each of R
// replicas peaks at most 15% above start-up + (one replica's peak -
// start-up) / R.
func shardsBench(ctx context.Context, cs kubernetes.Interface, pod *fakePod, n int, add func(what, value, target string, ok *bool)) error {
	ex, err := buildPkg("github.com/incluster/incluster/cmd/example-controller", "example-controller")
	if err != nil {
		return err
	}
	defer os.RemoveAll(filepath.Dir(ex))
	full, err := shardNamespace(ctx, cs, pod, n)
	if full != nil {
		defer full.remove(cs)
	}
	if err != nil {
		return err
	}
	empty, err := shardNamespace(ctx, cs, pod, 0)
	if empty != nil {
		defer empty.remove(cs)
	}
	if err != nil {
		return err
	}
	startRSS, _, err := empty.run(ctx, ex, "auto", 1, 0, false)
	if err != nil {
		return fmt.Errorf("shards, start-up: %w", err)
	}
	start := startRSS[0]
	add(fmt.Sprintf("sharded example controller (%d shards): start-up peak RSS, 1 replica, no ConfigMap", shardCount), mib(start), "", nil)
	for _, filter := range []string{"auto", "client"} {
		label := map[string]string{"auto": "the API server filters (shardSelector)", "client": "each replica filters (--shard-filter=client)"}[filter]
		var single int64
		for _, r := range []int{1, 2, 4} {
			rss, moved, err := full.run(ctx, ex, filter, r, n, r == 2)
			if err != nil {
				return fmt.Errorf("shards, %d replicas, --shard-filter=%s: %w", r, filter, err)
			}
			peak := slices.Max(rss)
			each := make([]string, len(rss))
			for i, v := range rss {
				each[i] = fmt.Sprintf("%.1f", float64(v)/(1<<20))
			}
			what := fmt.Sprintf("sharded example controller, %d ConfigMaps, %d replicas, %s: peak RSS per replica", n, r, label)
			if r == 1 {
				single = peak
				add(what, mib(peak), "", nil)
			} else {
				want := float64(start) + float64(single-start)/float64(r)
				var ok *bool
				target := ""
				if filter == "auto" {
					ok = new(float64(peak) <= 1.15*want)
					target = fmt.Sprintf("≤ 1.15 x (start-up + (1 replica - start-up) / %d) = %.1f MiB", r, 1.15*want/(1<<20))
				}
				add(what, fmt.Sprintf("max %s (each: %s MiB; start-up + 1/%d of the cache: %.1f MiB)", mib(peak), strings.Join(each, ", "), r, want/(1<<20)), target, ok)
			}
			if moved > 0 {
				add(fmt.Sprintf("sharded example controller, %d ConfigMaps, 2 replicas, %s: one stopped with SIGTERM, all its shards held by the other after", n, label),
					fmt.Sprintf("%.2f s", moved.Seconds()), "", nil)
			}
		}
	}
	return nil
}

// shardNS is a namespace with the sharded example's RBAC, n ConfigMaps and
// its service-account folder.
type shardNS struct {
	pod *fakePod
	n   int
}

func shardNamespace(ctx context.Context, cs kubernetes.Interface, pod *fakePod, n int) (*shardNS, error) {
	ns := "bench-shards-" + rand.String(5)
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	s := &shardNS{pod: &fakePod{ns: ns, ca: pod.ca, host: pod.host, port: pod.port}, n: n}
	// deploy/controller's ServiceAccount and RoleBinding, and
	// deploy/controller-sharded's Role (its first document: the ClusterRole
	// after it is for the metrics filter, off here).
	role, err := os.ReadFile(filepath.Join("..", "deploy", "controller-sharded", "role.yaml"))
	if err != nil {
		return s, err
	}
	for _, f := range []string{filepath.Join("..", "deploy", "controller", "serviceaccount.yaml"), filepath.Join("..", "deploy", "controller", "rolebinding.yaml")} {
		if out, err := exec.CommandContext(ctx, *kubectlBin, "apply", "-n", ns, "-f", f).CombinedOutput(); err != nil {
			return s, fmt.Errorf("kubectl apply %s: %v\n%s", f, err, out)
		}
	}
	cmd := exec.CommandContext(ctx, *kubectlBin, "apply", "-n", ns, "-f", "-")
	cmd.Stdin = strings.NewReader(strings.Split(string(role), "\n---")[0])
	if out, err := cmd.CombinedOutput(); err != nil {
		return s, fmt.Errorf("kubectl apply the sharded Role: %v\n%s", err, out)
	}
	if n > 0 {
		start := time.Now()
		if err := fillHashedConfigMaps(ctx, cs, ns, n, map[string]string{app.SelectLabel: "true"}); err != nil {
			return s, err
		}
		fmt.Fprintf(os.Stderr, "bench: shards: %d ConfigMaps made in %s in %.0f s\n", n, ns, time.Since(start).Seconds())
	}
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "incluster-example-controller", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		return s, err
	}
	s.pod.token = tr.Status.Token
	return s, s.pod.writeDir()
}

func (s *shardNS) remove(cs kubernetes.Interface) {
	if s.pod.dir != "" {
		_ = os.RemoveAll(s.pod.dir)
	}
	deleteNamespace(cs, s.pod.ns)
}

// shardReplica is one replica process.
type shardReplica struct {
	cmd    *exec.Cmd
	out    bytes.Buffer
	probe  string
	exited chan error
}

// run starts replicas replicas of ex (a new Lease name per run), waits
// until they hold all shards between them and cache all s.n ConfigMaps once,
// lets them run 3 s more, and stops them with SIGTERM; it returns each one's
// peak RSS. With scaleDown, before that, it stops the last replica alone
// and returns how long the first took to hold every shard.
func (s *shardNS) run(ctx context.Context, ex, filter string, replicas, want int, scaleDown bool) (rss []int64, moved time.Duration, err error) {
	lease := fmt.Sprintf("bench-%s-%d-%s", filter, replicas, rand.String(4))
	var rs []*shardReplica
	stop := func(r *shardReplica) { stopProcess(r.cmd, r.exited) }
	defer func() {
		for _, r := range rs {
			if r.cmd.ProcessState == nil {
				stop(r)
			}
		}
	}()
	for i := range replicas {
		r := &shardReplica{probe: "127.0.0.1:" + strconv.Itoa(18400+i), exited: make(chan error, 1)}
		r.cmd = s.pod.command(s.pod.host, s.pod.port, []string{"/usr/bin/time", "-f", "incluster-bench-maxrss=%M", ex,
			"--lease-name=" + lease, "--probe-address=" + r.probe, "--metrics-bind-address=0", "--retry-period=1s",
			"--shards=" + strconv.Itoa(shardCount), "--shard-filter=" + filter})
		r.cmd.Env = append(r.cmd.Env, fmt.Sprintf("POD_NAME=%s-%d", lease, i))
		r.cmd.Stdout, r.cmd.Stderr = &r.out, &r.out
		if err := r.cmd.Start(); err != nil {
			return nil, 0, err
		}
		go func() { r.exited <- r.cmd.Wait() }()
		rs = append(rs, r)
	}
	if err := waitShards(ctx, rs, want, 5*time.Minute); err != nil {
		return nil, 0, err
	}
	time.Sleep(3 * time.Second)
	// With scaleDown, the survivors' peaks are read before it: after it one
	// holds every shard, which is the single replica's figure, not this one.
	before := map[*shardReplica]int64{}
	if scaleDown {
		for _, r := range rs[:len(rs)-1] {
			pid, ok := childPID(r.cmd.Process.Pid)
			hwm, err := vmHWM(pid)
			if !ok || err != nil {
				return nil, 0, fmt.Errorf("the peak RSS of replica %s before the scale-down: %v", r.probe, err)
			}
			before[r] = hwm
		}
		last := rs[len(rs)-1]
		t0 := time.Now()
		stop(last)
		if err := waitShards(ctx, rs[:len(rs)-1], want, 2*time.Minute); err != nil {
			return nil, 0, fmt.Errorf("after a SIGTERM: %w", err)
		}
		moved = time.Since(t0)
	}
	for _, r := range rs {
		if r.cmd.ProcessState == nil {
			stop(r)
		}
		m := rssLine.FindSubmatch(r.out.Bytes())
		if m == nil {
			return nil, 0, fmt.Errorf("no peak RSS from GNU time; output:\n%s", lastLinesOf(r.out.String(), 20))
		}
		kib, _ := strconv.ParseInt(string(m[1]), 10, 64)
		if hwm, ok := before[r]; ok {
			kib = hwm >> 10
		}
		rss = append(rss, kib<<10)
	}
	fmt.Fprintf(os.Stderr, "bench: shards: --shard-filter=%s, %d replicas, %d ConfigMaps: peak RSS %v bytes; moved %s\n", filter, replicas, want, rss, moved)
	return rss, moved, nil
}

// waitShards waits until rs hold every shard once between them and their
// sharded informers cache want objects in all.
func waitShards(ctx context.Context, rs []*shardReplica, want int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last []controller.ShardStatus
	for time.Now().Before(deadline) {
		last = last[:0]
		held, cached := map[int]int{}, 0
		for _, r := range rs {
			st, err := shardStatus(ctx, r.probe)
			if err != nil {
				break
			}
			last = append(last, st)
			for _, i := range st.Held {
				held[i]++
			}
			for _, inf := range st.Informers {
				cached += inf.Cached
			}
		}
		ok := len(last) == len(rs) && len(held) == shardCount && cached == want
		for _, c := range held {
			ok = ok && c == 1
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	var logs []string
	for _, r := range rs {
		logs = append(logs, lastLinesOf(r.out.String(), 10))
	}
	return fmt.Errorf("the replicas did not hold all %d shards and cache %d ConfigMaps within %s: %+v\nlogs:\n%s", shardCount, want, timeout, last, strings.Join(logs, "\n---\n"))
}

func shardStatus(ctx context.Context, probe string) (controller.ShardStatus, error) {
	var st controller.ShardStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+probe+"/shards", nil)
	if err != nil {
		return st, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(body, &st)
}

// childPID returns the first child of process pid (/proc's children list).
// stopProcess stops cmd with SIGTERM and waits until exited delivers its
// end, killing it after 30 s. Under GNU time, the controller (time's child)
// gets the SIGTERM: time would die of it and print nothing, and reports
// once its child exited.
func stopProcess(cmd *exec.Cmd, exited <-chan error) {
	if pid, ok := childPID(cmd.Process.Pid); ok {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	} else {
		_ = cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-exited
	}
}

func childPID(pid int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return 0, false
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, false
	}
	c, err := strconv.Atoi(f[0])
	return c, err == nil
}

// vmHWM is the peak RSS so far of process pid (VmHWM in /proc/PID/status:
// what GNU time's %M reports once it exited), in bytes.
func vmHWM(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kib, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kib << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}

func lastLinesOf(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
