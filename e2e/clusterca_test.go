// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/incluster/incluster/cmd/demo/app"
)

// TestClusterCARotation rotates the cluster's own serving CA, as an operator
// does: E2E_ROTATE_CA start (a new CA trusted beside the old one in every
// kubeconfig and in kube-root-ca.crt, then kube-apiserver restarted on a
// certificate from it), later E2E_ROTATE_CA finish (the old CA trusted no
// more). hack/e2e.sh sets it to hack/local-cluster.sh rotate-ca for the
// local cluster, hack/kind.sh to hack/kind.sh rotate-ca for kind; where it is
// not set the test fails: the suite never skips. Across the switch:
//
//   - demo --watch at 200 ms on this host as if in a pod (client-go and rest;
//     TestRotation's private mount namespace), whose ca.crt the test writes
//     with the new kube-root-ca.crt the moment the API server presents the
//     new certificate. Wanted: no report failing with "unknown authority"
//     that starts more than the library's re-read interval (1 s) after the
//     file changed, and no report failing otherwise that starts more than
//     5 s after the start command returned (kube-apiserver ready again);
//     before that, failures of kube-apiserver's restart (connection
//     refused, not ready) are counted, not failed: it may present the new
//     certificate before it restarts, so they can follow the switch. The
//     same holds through finish to the end. Beside them, the control: plain
//     client-go (the settings rest.InClusterConfig makes: CAFile and
//     BearerTokenFile on the same folder), built just before start. It
//     reads the file again only 5 minutes after it was built
//     (client-go/transport/ca_rotation.go), so its reports from the switch
//     until then must fail with "unknown authority" (at least one), or the
//     clients never met the new certificate and the test fails.
//   - the demo in a real pod, ca.crt projected from kube-root-ca.crt: it
//     must fail with "unknown authority" after the switch (else the kubelet
//     had refreshed ca.crt before it and nothing was measured: the test
//     fails), then the seconds from the switch until its reports succeed
//     again, bounded by the kubelet's refresh of the projected volume (its
//     pod sync, about a minute; at most 3 minutes); no restart.
//   - deploy/controller (two replicas): no restart; it keeps its hashes: the
//     ConfigMap hashed before the rotation is not written again (the same
//     resourceVersion at the end); a ConfigMap labelled after the switch is
//     hashed once the pods have the new ca.crt.
//
// After finish: no failed report (host demos and the pod), and a new
// ConfigMap is hashed within 5 s.
func TestClusterCARotation(t *testing.T) {
	rotate := os.Getenv("E2E_ROTATE_CA")
	if rotate == "" {
		t.Fatal("E2E_ROTATE_CA is not set: no command to rotate this cluster's serving CA (hack/e2e.sh sets it for CLUSTER=local and CLUSTER=kind; for another cluster, set it to a command that takes start or finish)")
	}
	ctx := t.Context()
	const recoverWithin = 3 * time.Minute // the kubelet's sync (1 min) plus its ConfigMap cache, with room

	// The host demos, and plain client-go beside them.
	h := newHostPod(t, "clusterca")
	writeAtomic(t, h.saDir, "token", h.token("anchor"))
	demoBin := buildDemo(t)
	server := net.JoinHostPort(h.host, h.port)
	watchers := []*watcher{
		startWatch(t, demoBin, h.saDir, h.host, h.port, "--via=client-go"),
		startWatch(t, demoBin, h.saDir, h.host, h.port, "--via=rest", "--server="+server),
	}
	// The real pod.
	podNS, _, pod := deployDemo(t, ctx, demoCase{name: "clusterca-pod", args: func(string) []string { return []string{"--watch", "--interval=200ms"} }})
	// The controller.
	e := deployController(t, "clusterca-ctl", nil)

	for _, w := range watchers {
		w.waitReports(t, 5)
	}
	waitPodReports(t, podNS, pod.Name, podTimeout, "5 reports", nAfter(5, time.Time{}))
	ctlPods := e.waitReady(2, 2*time.Minute)
	d, kept := e.waitHash("before", createLabelled(t, e, "before"), 30*time.Second)
	t.Logf("2 controller replicas Ready; a ConfigMap hashed %.2f s after create by %s (resourceVersion %s)", d.Seconds(), kept.Annotations[writerAnnot], kept.ResourceVersion)
	// Plain client-go reads ca.crt when it is built and again 5 minutes
	// after its last read: built now, just before the rotation, it has
	// CA 1 only until 5 minutes from now, whatever the setup took.
	plain := startPlainClientGo(t, h)
	plain.waitReportsAfter(t, time.Time{}, 5)

	// start: the moment the server presents the new CA's certificate, the
	// host demos' ca.crt gets the new kube-root-ca.crt.
	sw := watchSwitch(t, h.ns, h.saDir)
	out, err := exec.Command("/bin/sh", "-c", rotate+" start").CombinedOutput()
	if err != nil {
		t.Fatalf("%s start: %v\n%s", rotate, err, out)
	}
	started := time.Now() // kube-apiserver restarted on the new certificate, and ready
	t.Logf("%s start: %s", rotate, lastLines(string(out), 1))
	switched, written := sw.wait(t)
	t.Logf("the API server switched to %s at %s; the host demos' ca.crt got the new kube-root-ca.crt %.0f ms later",
		sw.newIssuer, switched.UTC().Format("15:04:05.000"), written.Sub(switched).Seconds()*1000)
	if err := loadKubeconfig(); err != nil { // it now trusts both CAs
		t.Fatal(err)
	}
	afterSwitch := createLabelled(t, e, "after-switch")

	// (b) and (c): the pod and the controller follow once the kubelet has
	// refreshed their ca.crt; the host demos run on meanwhile.
	reps := waitPodReports(t, podNS, pod.Name, recoverWithin, "5 good reports in a row after the last \"unknown authority\"", func(reps []app.Report) bool {
		_, _, ok := caRecovery(reps, switched, 5)
		return ok
	})
	podCAFailed, podRecovered, _ := caRecovery(reps, switched, 5)
	ctlOK, _ := e.waitHash("after-switch", afterSwitch, recoverWithin)
	for _, w := range watchers {
		w.waitReportsAfter(t, written, 10)
	}

	out, err = exec.Command("/bin/sh", "-c", rotate+" finish").CombinedOutput()
	if err != nil {
		t.Fatalf("%s finish: %v\n%s", rotate, err, out)
	}
	finished := time.Now()
	t.Logf("%s finish: %s", rotate, lastLines(string(out), 1))
	if err := loadKubeconfig(); err != nil { // it now trusts the new CA only
		t.Fatal(err)
	}
	if d, _ := e.waitHash("after-finish", createLabelled(t, e, "after-finish"), 30*time.Second); d > 5*time.Second {
		t.Errorf("a ConfigMap created after rotate-ca finish was hashed %.1f s later, want within 5 s", d.Seconds())
	}
	for _, w := range watchers {
		w.waitReportsAfter(t, finished, 10)
	}
	reps = waitPodReports(t, podNS, pod.Name, time.Minute, "10 reports after finish", nAfter(10, finished))

	// (a) the host demos, and plain client-go. kube-apiserver may take up
	// the new certificate before its restart (it reloads changed files), so
	// failures of the restart itself (connection refused, not ready) may
	// follow the switch: they are allowed until 5 s after the start command
	// returned (kube-apiserver ready again; the 5 s of TestAPIServerRestart).
	// "unknown authority" is allowed until 1 s after ca.crt changed. After
	// both, through finish to the end, no report may fail.
	for _, w := range watchers {
		w.stop(t)
		w.mu.Lock()
		sw, wr := tallyAfter(w.reports, switched, 0), tallyAfter(w.reports, written, time.Second)
		bad := unexcused(w.reports, written, started)
		w.mu.Unlock()
		t.Logf("%s: %d reports after ca.crt changed; after the switch %d failed (%d unknown authority), after ca.crt changed %d failed (%d unknown authority, %d of them more than 1 s after)%s; failures not excused (unknown authority more than 1 s after ca.crt changed, another more than 5 s after the start command returned): %d",
			w.via, wr.total, sw.failed, sw.ca, wr.failed, wr.ca, wr.lateCA, sw.other(), len(bad))
		if len(bad) > 0 {
			t.Errorf("%s: %d failed reports not excused by the rotation (ca.crt changed %s, start returned %s); the first started %s: %s\n%s",
				w.via, len(bad), written.UTC().Format("15:04:05.000"), started.UTC().Format("15:04:05.000"), bad[0].Time.UTC().Format("15:04:05.000"), bad[0].Error, lastLines(w.stderr.String(), 5))
		}
	}
	// The control: plain client-go has CA 1 only until it reads ca.crt
	// again, 5 minutes after it was built (just before start): its reports
	// from the switch until then must fail with "unknown authority", or the
	// clients never saw the server's new certificate and (a) proves nothing.
	plain.stop()
	validUntil := plain.built.Add(5 * time.Minute)
	before, ctl := tallyBefore(plain.reports, switched), tallyAfter(between(plain.reports, switched, validUntil), switched, 0)
	t.Logf("plain client-go (CAFile, built %.0f s before the switch; it reads ca.crt again 5 min after it was built, %.0f s after the switch): %d reports from the switch until then, %d failed (%d unknown authority); before the switch %d of %d failed",
		switched.Sub(plain.built).Seconds(), validUntil.Sub(switched).Seconds(), ctl.total, ctl.failed, ctl.ca, before.failed, before.total)
	if before.failed == before.total {
		t.Errorf("plain client-go: every one of its %d reports before the switch failed, so it proves nothing: %s", before.total, lastReport(plain.reports).Error)
	}
	switch {
	case ctl.total == 0:
		t.Errorf("control: plain client-go has no report between the switch and its re-read of ca.crt (the switch came %.0f s after it was built, the re-read 5 min after): nothing to compare with", switched.Sub(plain.built).Seconds())
	case ctl.ca == 0:
		t.Errorf("control: plain client-go, which reads ca.crt again only 5 minutes after it was built, had no \"unknown authority\" in its %d reports from the switch until then: the clients did not see the server's new certificate, and the cases above prove nothing", ctl.total)
	}

	// (b) the real pod: it must have seen the rotation, or its recovery
	// was not measured.
	fin := tallyAfter(reps, finished, 0)
	if podCAFailed == 0 {
		t.Errorf("pod %s/%s: no \"unknown authority\" after the switch: the kubelet had given it the new ca.crt before the server switched, so its recovery was not measured (rerun; the rotation command publishes the new CA before it restarts kube-apiserver)", podNS, pod.Name)
	} else {
		t.Logf("pod %s/%s (ca.crt projected by the kubelet): %d reports failed with \"unknown authority\" after the switch; good again %.1f s after it, once the kubelet refreshed ca.crt from kube-root-ca.crt (its pod sync); after finish %d of %d failed",
			podNS, pod.Name, podCAFailed, podRecovered.Sub(switched).Seconds(), fin.failed, fin.total)
	}
	if fin.failed != 0 {
		t.Errorf("pod %s: %d failed reports after rotate-ca finish, want none%s", pod.Name, fin.failed, fin.other())
	}
	if p, err := client.CoreV1().Pods(podNS).Get(ctx, pod.Name, metav1.GetOptions{}); err != nil || restarts(p) != 0 {
		t.Errorf("pod %s: restarted (%v), want no restart", pod.Name, err)
	}

	// (c) the controller: no restart, and it kept its hashes: the ConfigMap
	// hashed before the rotation, whose data did not change, was not
	// written again (its resourceVersion is the one after its hash). A
	// replica writes only where its cache shows a hash that is not the
	// data's: one whose cache had lost or never got the annotations it
	// wrote would write it again once it leads.
	t.Logf("controller: the ConfigMap created after the switch was hashed %.1f s later", ctlOK.Seconds())
	if now, err := client.CoreV1().ConfigMaps(e.ns).Get(ctx, kept.Name, metav1.GetOptions{}); err != nil {
		t.Errorf("ConfigMap %s: %v", kept.Name, err)
	} else if now.ResourceVersion != kept.ResourceVersion {
		t.Errorf("ConfigMap %s, hashed before the rotation and not changed since, was written again: resourceVersion %s -> %s, writer %s -> %s, hash %s -> %s; the controller did not keep what it had written",
			kept.Name, kept.ResourceVersion, now.ResourceVersion, kept.Annotations[writerAnnot], now.Annotations[writerAnnot], kept.Annotations[hashAnnotation], now.Annotations[hashAnnotation])
	} else {
		t.Logf("controller: ConfigMap %s, hashed before the rotation by %s, not written since (resourceVersion %s)", kept.Name, kept.Annotations[writerAnnot], kept.ResourceVersion)
	}
	for _, p := range ctlPods {
		cur, err := client.CoreV1().Pods(e.ns).Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Errorf("controller pod %s: %v", p.Name, err)
			continue
		}
		logs := e.logs(ctx, p.Name)
		t.Logf("controller pod %s: %d restarts; leadership lines since the switch: %d; last lines:\n%s", p.Name, restarts(cur), len(leadershipLines(logLinesSince(logs, switched))), lastLines(logs, 4))
		if restarts(cur) != 0 {
			t.Errorf("controller pod %s: %d restarts across the rotation, want 0", p.Name, restarts(cur))
		}
	}
}

