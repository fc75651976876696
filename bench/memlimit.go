// SPDX-License-Identifier: Apache-2.0

package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/wait"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/incluster/incluster/cmd/example-controller/app"
)

// The bisection's range and step, in MiB: the smallest limit tried is
// memLoMiB+memStepMiB, the largest memHiMiB, tried first.
const (
	memLoMiB   = 16
	memHiMiB   = 512
	memStepMiB = 2
)

// A trial's bounds: Ready, and the sentinel hashed, within memTimeout of
// the Deployment's creation (the controllers without a readiness probe are
// Ready before they have synced: that time counts for all alike), the hash
// at least memHashTimeout after the sentinel's change, then memSteady
// without a restart.
const (
	memTimeout     = 3 * time.Minute
	memHashTimeout = time.Minute
	memSteady      = 20 * time.Second
)

// memSentinel is the ConfigMap each trial changes once its controller is
// Ready: its hash written is the controller at work.
const memSentinel = "bench-sentinel"

// memStack is one controller of the memory-limit measurement, deployed as
// real pods (one replica) into a namespace that already holds the
// ConfigMaps.
type memStack struct {
	label      string // in the table
	short      string // in the log lines
	deployment string
	selector   string // its pods' label selector
	lease      string
	// deploy applies the stack (RBAC and Deployment) with replicas pods and
	// the container's requests.memory and limits.memory set to limit.
	deploy func(ctx context.Context, ns string, limit *resource.Quantity, replicas int) error
}

// memLimits measures, as real pods in the local cluster, the smallest
// container memory limit (limits.memory = requests.memory, bisected in steps
// of 2 MiB within 16-512 MiB) at which a controller starts, syncs N labelled
// ConfigMaps of 1 KiB incompressible data, hashes a ConfigMap changed once
// it is Ready, and runs 20 s more without an OOMKill or a restart, for each
// N of -memlimit: the example controller (deploy/controller), the same
// controller on controller-runtime (cmd/crcontroller) and on plain
// client-go (cmd/cgcontroller), each with its defaults, one replica. The
// limit below which a controller is OOMKilled at start, while its informers
// decode their first list, is what users set and meet; the peak RSS of a
// process without a limit (cacheSync) does not tell it, since a runtime
// that adapts to its limit (the example's GOMEMLIMIT, from the container's)
// trades GC work for memory only under one. The ConfigMaps are made once
// per N, already hashed, so that a controller's only write is the
// sentinel's; the stacks take turns in that namespace.
func memLimits(ctx context.Context, cs kubernetes.Interface, counts []int, add func(what, value, target string, ok *bool)) error {
	crImage, err := benchImage("crcontroller")
	if err != nil {
		return err
	}
	cgImage, err := benchImage("cgcontroller")
	if err != nil {
		return err
	}
	defer deleteExampleClusterObjects(cs)
	stacks := []memStack{
		{label: "example controller (deploy/controller)", short: "example",
			deployment: "incluster-example-controller", selector: "app.kubernetes.io/name=incluster-example-controller", lease: app.DefaultLease,
			deploy: func(ctx context.Context, ns string, limit *resource.Quantity, replicas int) error {
				// In the kustomization, so that no pod ever runs with
				// deploy/controller's 128Mi.
				return applyExample(ctx, ns, fmt.Sprintf(`patches:
  - target: {kind: Deployment, name: incluster-example-controller}
    patch: |-
      - {op: replace, path: /spec/replicas, value: %[2]d}
      - {op: replace, path: /spec/template/spec/containers/0/resources/requests/memory, value: "%[1]s"}
      - {op: replace, path: /spec/template/spec/containers/0/resources/limits/memory, value: "%[1]s"}
`, limit, replicas))
			}},
		{label: "controller-runtime (cmd/crcontroller)", short: "controller-runtime",
			deployment: "crcontroller", selector: "app=crcontroller", lease: "crcontroller",
			deploy: func(ctx context.Context, ns string, limit *resource.Quantity, replicas int) error {
				return kubectlApply(ctx, benchManifests(ns, "crcontroller", crImage, replicas, limit))
			}},
		{label: "client-go (cmd/cgcontroller)", short: "client-go",
			deployment: "cgcontroller", selector: "app=cgcontroller", lease: "cgcontroller",
			deploy: func(ctx context.Context, ns string, limit *resource.Quantity, replicas int) error {
				return kubectlApply(ctx, benchManifests(ns, "cgcontroller", cgImage, replicas, limit))
			}},
	}
	for _, n := range counts {
		if *atLimitMiB > 0 {
			c, err := checkAt(ctx, cs, n, stacks[0], *atLimitMiB)
			if err != nil {
				return fmt.Errorf("memory limit, %d ConfigMaps: %w", n, err)
			}
			add(fmt.Sprintf("example at %d MiB, %d ConfigMaps, 2 replicas, every ConfigMap to hash, a handoff", *atLimitMiB, n), c.what,
				"all hashed, handoff ≤ 1.5 s, no OOMKill", new(c.ok))
			continue
		}
		res, check, err := memLimitsFor(ctx, cs, n, stacks)
		if err != nil {
			return fmt.Errorf("memory limit, %d ConfigMaps: %w", n, err)
		}
		what := fmt.Sprintf("smallest memory limit, %d ConfigMaps: ", n)
		for i, s := range stacks {
			add(what+s.label, res[i].String(), "", nil)
		}
		value, ok := memRatios(res[0], res[1:]...)
		add(what+"example vs controller-runtime, client-go", value, "≤ 0.6x, ≤ 0.6x", ok)
		for _, c := range check {
			add(what+"example at "+c.at+", 2 replicas, every ConfigMap to hash, a handoff", c.what,
				"all hashed, handoff ≤ 1.5 s, no OOMKill", new(c.ok))
		}
	}
	return nil
}

