// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
)

// TestControllerLeaseTakeover deploys deploy/controller as it is (two
// replicas, its timings) and takes the Lease from the leader under another
// identity, as another program sharing the Lease name would (or an operator
// forcing a handoff): the test itself is the intruder. While a labelled
// ConfigMap changes every 100 ms, it writes the Lease with holder
// "e2e-intruder", acquireTime and renewTime now, leaseDurationSeconds 15 and
// leaderTransitions + 1, and renews it every 2 s for 20 s. Wanted:
//
//   - the old leader stops writing at once: its last write, as the test's
//     watch of the ConfigMap sees it, within 2 s (one retry period at the
//     library's default) of the take-over's Update returning. The figure is
//     logged as "take-over: old leader's last write ... s after the Lease
//     was taken"; it means something only if the old leader was writing
//     right before (a write in the last 0.5 s), which is checked too;
//   - no write by any replica of ours after that, and no replica of ours
//     takes the Lease, while the intruder holds it: the intruder's renewals
//     all succeed (no one else wrote the Lease), and the Lease, as watched,
//     names the intruder until one of ours acquires it after expiry;
//   - /leader answers 503 on both pods from 2 s after the take-over until
//     the intruder stops renewing;
//   - the old leader logs at WARN "the Lease is held by another holder:
//     stopping the work" with holder=e2e-intruder, then "the work returned"
//     with cancelledBecause;
//   - after the intruder stops: a replica of ours takes the Lease once it
//     has expired (not before 15 s after the last renewal, within 15 s +
//     2 x 2.4 s of it; leaderTransitions + 1), and the ConfigMap is hashed
//     again, by it;
//   - no restart of either pod.
func TestControllerLeaseTakeover(t *testing.T) {
	const (
		intruder     = "e2e-intruder"
		stopWithin   = 2 * time.Second // the old leader's last write after the take-over
		renewEvery   = 2 * time.Second
		holdFor      = 20 * time.Second
		leaseSeconds = 15
		// After the intruder's last renewal: the lease duration, then a
		// standby's next try, at most 2 x (1.2 x the default retry period).
		retakeWithin = leaseSeconds*time.Second + 2*2400*time.Millisecond
	)
	e := deployController(t, "takeover", nil)
	ctx := t.Context()
	start := time.Now()
	e.waitReady(2, 2*time.Minute)
	oldPod := e.leaderPod(t)
	var other string
	for _, p := range e.pods(ctx) {
		if p.Name != oldPod {
			other = p.Name
		}
	}
	oldID := e.holder(ctx)
	t.Logf("2 replicas Ready %.1f s after the Deployment was created; leader %s (Lease holder %s), standby %s; retry period %s (deploy/controller)",
		time.Since(start).Seconds(), oldPod, oldID, other, flagValue(e, "--retry-period", "2s (default)"))

	// The ConfigMap the leader keeps hashing; a few seconds of writes first.
	w := startWriterWatch(t, e, "takeover")
	w.waitWriter(t, oldID, 10*time.Second)
	time.Sleep(3 * time.Second)

	// The take-over, watched from the Lease as it is now.
	l0 := e.getLease(t)
	if leaseHolder(l0) != oldID {
		t.Fatalf("the Lease passed from %s before the take-over: %s", oldID, leaseString(l0))
	}
	lw := watchLease(t, e, l0.ResourceVersion)
	leases := client.CoordinationV1().Leases(e.ns)
	var held *coordinationv1.Lease
	var takeStart, takenAt time.Time
	for attempt := 1; ; attempt++ {
		cur := e.getLease(t)
		if leaseHolder(cur) != oldID {
			t.Fatalf("the Lease passed from %s before the take-over: %s", oldID, leaseString(cur))
		}
		now := metav1.NowMicro()
		cur.Spec.HolderIdentity = new(intruder)
		cur.Spec.AcquireTime, cur.Spec.RenewTime = &now, &now
		cur.Spec.LeaseDurationSeconds = new(int32(leaseSeconds))
		cur.Spec.LeaseTransitions = new(leaseTransitions(cur) + 1)
		takeStart = time.Now()
		got, err := leases.Update(ctx, cur, metav1.UpdateOptions{})
		if err == nil {
			held, takenAt = got, time.Now()
			break
		}
		if !apierrors.IsConflict(err) || attempt == 10 { // a conflict: the leader renewed in between
			t.Fatalf("taking the Lease (attempt %d): %v", attempt, err)
		}
	}
	taken := held.DeepCopy()
	t.Logf("the test took the Lease at %s (the Update took %.0f ms): %s", takenAt.UTC().Format("15:04:05.000"), takenAt.Sub(takeStart).Seconds()*1000, leaseString(taken))

	// /leader on both pods, every 100 ms, while the intruder holds it.
	type probeResult struct {
		at        time.Time // when it was asked
		pod, body string
		code      int
	}
	var probesMu sync.Mutex
	var probes []probeResult
	probeCtx, stopProbes := context.WithCancel(ctx)
	var probeWG sync.WaitGroup
	probeWG.Go(func() {
		for probeCtx.Err() == nil {
			for _, p := range []string{oldPod, other} {
				asked := time.Now()
				pctx, cancel := context.WithTimeout(probeCtx, 2*time.Second)
				code, body := e.probe(pctx, p, "/leader")
				cancel()
				if probeCtx.Err() != nil {
					return
				}
				probesMu.Lock()
				probes = append(probes, probeResult{at: asked, pod: p, code: code, body: body})
				probesMu.Unlock()
			}
			select {
			case <-probeCtx.Done():
			case <-time.After(100 * time.Millisecond):
			}
		}
	})

	// The intruder renews. Its Update carries the resourceVersion of its
	// last write: it fails if anyone else wrote the Lease meanwhile.
	lastRenewStart, lastRenewEnd, renewals := takeStart, takenAt, 0
	for time.Since(takenAt) < holdFor {
		time.Sleep(time.Until(lastRenewEnd.Add(renewEvery)))
		now := metav1.NowMicro()
		held.Spec.RenewTime = &now
		s := time.Now()
		got, err := leases.Update(ctx, held, metav1.UpdateOptions{})
		if err != nil {
			cur, gerr := leases.Get(ctx, e.lease, metav1.GetOptions{})
			state := fmt.Sprint(gerr)
			if gerr == nil {
				state = leaseString(cur)
			}
			t.Errorf("the intruder's renewal %.1f s after the take-over failed: %v; someone else wrote the Lease while the intruder held it: %s", s.Sub(takenAt).Seconds(), err, state)
			break
		}
		held, lastRenewStart, lastRenewEnd = got, s, time.Now()
		renewals++
	}
	stopProbes()
	probeWG.Wait()
	t.Logf("the intruder renewed the Lease %d times; it stopped at %s, %.1f s after the take-over", renewals, lastRenewEnd.UTC().Format("15:04:05.000"), lastRenewEnd.Sub(takenAt).Seconds())

	// A replica of ours takes the Lease once it has expired.
	var events []leaseEvent
	var after []leaseEvent // from the take-over on
	var back *leaseEvent
	err := wait.PollUntilContextTimeout(ctx, 20*time.Millisecond, time.Until(lastRenewEnd.Add(retakeWithin+10*time.Second)), true, func(context.Context) (bool, error) {
		var err error
		if events, err = lw.snapshot(); err != nil {
			return false, err
		}
		i := slices.IndexFunc(events, func(ev leaseEvent) bool { return ev.lease.ResourceVersion == taken.ResourceVersion })
		if i < 0 {
			return false, nil
		}
		after = events[i:]
		j := slices.IndexFunc(after, func(ev leaseEvent) bool { return leaseHolder(ev.lease) != intruder })
		if j < 0 {
			return false, nil
		}
		after, back = after[:j], &after[j]
		return true, nil
	})
	if err != nil {
		t.Fatalf("no replica of ours took the Lease within %s of the intruder's last renewal (%v); Lease events seen: %d, last: %s", retakeWithin+10*time.Second, err, len(events), lastLeaseEvent(events))
	}
	newID := leaseHolder(back.lease)
	retook := back.at.Sub(lastRenewEnd)
	t.Logf("the Lease, as watched, named %s on all %d observations from the take-over on (the take-over and %d renewals); then %s took it %.2f s after the intruder's last renewal (bound %s): %s",
		intruder, len(after), renewals, newID, retook.Seconds(), retakeWithin, leaseString(back.lease))
	if len(after) != 1+renewals {
		t.Errorf("the watch saw %d writes of the intruder's Lease, want %d (the take-over and %d renewals)", len(after), 1+renewals, renewals)
	}
	if p := podOf(newID); p != oldPod && p != other {
		t.Errorf("the Lease was taken by %s, not by a replica of ours (pods %s and %s)", newID, oldPod, other)
	}
	if acq := leaseAcquired(back.lease); acq.Before(lastRenewStart.Add(leaseSeconds * time.Second)) {
		t.Errorf("%s acquired the Lease at %s, %.2f s after the intruder's last renewal, before it expired (%d s): a replica of ours took it from a holder that renewed it",
			newID, acq.UTC().Format("15:04:05.000"), acq.Sub(lastRenewStart).Seconds(), leaseSeconds)
	}
	if retook > retakeWithin {
		t.Errorf("a replica of ours took the Lease %.1f s after the intruder's last renewal, want within %s (lease + 2 x 2.4 s)", retook.Seconds(), retakeWithin)
	}
	if got, want := leaseTransitions(back.lease), leaseTransitions(held)+1; got != want {
		t.Errorf("leaderTransitions %d after %s took the Lease from the intruder, want %d", got, newID, want)
	}

	// The ConfigMap is hashed again, by the new holder.
	acquired := leaseAcquired(back.lease)
	first := w.waitWrite(t, func(c cmWrite) bool { return c.writer == newID && c.at.After(acquired) }, 10*time.Second, "a write by "+newID+" after it took the Lease")
	w.stopChanges()
	_, cm := e.waitHash(w.name, time.Now(), 10*time.Second)
	w.stop()
	t.Logf("the ConfigMap hashed again by %s %.2f s after it acquired the Lease; after the changes stopped it carries the hash of its data, by %s", newID, first.Sub(acquired).Seconds(), cm.Annotations[writerAnnot])
	if cm.Annotations[writerAnnot] != newID {
		t.Errorf("the ConfigMap's last hash was written by %s, want the new holder %s", cm.Annotations[writerAnnot], newID)
	}

	// The writes: the old leader's last one, and none of ours while the
	// intruder held the Lease (until the new holder's acquireTime).
	writes, werr := w.snapshot()
	if werr != nil {
		t.Error(werr)
	}
	var lastOldBefore, lastOld time.Time
	var violations []string
	for _, c := range writes {
		switch {
		case c.at.Before(takeStart):
			if c.writer == oldID {
				lastOldBefore, lastOld = c.at, c.at
			}
		case c.at.Before(acquired):
			if c.writer != oldID {
				violations = append(violations, fmt.Sprintf("%s at %+.2f s", c.writer, c.at.Sub(takenAt).Seconds()))
			} else if c.at.After(lastOld) {
				lastOld = c.at
			}
		}
	}
	if lastOldBefore.Before(takeStart.Add(-500 * time.Millisecond)) {
		t.Errorf("the old leader %s had not written in the 0.5 s before the take-over (last write seen %s, the take-over %s): the figure below proves nothing",
			oldID, lastOldBefore.UTC().Format("15:04:05.000"), takeStart.UTC().Format("15:04:05.000"))
	}
	lastOldAfter := lastOld.Sub(takenAt)
	t.Logf("take-over: old leader's last write %.2f s after the Lease was taken (bound %s)", lastOldAfter.Seconds(), stopWithin)
	if lastOldAfter > stopWithin {
		t.Errorf("the old leader %s wrote %.2f s after the Lease was taken by %s, want its last write within %s", oldID, lastOldAfter.Seconds(), intruder, stopWithin)
	}
	if len(violations) > 0 {
		t.Errorf("replicas of ours other than the old leader wrote while %s held the Lease (time from the take-over): %s", intruder, strings.Join(violations, ", "))
	}

	// /leader while the intruder held the Lease.
	probesMu.Lock()
	var leaders []string
	old503 := time.Time{}
	bodies := map[string]int{}
	for _, p := range probes {
		if p.pod == oldPod && p.code == 503 && !strings.HasPrefix(p.body, "{") && old503.IsZero() && !p.at.Before(takeStart) {
			old503 = p.at
		}
		if p.at.Before(takenAt.Add(stopWithin)) {
			continue
		}
		bodies[fmt.Sprintf("%d %s", p.code, p.body)]++
		// 503 from the replica itself: the API server's own errors
		// (the pod not reached) are a JSON Status.
		if p.code != 503 || strings.HasPrefix(p.body, "{") {
			leaders = append(leaders, fmt.Sprintf("%s %d %q at %+.2f s", p.pod, p.code, p.body, p.at.Sub(takenAt).Seconds()))
		}
	}
	n := len(probes)
	probesMu.Unlock()
	first503 := "never"
	if !old503.IsZero() {
		first503 = fmt.Sprintf("from %+.2f s after the take-over (asked then)", old503.Sub(takenAt).Seconds())
	}
	t.Logf("/leader: %d probes of both pods while the intruder held the Lease; the old leader answers 503 %s; answers from %+.1f s on: %v",
		n, first503, stopWithin.Seconds(), bodies)
	if len(leaders) > 0 {
		t.Errorf("/leader did not answer 503 (from the replica) while %s held the Lease: %s", intruder, strings.Join(leaders, "; "))
	}
	if len(bodies) == 0 {
		t.Errorf("no /leader answer from %.0f s after the take-over on: nothing was checked", stopWithin.Seconds())
	}

	// The old leader's log: the WARN naming the holder, then the work's end.
	oldLog := logLinesSince(e.logs(ctx, oldPod), takeStart.Add(-time.Second))
	warnMsg := "msg=" + strconv.Quote("the Lease is held by another holder: stopping the work")
	warn := slices.IndexFunc(oldLog, func(l string) bool {
		return strings.Contains(l, " level=WARN ") && strings.Contains(l, warnMsg) && strings.Contains(l+" ", " holder="+intruder+" ")
	})
	returned := -1
	if warn >= 0 {
		returned = slices.IndexFunc(oldLog[warn:], func(l string) bool {
			return strings.Contains(l, `msg="the work returned"`) && strings.Contains(l, " cancelledBecause=")
		})
	}
	switch {
	case warn < 0:
		t.Errorf("the old leader's log has no WARN %s with holder=%s since the take-over:\n%s", warnMsg, intruder, strings.Join(oldLog, "\n"))
	case returned < 0:
		t.Errorf("the old leader's log has no \"the work returned\" with cancelledBecause after its WARN:\n%s", strings.Join(oldLog[warn:], "\n"))
	default:
		when := "?"
		if at, ok := logTime(oldLog[warn]); ok {
			when = fmt.Sprintf("%+.2f", at.Sub(takenAt).Seconds())
		}
		t.Logf("the old leader logged, %s s after the take-over:\n%s\n%s", when, oldLog[warn], oldLog[warn+returned])
	}
	t.Logf("the old leader's leadership lines since the take-over:\n%s", strings.Join(leadershipLines(oldLog), "\n"))

	// No restart.
	for _, name := range []string{oldPod, other} {
		p, err := client.CoreV1().Pods(e.ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("pod %s: %v", name, err)
			continue
		}
		t.Logf("pod %s: %d restarts", name, restarts(p))
		if restarts(p) != 0 {
			t.Errorf("pod %s restarted %d times across the take-over, want 0", name, restarts(p))
		}
	}
}