// unexcused returns the failed reports the cluster CA rotation does not
// excuse: "unknown authority" that started more than 1 s after ca.crt got
// the new CA (written), any other failure that started more than 5 s after
// the start command returned (ready: kube-apiserver restarted and ready).
func unexcused(reports []app.Report, written, ready time.Time) []app.Report {
	var out []app.Report
	for _, r := range reports {
		switch {
		case r.Error == "":
		case unknownAuthority(r) && r.Time.After(written.Add(time.Second)):
			out = append(out, r)
		case !unknownAuthority(r) && r.Time.After(ready.Add(5*time.Second)):
			out = append(out, r)
		}
	}
	return out
}

// between returns the reports that started after from and before to.
func between(reports []app.Report, from, to time.Time) []app.Report {
	var out []app.Report
	for _, r := range reports {
		if r.Time.After(from) && r.Time.Before(to) {
			out = append(out, r)
		}
	}
	return out
}

// tally counts reports: all, failed, failed with "unknown authority" (the
// CA's), those of them late (after a grace period), and the first error of
// another kind.
type tally struct {
	total, failed, ca, lateCA int
	otherErr                  string
}

func (c tally) other() string {
	if c.otherErr == "" {
		return ""
	}
	return "; first other error: " + c.otherErr
}

func unknownAuthority(r app.Report) bool { return strings.Contains(r.Error, "unknown authority") }