// memLimitsFor fills a new namespace with n hashed ConfigMaps, bisects each
// stack's limit in it, checks the first stack (the example) at its
// smallest limit (atLimit) and, while that fails, a step higher, up to the
// limit docs/controller.md advises (a quarter more), and deletes the
// namespace.
func memLimitsFor(ctx context.Context, cs kubernetes.Interface, n int, stacks []memStack) (res []memResult, check []atLimitCheck, err error) {
	ns := "bench-mem-" + rand.String(5)
	_, err = cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}, metav1.CreateOptions{})
	if err != nil {
		return nil, nil, err
	}
	defer deleteNamespace(cs, ns)
	start := time.Now()
	if err := fillHashedConfigMaps(ctx, cs, ns, n, map[string]string{app.SelectLabel: "true"}); err != nil {
		return nil, nil, err
	}
	fmt.Fprintf(os.Stderr, "bench: memlimit N=%d: %d ConfigMaps made in %s in %.0f s\n", n, n, ns, time.Since(start).Seconds())
	for _, s := range stacks {
		r, err := s.smallestLimit(ctx, cs, ns, n)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", s.label, err)
		}
		res = append(res, r)
	}
	if r := res[0]; !r.above && !r.atMost {
		// Up from the smallest limit a step at a time until it holds, at
		// most to a quarter more (the sizing docs/controller.md gives).
		advised := (r.mib*5/4 + memStepMiB - 1) / memStepMiB * memStepMiB
		for mib := r.mib; mib <= advised; mib += memStepMiB {
			c, err := stacks[0].atLimit(ctx, cs, ns, n, mib)
			if err != nil {
				return nil, nil, fmt.Errorf("%s at %d MiB: %w", stacks[0].label, mib, err)
			}
			c.at = fmt.Sprintf("%d MiB (its smallest limit + %d MiB)", mib, mib-r.mib)
			if mib == r.mib {
				c.at = "its smallest limit"
			}
			if check = append(check, c); c.ok {
				break
			}
		}
	}
	return res, check, nil
}

// checkAt runs only s.atLimit at mib MiB (bench -atlimit), in a namespace
// of its own with n ConfigMaps.
func checkAt(ctx context.Context, cs kubernetes.Interface, n int, s memStack, mib int) (atLimitCheck, error) {
	ns := "bench-mem-" + rand.String(5)
	_, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns,
		Labels: map[string]string{"pod-security.kubernetes.io/enforce": "restricted"}}}, metav1.CreateOptions{})
	if err != nil {
		return atLimitCheck{}, err
	}
	defer deleteNamespace(cs, ns)
	return s.atLimit(ctx, cs, ns, n, mib)
}

// atLimitCheck is atLimit's outcome: a line for the table, and whether
// every assertion held.
type atLimitCheck struct {
	at, what string
	ok       bool
}