// flagValue returns the value of a flag in the controller container's args,
// or def.
func flagValue(e *controllerEnv, flag, def string) string {
	for _, c := range e.deployment.Spec.Template.Spec.Containers {
		for _, a := range c.Args {
			if v, ok := strings.CutPrefix(a, flag+"="); ok {
				return v
			}
		}
	}
	return def
}

// leaseEvent is one version of the Lease, as the test's watch saw it.
type leaseEvent struct {
	at    time.Time
	lease *coordinationv1.Lease
}

func lastLeaseEvent(evs []leaseEvent) string {
	if len(evs) == 0 {
		return "none"
	}
	return leaseString(evs[len(evs)-1].lease)
}

// leaseWatch records every version of the controller's Lease from a
// resourceVersion on; a watch that ends or fails before stop is an error.
type leaseWatch struct {
	mu     sync.Mutex
	events []leaseEvent
	err    error
	stop   func()
}

func watchLease(t *testing.T, e *controllerEnv, fromRV string) *leaseWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	wi, err := client.CoordinationV1().Leases(e.ns).Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=" + e.lease, ResourceVersion: fromRV})
	if err != nil {
		cancel()
		t.Fatalf("watching the Lease: %v", err)
	}
	lw := &leaseWatch{}
	done := make(chan struct{})
	lw.stop = func() { cancel(); <-done }
	t.Cleanup(lw.stop)
	go func() {
		defer close(done)
		defer wi.Stop()
		for {
			ev, ok := <-wi.ResultChan()
			now := time.Now()
			var err error
			switch {
			case !ok && ctx.Err() == nil:
				err = fmt.Errorf("the watch of the Lease ended at %s, before the test stopped it", now.UTC().Format("15:04:05.000"))
			case !ok, ctx.Err() != nil: // stop(): the stream may end with the cancellation as an error event
				return
			case ev.Type == watch.Error:
				err = fmt.Errorf("the watch of the Lease failed at %s: %v", now.UTC().Format("15:04:05.000"), apierrors.FromObject(ev.Object))
			}
			if err != nil {
				lw.mu.Lock()
				lw.err = err
				lw.mu.Unlock()
				return
			}
			if l, ok := ev.Object.(*coordinationv1.Lease); ok {
				lw.mu.Lock()
				lw.events = append(lw.events, leaseEvent{at: now, lease: l})
				lw.mu.Unlock()
			}
		}
	}()
	return lw
}

// snapshot returns the events so far and the watch's error, if any.
func (lw *leaseWatch) snapshot() ([]leaseEvent, error) {
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return slices.Clone(lw.events), lw.err
}