// tallyAfter counts the reports that started after since; a CA failure is
// late when it started more than grace after since.
func tallyAfter(reports []app.Report, since time.Time, grace time.Duration) tally {
	var c tally
	for _, r := range reports {
		if r.Time.After(since) {
			c.add(r, r.Time.Sub(since) > grace)
		}
	}
	return c
}

// tallyBefore counts the reports that started before until.
func tallyBefore(reports []app.Report, until time.Time) tally {
	var c tally
	for _, r := range reports {
		if r.Time.Before(until) {
			c.add(r, false)
		}
	}
	return c
}

func (c *tally) add(r app.Report, late bool) {
	c.total++
	switch {
	case r.Error == "":
	case unknownAuthority(r):
		c.failed++
		c.ca++
		if late {
			c.lateCA++
		}
	default:
		c.failed++
		if c.otherErr == "" {
			c.otherErr = r.Error
		}
	}
}

// caRecovery reads the reports that started after since: how many failed
// with "unknown authority", and when the first run of n good reports in a
// row after the last of them began (ok: there is one).
func caRecovery(reports []app.Report, since time.Time, n int) (caFailed int, recovered time.Time, ok bool) {
	streak := 0
	for _, r := range reports {
		if !r.Time.After(since) {
			continue
		}
		switch {
		case unknownAuthority(r):
			caFailed++
			streak, ok = 0, false
		case r.Error != "":
			if !ok {
				streak = 0
			}
		case !ok:
			if streak == 0 {
				recovered = r.Time
			}
			if streak++; streak == n {
				ok = true
			}
		}
	}
	return caFailed, recovered, ok
}