// atLimit checks, at the smallest limit mib, what the e2e suite asserts of
// the example controller, with n objects: two replicas (each at the limit)
// hash every one of the n ConfigMaps (their hashes removed first, so that
// the leader writes n patches: more memory than the start alone), the
// leader's pod deleted hands over within 1.5 s (TestController/handoff's
// median bound), the new leader hashes a changed ConfigMap, and no pod is
// OOMKilled or restarted meanwhile (memSteady after the last step).
func (s memStack) atLimit(ctx context.Context, cs kubernetes.Interface, ns string, n, mib int) (check atLimitCheck, err error) {
	defer func() {
		if rerr := s.remove(cs, ns); rerr != nil && err == nil {
			err = rerr
		}
	}()
	labels := map[string]string{app.SelectLabel: "true"}
	if err := fillConfigMaps(ctx, cs, ns, n, labels); err != nil { // the same manager drops the hash it set
		return check, err
	}
	limit := resource.NewQuantity(int64(mib)<<20, resource.BinarySI)
	if err := s.deploy(ctx, ns, limit, 2); err != nil {
		return check, err
	}
	start := time.Now()
	fail := func(format string, a ...any) (atLimitCheck, error) {
		c := atLimitCheck{what: fmt.Sprintf("%d MiB: ", mib) + fmt.Sprintf(format, a...)}
		fmt.Fprintf(os.Stderr, "bench: memlimit N=%d %s at %d MiB, 2 replicas: FAIL: %s\n", n, s.short, mib, c.what)
		return c, nil
	}

	// 1. Every ConfigMap hashed.
	hashed := 0
	for {
		if why, err := s.failed(ctx, cs, ns); err != nil || why != "" {
			if err != nil {
				return check, err
			}
			return fail("%s while hashing, %.1f s after the start (%d of %d hashed before)", why, time.Since(start).Seconds(), hashed, n)
		}
		hashed, err = countHashed(ctx, cs, ns)
		if err != nil {
			return check, err
		}
		if hashed >= n {
			break
		}
		if time.Since(start) > 10*time.Minute {
			return fail("%d of %d ConfigMaps hashed after 10 minutes", hashed, n)
		}
		if err := sleep(ctx, 2*time.Second); err != nil {
			return check, err
		}
	}
	allHashed := time.Since(start)

	// 2. A handoff: the leader's pod deleted, the standby takes the Lease.
	lease, err := cs.CoordinationV1().Leases(ns).Get(ctx, s.lease, metav1.GetOptions{})
	if err != nil || lease.Spec.HolderIdentity == nil {
		return check, fmt.Errorf("the Lease %s/%s has no holder: %v", ns, s.lease, err)
	}
	old := *lease.Spec.HolderIdentity
	leader, _, _ := strings.Cut(old, "_") // POD_NAME_xxxxx
	deleted := time.Now()
	if err := cs.CoreV1().Pods(ns).Delete(ctx, leader, metav1.DeleteOptions{}); err != nil {
		return check, err
	}
	var handoff time.Duration
	for handoff == 0 {
		l, err := cs.CoordinationV1().Leases(ns).Get(ctx, s.lease, metav1.GetOptions{})
		if err != nil {
			return check, err
		}
		if h := l.Spec.HolderIdentity; h != nil && *h != "" && *h != old {
			handoff = time.Since(deleted)
		} else if time.Since(deleted) > time.Minute {
			return fail("no new Lease holder within a minute of deleting the leader's pod")
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return check, err
		}
	}

	// 3. The new leader works; the replacement pod starts at the limit too;
	// nothing dies.
	changed, want, err := changeSentinel(ctx, cs, ns)
	if err != nil {
		return check, err
	}
	if why, err := s.waitHash(ctx, cs, ns, want, changed.Add(30*time.Second)); err != nil || why != "" {
		if err != nil {
			return check, err
		}
		if why == errNoHash {
			return fail("the new leader did not hash a changed ConfigMap within 30 s")
		}
		return fail("%s after the handoff", why)
	}
	if why, err := s.steady(ctx, cs, ns); err != nil || why != "" {
		if err != nil {
			return check, err
		}
		return fail("%s after the handoff", why)
	}
	check = atLimitCheck{
		what: fmt.Sprintf("%d MiB: all %d hashed %.0f s after the start; handoff %.2f s; no OOMKill, no restart", mib, n, allHashed.Seconds(), handoff.Seconds()),
		ok:   handoff <= 1500*time.Millisecond,
	}
	fmt.Fprintf(os.Stderr, "bench: memlimit N=%d %s at %d MiB, 2 replicas: %s\n", n, s.short, mib, check.what)
	return check, nil
}

