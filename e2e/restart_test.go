// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/incluster/incluster/cmd/demo/app"
)

// TestAPIServerRestart restarts kube-apiserver while demo --watch runs on
// this host (as in TestRotation): the demo must report errors while the
// server is away, without crashing or spinning, and recover within a few
// seconds of its return. E2E_RESTART_APISERVER is the command that restarts
// the API server and returns once it is ready again; hack/e2e.sh sets it for
// the local cluster and hack/kind.sh for kind. Where it is not set, the test
// fails: the suite never skips.
func TestAPIServerRestart(t *testing.T) {
	restart := os.Getenv("E2E_RESTART_APISERVER")
	if restart == "" {
		t.Fatal("E2E_RESTART_APISERVER is not set: no command to restart this cluster's API server (hack/e2e.sh sets it for CLUSTER=local and CLUSTER=kind; for another cluster, set it to a command that restarts kube-apiserver and returns once /readyz is ok)")
	}
	h := newHostPod(t, "restart")
	writeAtomic(t, h.saDir, "token", h.token("anchor"))
	demoBin := buildDemo(t)
	const interval = 200 * time.Millisecond
	watchers := []*watcher{
		startWatch(t, demoBin, h.saDir, h.host, h.port, "--via=client-go"),
		startWatch(t, demoBin, h.saDir, h.host, h.port, "--via=rest", "--server="+net.JoinHostPort(h.host, h.port)),
	}
	for _, w := range watchers {
		w.waitReports(t, 5)
	}

	stopped := time.Now()
	out, err := exec.Command("/bin/sh", "-c", restart).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", restart, err, out)
	}
	ready := time.Now()
	t.Logf("%s: the API server was away for at most %.1f s\n%s", restart, ready.Sub(stopped).Seconds(), strings.TrimSpace(string(out)))
	for _, w := range watchers {
		w.waitReportsAfter(t, ready, 10)
	}

	for _, w := range watchers {
		w.stop(t) // exits 0: it did not crash
		w.mu.Lock()
		failed, firstFail, lastFail, recovered := outage(w.reports, stopped)
		w.mu.Unlock()
		if failed == 0 {
			t.Errorf("%s: no failed report while the API server was away: was it restarted?", w.via)
			continue
		}
		if recovered.IsZero() {
			t.Errorf("%s: no successful report after the restart", w.via)
			continue
		}
		gap := recovered.Sub(ready)
		// The server answers requests a little before its /readyz says so:
		// a negative gap means the demo recovered before the readiness wait ended.
		t.Logf("%s: %d failed reports from %.1f s to %.1f s after the stop, outage seen by the demo %.1f s; first good report %+.2f s from /readyz ok",
			w.via, failed, firstFail.Sub(stopped).Seconds(), lastFail.Sub(stopped).Seconds(), recovered.Sub(firstFail).Seconds(), gap.Seconds())
		if gap > 5*time.Second {
			t.Errorf("%s: recovered %.1f s after the API server was ready, want at most 5 s", w.via, gap.Seconds())
		}
		// Paced, not spinning: at most one report per interval while it was down.
		if max := int(ready.Sub(stopped)/interval) + 2; failed > max {
			t.Errorf("%s: %d failed reports in %.1f s at a %s interval: it does not back off", w.via, failed, ready.Sub(stopped).Seconds(), interval)
		}
	}
}

// outage summarises the reports that started after stopped: how many
// failed, the first and the last failure, and the first good report after
// the last failure (zero if none). A good report between two failures is not
// a recovery.
func outage(reports []app.Report, stopped time.Time) (failed int, firstFail, lastFail, recovered time.Time) {
	for _, r := range reports {
		if r.Time.Before(stopped) || r.Error == "" {
			continue
		}
		failed++
		if firstFail.IsZero() {
			firstFail = r.Time
		}
		lastFail = r.Time
	}
	for _, r := range reports {
		if r.Error == "" && r.Time.After(lastFail) && !lastFail.IsZero() {
			return failed, firstFail, lastFail, r.Time
		}
	}
	return failed, firstFail, lastFail, time.Time{}
}

// TestOutageSummary checks outage on made-up reports: a good report between
// two failures (a flap while the server comes back) is not the recovery.
func TestOutageSummary(t *testing.T) {
	t0 := time.Now()
	at := func(s int, failed bool) app.Report {
		r := app.Report{Time: t0.Add(time.Duration(s) * time.Second)}
		if failed {
			r.Error = "connection refused"
		}
		return r
	}
	reports := []app.Report{at(0, false), at(1, true), at(2, false), at(3, true), at(4, false), at(5, false)}
	failed, first, last, recovered := outage(reports, t0.Add(500*time.Millisecond))
	if failed != 2 || !first.Equal(t0.Add(time.Second)) || !last.Equal(t0.Add(3*time.Second)) || !recovered.Equal(t0.Add(4*time.Second)) {
		t.Errorf("outage = %d failed, first +%s, last +%s, recovered +%s; want 2, +1s, +3s, +4s",
			failed, first.Sub(t0), last.Sub(t0), recovered.Sub(t0))
	}
	if _, _, _, r := outage(reports[:4], t0); !r.IsZero() {
		t.Errorf("recovered at +%s though the last report failed", r.Sub(t0))
	}
}