// createLabelled creates a ConfigMap for the controller to hash and returns
// when.
func createLabelled(t *testing.T, e *controllerEnv, name string) time.Time {
	t.Helper()
	created := time.Now()
	if _, err := client.CoreV1().ConfigMaps(e.ns).Create(t.Context(), &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{hashLabel: "true"}},
		Data:       map[string]string{"k": name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return created
}

// waitPodReports polls the demo pod's log (every second, up to timeout)
// until done is true of its reports, and returns them.
func waitPodReports(t *testing.T, ns, pod string, timeout time.Duration, what string, done func([]app.Report) bool) []app.Report {
	t.Helper()
	var reps []app.Report
	err := wait.PollUntilContextTimeout(t.Context(), time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		raw, err := client.CoreV1().Pods(ns).GetLogs(pod, &corev1.PodLogOptions{Container: demoContainer}).DoRaw(ctx)
		if err != nil {
			return false, nil // the API server may be away for a moment
		}
		if reps, err = parseReports(string(raw)); err != nil {
			return false, err
		}
		return done(reps), nil
	})
	if err != nil {
		t.Fatalf("pod %s/%s: %s: not within %s (%d reports, last: %+v)", ns, pod, what, timeout, len(reps), lastReport(reps))
	}
	return reps
}

func lastReport(reps []app.Report) app.Report {
	if len(reps) == 0 {
		return app.Report{}
	}
	return reps[len(reps)-1]
}