// countHashed counts the ConfigMaps of ns but the sentinel whose hash
// annotation is their data's, a page at a time.
func countHashed(ctx context.Context, cs kubernetes.Interface, ns string) (int, error) {
	n, cont := 0, ""
	for {
		list, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{LabelSelector: app.SelectLabel + "=true", Limit: 5000, Continue: cont})
		if err != nil {
			return 0, err
		}
		for i := range list.Items {
			cm := &list.Items[i]
			if cm.Name != memSentinel && cm.Annotations[app.HashAnnotation] == app.ConfigHash(cm) {
				n++
			}
		}
		if cont = list.Continue; cont == "" {
			return n, nil
		}
	}
}

// memResult is a bisection's outcome: the smallest passing limit, or a
// bound when even memHiMiB failed (above) or memLoMiB passed (atMost).
type memResult struct {
	mib           int
	above, atMost bool
	trials        int
}

func (r memResult) String() string {
	t := fmt.Sprintf("%d trials", r.trials)
	if r.trials == 1 {
		t = "1 trial"
	}
	switch {
	case r.above:
		return fmt.Sprintf("> %d MiB (%s)", r.mib, t)
	case r.atMost:
		return fmt.Sprintf("≤ %d MiB (%s)", r.mib, t)
	}
	return fmt.Sprintf("%d MiB (%s)", r.mib, t)
}

// bounds is the range of limits r allows, in MiB.
func (r memResult) bounds() (lo, hi float64) {
	switch {
	case r.above:
		return float64(r.mib), math.Inf(1)
	case r.atMost:
		return 0, float64(r.mib)
	}
	return float64(r.mib), float64(r.mib)
}

// memRatios gives ex's limit over each of others' ("0.55x, 0.60x"; a range
// where a result is a bound, "?" where both are) and whether each is at most
// 0.6x; nil when a bound leaves that undecided.
func memRatios(ex memResult, others ...memResult) (string, *bool) {
	var parts []string
	ok := true
	decided := true
	exLo, exHi := ex.bounds()
	for _, o := range others {
		oLo, oHi := o.bounds()
		lo, hi := exLo/oHi, exHi/oLo
		switch {
		case lo == hi:
			parts = append(parts, fmt.Sprintf("%.2fx", lo))
		case lo == 0 && math.IsInf(hi, 1):
			parts = append(parts, "?")
		case lo == 0:
			parts = append(parts, fmt.Sprintf("≤ %.2fx", hi))
		case math.IsInf(hi, 1):
			parts = append(parts, fmt.Sprintf("≥ %.2fx", lo))
		default:
			parts = append(parts, fmt.Sprintf("%.2f–%.2fx", lo, hi))
		}
		switch {
		case hi <= 0.6:
		case lo > 0.6:
			ok = false
		default:
			decided = false
		}
	}
	if !ok {
		return strings.Join(parts, ", "), new(false)
	}
	if !decided {
		return strings.Join(parts, ", "), nil
	}
	return strings.Join(parts, ", "), new(true)
}

// smallestLimit bisects the smallest limit, a multiple of memStepMiB in
// (memLoMiB, memHiMiB], at which a trial passes; memHiMiB is tried first,
// memLoMiB only when everything above it passed. It assumes a trial that
// passes at a limit passes at every larger one.
func (s memStack) smallestLimit(ctx context.Context, cs kubernetes.Interface, ns string, n int) (memResult, error) {
	trials := 0
	try := func(mib int) (bool, error) {
		trials++
		pass, detail, err := s.trial(ctx, cs, ns, mib)
		if err != nil {
			return false, fmt.Errorf("limit %d MiB: %w", mib, err)
		}
		verdict := map[bool]string{true: "pass", false: "fail"}[pass]
		fmt.Fprintf(os.Stderr, "bench: memlimit N=%d %s L=%dMi: %s (%s)\n", n, s.short, mib, verdict, detail)
		return pass, nil
	}
	lo, hi := memLoMiB, memHiMiB // lo fails (until tried), hi passes
	if pass, err := try(hi); err != nil || !pass {
		return memResult{mib: hi, above: true, trials: trials}, err
	}
	for hi-lo > memStepMiB {
		mid := lo + (hi-lo)/(2*memStepMiB)*memStepMiB
		pass, err := try(mid)
		if err != nil {
			return memResult{}, err
		}
		if pass {
			hi = mid
		} else {
			lo = mid
		}
	}
	if lo == memLoMiB {
		pass, err := try(lo)
		if err != nil {
			return memResult{}, err
		}
		if pass {
			return memResult{mib: lo, atMost: true, trials: trials}, nil
		}
	}
	return memResult{mib: hi, trials: trials}, nil
}

