package e2e

import (
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestAPIServerRestart restarts kube-apiserver while demo --watch runs on
// this host (as in TestRotation): the demo must report errors while the
// server is away, without crashing or spinning, and recover within a few
// seconds of its return. E2E_RESTART_APISERVER is the command that restarts
// the API server and returns once it is ready again; hack/e2e.sh sets it for
// the local cluster and hack/kind.sh for kind. Where it is not set, the test
// is skipped, and says so.
func TestAPIServerRestart(t *testing.T) {
	restart := os.Getenv("E2E_RESTART_APISERVER")
	if restart == "" {
		t.Skip("E2E_RESTART_APISERVER is not set: no command to restart this cluster's API server (hack/e2e.sh sets it for CLUSTER=local and CLUSTER=kind)")
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
		var failed int
		var firstFail, lastFail, recovered time.Time
		for _, r := range w.reports {
			if r.Time.Before(stopped) {
				continue
			}
			if r.Error != "" {
				failed++
				if firstFail.IsZero() {
					firstFail = r.Time
				}
				lastFail = r.Time
			} else if !lastFail.IsZero() && recovered.IsZero() {
				recovered = r.Time
			}
		}
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