// nAfter is a waitPodReports condition: n reports that started after since.
func nAfter(n int, since time.Time) func([]app.Report) bool {
	return func(reps []app.Report) bool { return tallyAfter(reps, since, 0).total >= n }
}

// switchWatch sees the API server present a certificate from another CA:
// it dials the server every 20 ms (TLS, verifying nothing: it only reads the
// issuer), keeps the latest kube-root-ca.crt of a namespace until then, and
// at that moment writes it as saDir/ca.crt, as the kubelet would.
type switchWatch struct {
	done      chan struct{}
	oldIssuer string
	mu        sync.Mutex // guards bundle
	bundle    string
	// set before done is closed
	at, written time.Time
	newIssuer   string
	err         error
}

func watchSwitch(t *testing.T, ns, saDir string) *switchWatch {
	t.Helper()
	addr := strings.TrimPrefix(restConfig.Host, "https://")
	first, err := serverCert(addr)
	if err != nil {
		t.Fatalf("TLS dial of the API server (%s): %v", addr, err)
	}
	s := &switchWatch{done: make(chan struct{}), oldIssuer: first.Issuer.CommonName}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	cs := client // the one that trusts the old CA: it fails once the server switched
	go func() {
		for ctx.Err() == nil {
			c, cancelGet := context.WithTimeout(ctx, 2*time.Second)
			if cm, err := cs.CoreV1().ConfigMaps(ns).Get(c, "kube-root-ca.crt", metav1.GetOptions{}); err == nil {
				s.mu.Lock()
				s.bundle = cm.Data["ca.crt"]
				s.mu.Unlock()
			}
			cancelGet()
			time.Sleep(200 * time.Millisecond)
		}
	}()
	go func() {
		defer close(s.done)
		defer cancel()
		for ctx.Err() == nil {
			if leaf, err := serverCert(addr); err == nil && leaf.Issuer.CommonName != s.oldIssuer {
				s.at, s.newIssuer = time.Now(), leaf.Issuer.CommonName
				s.mu.Lock()
				bundle := s.bundle
				s.mu.Unlock()
				s.err = writeCA(saDir, bundle, leaf)
				s.written = time.Now()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
		s.err = ctx.Err()
	}()
	return s
}

// writeCA writes bundle as dir/ca.crt (a new file renamed over the old
// one), after checking that it holds the CA of leaf.
func writeCA(dir, bundle string, leaf *x509.Certificate) error {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(bundle)) {
		return fmt.Errorf("kube-root-ca.crt holds no certificate:\n%s", bundle)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool}); err != nil {
		return fmt.Errorf("when the API server switched to a certificate from %s, kube-root-ca.crt (%d certificates) did not hold its CA yet: the rotation command must publish the new CA before it restarts the API server: %v",
			leaf.Issuer.CommonName, strings.Count(bundle, "BEGIN CERTIFICATE"), err)
	}
	tmp := filepath.Join(dir, ".ca.crt.new")
	if err := os.WriteFile(tmp, []byte(bundle), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, "ca.crt"))
}

// wait returns when the server switched and when ca.crt was written.
func (s *switchWatch) wait(t *testing.T) (switched, written time.Time) {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("the API server still presents a certificate from %s 2 minutes after the rotation command returned", s.oldIssuer)
	}
	if s.at.IsZero() {
		t.Fatalf("the API server still presents a certificate from %s: %v", s.oldIssuer, s.err)
	}
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.at, s.written
}

// serverCert returns the certificate the server at addr presents.
func serverCert(addr string) (*x509.Certificate, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // only the issuer is read
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}