// trial deploys the stack with a limit of mib MiB and tells whether it
// passes: Ready, the sentinel changed and its hash written (memTimeout,
// memHashTimeout), then memSteady without a restart. A restart or a
// terminated container (OOMKilled or any other exit) fails at once. detail
// says how long each step took, or why it failed. The Deployment is deleted
// at the end, and its Lease, so that the next trial finds no pod and
// acquires the Lease at once. An error is a problem of the bench or the
// cluster (the image missing, the pod unschedulable), not a failed trial.
func (s memStack) trial(ctx context.Context, cs kubernetes.Interface, ns string, mib int) (pass bool, detail string, err error) {
	defer func() {
		if rerr := s.remove(cs, ns); rerr != nil && err == nil {
			err = rerr
		}
	}()
	limit := resource.NewQuantity(int64(mib)<<20, resource.BinarySI)
	if err := s.deploy(ctx, ns, limit, 1); err != nil {
		return false, "", err
	}
	start := time.Now()
	failed := func(why string) (bool, string, error) {
		return false, fmt.Sprintf("%s after %.1f s", why, time.Since(start).Seconds()), nil
	}

	// 1. Ready (the example: caches synced; the others have no readiness
	// probe: running).
	var unschedulable time.Time
	for {
		ready, why, msg, err := s.pods(ctx, cs, ns)
		if err != nil {
			return false, "", err
		}
		if why != "" {
			return failed(why)
		}
		if ready {
			break
		}
		switch {
		case msg == "":
			unschedulable = time.Time{}
		case unschedulable.IsZero():
			unschedulable = time.Now()
		case time.Since(unschedulable) > 20*time.Second:
			return false, "", fmt.Errorf("pod unschedulable for 20 s: %s", msg)
		}
		if time.Since(start) > memTimeout {
			return false, fmt.Sprintf("not Ready within %s", memTimeout), nil
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return false, "", err
		}
	}
	readyAt := time.Now()

	// 2. The sentinel changed, and hashed.
	written, want, err := changeSentinel(ctx, cs, ns)
	if err != nil {
		return false, "", err
	}
	deadline := start.Add(memTimeout)
	if d := written.Add(memHashTimeout); d.After(deadline) {
		deadline = d
	}
	if why, err := s.waitHash(ctx, cs, ns, want, deadline); err != nil || why != "" {
		if err != nil {
			return false, "", err
		}
		if why == errNoHash {
			return false, fmt.Sprintf("no hash on %s %.0f s after its change, %.0f s after the start", memSentinel,
				time.Since(written).Seconds(), time.Since(start).Seconds()), nil
		}
		return failed(why)
	}
	hashed := time.Now()

	// 3. Steady.
	if why, err := s.steady(ctx, cs, ns); err != nil || why != "" {
		if err != nil {
			return false, "", err
		}
		return failed(why + " (after the hash)")
	}
	return true, fmt.Sprintf("ready %.1f s, hash %.1f s", readyAt.Sub(start).Seconds(), hashed.Sub(written).Seconds()), nil
}

// changeSentinel gives the sentinel ConfigMap new data and returns when,
// and the hash its controller must write.
func changeSentinel(ctx context.Context, cs kubernetes.Interface, ns string) (time.Time, string, error) {
	data := map[string]string{"data": fmt.Sprintf("%s %d", rand.String(32), time.Now().UnixNano())}
	sentinel := corev1ac.ConfigMap(memSentinel, ns).WithLabels(map[string]string{app.SelectLabel: "true"}).WithData(data)
	if _, err := cs.CoreV1().ConfigMaps(ns).Apply(ctx, sentinel, metav1.ApplyOptions{FieldManager: "incluster-bench", Force: true}); err != nil {
		return time.Time{}, "", err
	}
	return time.Now(), app.ConfigHash(&corev1.ConfigMap{Data: data}), nil
}