// plainClientGo asks /api every 200 ms with plain client-go, configured as
// rest.InClusterConfig configures it (CAFile and BearerTokenFile in the
// service-account folder), and keeps a report per request.
type plainClientGo struct {
	built   time.Time
	stop    func()
	mu      sync.Mutex
	reports []app.Report
}

func startPlainClientGo(t *testing.T, h *hostPod) *plainClientGo {
	t.Helper()
	built := time.Now() // before the transport reads ca.crt: its re-read comes 5 min after this or later
	cs, err := kubernetes.NewForConfig(&rest.Config{
		Host:            "https://" + net.JoinHostPort(h.host, h.port),
		TLSClientConfig: rest.TLSClientConfig{CAFile: filepath.Join(h.saDir, "ca.crt")},
		BearerTokenFile: filepath.Join(h.saDir, "token"),
		Timeout:         5 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &plainClientGo{built: built}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	p.stop = sync.OnceFunc(func() { cancel(); <-done })
	t.Cleanup(p.stop)
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			r := app.Report{Time: time.Now(), Via: "plain client-go"}
			if _, err := cs.Discovery().RESTClient().Get().AbsPath("/api").DoRaw(ctx); err != nil {
				r.Error = err.Error()
			}
			if ctx.Err() != nil {
				return
			}
			p.mu.Lock()
			p.reports = append(p.reports, r)
			p.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// waitReportsAfter waits for n reports that started after since.
func (p *plainClientGo) waitReportsAfter(t *testing.T, since time.Time, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, time.Minute, true, func(context.Context) (bool, error) {
		p.mu.Lock()
		defer p.mu.Unlock()
		return tallyAfter(p.reports, since, 0).total >= n, nil
	})
	if err != nil {
		t.Fatalf("plain client-go: %d reports within a minute: %v", n, err)
	}
}

// TestCARecoverySummary checks caRecovery, tallyAfter, unexcused and
// between on made-up reports: a good report on a connection opened before
// the switch, then "unknown authority", a refused connection, good reports:
// the recovery is the first of n good ones in a row after the last "unknown
// authority"; a failure is excused only in its own window.
func TestCARecoverySummary(t *testing.T) {
	t0 := time.Now()
	at := func(s int, err string) app.Report {
		return app.Report{Time: t0.Add(time.Duration(s) * time.Second), Error: err}
	}
	const ua, refused = "x509: certificate signed by unknown authority", "connection refused"
	reports := []app.Report{at(1, ""), at(2, ua), at(3, refused), at(4, ua), at(5, ""), at(6, refused), at(7, ""), at(8, ""), at(9, "")}
	failed, recovered, ok := caRecovery(reports, t0, 2)
	if failed != 2 || !ok || !recovered.Equal(t0.Add(7*time.Second)) {
		t.Errorf("caRecovery = %d, +%s, %v; want 2, +7s, true", failed, recovered.Sub(t0), ok)
	}
	if _, _, ok := caRecovery(reports[:6], t0, 2); ok {
		t.Error("recovered though no 2 good reports follow the last unknown authority")
	}
	c := tallyAfter(reports, t0.Add(1500*time.Millisecond), 2*time.Second)
	if c.total != 8 || c.failed != 4 || c.ca != 2 || c.lateCA != 1 || c.otherErr != refused {
		t.Errorf("tallyAfter = %+v; want 8 reports, 4 failed, 2 unknown authority, 1 late, other %q", c, refused)
	}
	// ca.crt written at +2.5 s (unknown authority excused until +3.5 s),
	// start returned at +0.5 s (other failures excused until +5.5 s): the
	// unknown authority at +4 s is not excused, the refusals at +3 s and
	// +6 s: the second is not.
	bad := unexcused(reports, t0.Add(2500*time.Millisecond), t0.Add(500*time.Millisecond))
	if len(bad) != 2 || !bad[0].Time.Equal(t0.Add(4*time.Second)) || !bad[1].Time.Equal(t0.Add(6*time.Second)) {
		t.Errorf("unexcused = %v; want the reports of +4 s and +6 s", bad)
	}
	if got := between(reports, t0.Add(2*time.Second), t0.Add(5*time.Second)); len(got) != 2 {
		t.Errorf("between(+2 s, +5 s) = %d reports, want 2 (+3 s, +4 s)", len(got))
	}
}