// errNoHash is waitHash's why when the deadline passed without the hash.
const errNoHash = "no hash"

// waitHash waits until the sentinel carries the hash want: "" then; why a
// pod failed, if one did first; errNoHash after deadline.
func (s memStack) waitHash(ctx context.Context, cs kubernetes.Interface, ns, want string, deadline time.Time) (why string, err error) {
	for {
		cm, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, memSentinel, metav1.GetOptions{})
		if err != nil {
			return "", err
		}
		if cm.Annotations[app.HashAnnotation] == want {
			return "", nil
		}
		if why, err := s.failed(ctx, cs, ns); err != nil || why != "" {
			return why, err
		}
		if time.Now().After(deadline) {
			return errNoHash, nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return "", err
		}
	}
}

// steady watches the stack's pods for memSteady: "" if none failed, else
// why one did.
func (s memStack) steady(ctx context.Context, cs kubernetes.Interface, ns string) (why string, err error) {
	for start := time.Now(); time.Since(start) < memSteady; {
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return "", err
		}
		if why, err := s.failed(ctx, cs, ns); err != nil || why != "" {
			return why, err
		}
	}
	return "", nil
}

// failed says why one of the stack's pods failed, "" while none has.
func (s memStack) failed(ctx context.Context, cs kubernetes.Interface, ns string) (string, error) {
	_, why, _, err := s.pods(ctx, cs, ns)
	return why, err
}

// pods looks at the stack's pods: whether one is Ready, why one failed
// ("OOMKilled", "Error, exit code 2", "restarted"; "" if none did), and the
// scheduler's message while one is unschedulable. A container that cannot
// start (its image missing, a bad spec) is an error.
func (s memStack) pods(ctx context.Context, cs kubernetes.Interface, ns string) (ready bool, failed, unschedulable string, err error) {
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.selector})
	if err != nil {
		return false, "", "", err
	}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		if p.Status.Phase == corev1.PodFailed {
			return false, "pod failed: " + p.Status.Reason, "", nil
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodScheduled && c.Status == corev1.ConditionFalse && c.Reason == corev1.PodReasonUnschedulable {
				unschedulable = c.Message
			}
		}
		for _, c := range p.Status.ContainerStatuses {
			if t := c.State.Terminated; t != nil {
				return false, terminated(t), "", nil
			}
			if c.RestartCount > 0 {
				if t := c.LastTerminationState.Terminated; t != nil {
					return false, terminated(t), "", nil
				}
				return false, "restarted", "", nil
			}
			if w := c.State.Waiting; w != nil {
				switch w.Reason {
				case "ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName", "CreateContainerConfigError", "CreateContainerError":
					return false, "", "", fmt.Errorf("pod %s: %s: %s", p.Name, w.Reason, w.Message)
				}
			}
		}
		ready = ready || podReady(&p)
	}
	return ready, "", unschedulable, nil
}

func terminated(t *corev1.ContainerStateTerminated) string {
	if t.Reason == "OOMKilled" {
		return t.Reason
	}
	return fmt.Sprintf("%s, exit code %d", t.Reason, t.ExitCode)
}

// remove deletes the stack's Deployment and waits until it and its pods
// are gone (the example may take its --shutdown-timeout, 20 s), then
// deletes its Lease (crcontroller does not release it).
func (s memStack) remove(cs kubernetes.Interface, ns string) error {
	ctx := context.Background()
	err := cs.AppsV1().Deployments(ns).Delete(ctx, s.deployment, metav1.DeleteOptions{PropagationPolicy: new(metav1.DeletePropagationForeground)})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 2*time.Minute, true, func(ctx context.Context) (bool, error) {
		if _, err := cs.AppsV1().Deployments(ns).Get(ctx, s.deployment, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			return false, nil
		}
		pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: s.selector})
		return err == nil && len(pods.Items) == 0, nil
	})
	if err != nil {
		return fmt.Errorf("deployment %s/%s and its pods not gone within 2 minutes of its deletion", ns, s.deployment)
	}
	err = cs.CoordinationV1().Leases(ns).Delete(ctx, s.lease, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return nil
}

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
