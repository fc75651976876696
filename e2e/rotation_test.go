// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/incluster/incluster/cmd/demo/app"
)

// TestRotation runs the demo with --watch on this host, in a private mount
// namespace where /var/run/secrets/kubernetes.io/serviceaccount is a folder
// the test controls, against the cluster's API server. It replaces the token
// with a new one and revokes the old one (deletes the Secret it is bound to),
// and counts failed reports after the switch: there must be none.
//
// client-go also re-reads a token file on its own, 50 s after it last read
// it (transport.NewCachedFileTokenSource: a one-minute period, 10 s leeway).
// Only reports that end before that moment prove the library's retry after
// a 401; the test fails when the revocation lands too late to tell the two
// apart. (CA rotation: TestCARotation.)
func TestRotation(t *testing.T) {
	h := newHostPod(t, "rotation")
	token1 := h.token("anchor-1")
	writeAtomic(t, h.saDir, "token", token1)
	demoBin := buildDemo(t)
	saDir, host, port := h.saDir, h.host, h.port
	ctx, ns := t.Context(), h.ns
	// Neither demo has read the token before this moment.
	started := time.Now()
	watchers := []*watcher{
		startWatch(t, demoBin, saDir, host, port, "--via=client-go"),
		startWatch(t, demoBin, saDir, host, port, "--via=rest", "--server="+net.JoinHostPort(host, port)),
	}
	for _, w := range watchers {
		w.waitReports(t, 5)
	}

	// Token rotation: the new token in place, then the old one revoked.
	token2 := h.token("anchor-2")
	switched := time.Now()
	writeAtomic(t, saDir, "token", token2)
	if err := client.CoreV1().Secrets(ns).Delete(ctx, "anchor-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, token1)
	revoked := time.Now()
	t.Logf("old token revoked %.1f s after the switch, %.1f s after the demos started", revoked.Sub(switched).Seconds(), revoked.Sub(started).Seconds())
	for _, w := range watchers {
		w.waitReportsAfter(t, revoked, 10)
	}
	periodicReread := started.Add(tokenReread)
	if done := time.Now(); done.After(periodicReread) {
		t.Fatalf("the reports after the revocation ended %.1f s after the demos started, later than client-go's own re-read of the token file (%s): they cannot tell the library's retry after a 401 from it; the cluster was too slow to revoke the token (%.1f s)",
			done.Sub(started).Seconds(), tokenReread, revoked.Sub(switched).Seconds())
	}

	for _, w := range watchers {
		w.stop(t)
		total, failed := w.countFailedAfter(switched)
		t.Logf("%s: %d reports; failed after the token switch: %d", w.via, total, failed)
		if failed != 0 {
			t.Errorf("%s: %d failed reports after the token switch; want none\n%s", w.via, failed, w.stderr.String())
		}
		for _, s := range []string{token1, token2} {
			if strings.Contains(w.stdout.String(), s) || strings.Contains(w.stderr.String(), s) {
				t.Errorf("%s printed a token", w.via)
			}
		}
	}
}

// tokenReread is when client-go's cached file token source reads the token
// file again on its own after its first read: its one-minute period minus
// its 10 s leeway (k8s.io/client-go/transport/token_source.go).
const tokenReread = 50 * time.Second

// hostPod is what the kubelet would give a pod, for a demo run on this host:
// a namespace and ServiceAccount in the cluster, a service-account folder
// with ca.crt and namespace (the token is the test's to write) and the API
// server's address.
type hostPod struct {
	t                     *testing.T
	ns, sa                string
	saDir, host, port, ca string
}

func newHostPod(t *testing.T, name string) *hostPod {
	t.Helper()
	ctx := t.Context()
	h := &hostPod{t: t, ns: newNamespace(t, ctx, name), saDir: t.TempDir()}
	var sa corev1.ServiceAccount
	load(t, "serviceaccount.yaml", &sa)
	h.sa = sa.Name
	create(t, ctx, func() error {
		_, err := client.CoreV1().ServiceAccounts(h.ns).Create(ctx, &sa, metav1.CreateOptions{})
		return err
	})
	// The CA as pods get it: the kube-root-ca.crt ConfigMap (it may take a moment to appear).
	var lastErr error
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		cm, err := client.CoreV1().ConfigMaps(h.ns).Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		if err != nil {
			lastErr = err
			return false, nil
		}
		h.ca = cm.Data["ca.crt"]
		return true, nil
	})
	if err != nil {
		t.Fatalf("the kube-root-ca.crt ConfigMap: %v (last error: %v)", err, lastErr)
	}
	writeAtomic(t, h.saDir, "ca.crt", h.ca)
	writeAtomic(t, h.saDir, "namespace", h.ns)
	u, err := url.Parse(restConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	if h.host, h.port, err = net.SplitHostPort(u.Host); err != nil {
		t.Fatalf("API server %s: %v", restConfig.Host, err)
	}
	return h
}

// token returns a new token of the ServiceAccount, bound to a Secret named
// anchor that it creates: deleting the Secret revokes the token.
func (h *hostPod) token(anchor string) string {
	t, ctx := h.t, h.t.Context()
	t.Helper()
	s, err := client.CoreV1().Secrets(h.ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: anchor}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tr, err := client.CoreV1().ServiceAccounts(h.ns).CreateToken(ctx, h.sa, &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: new(int64(3600)),
		BoundObjectRef:    &authenticationv1.BoundObjectReference{Kind: "Secret", APIVersion: "v1", Name: anchor, UID: s.UID},
	}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// watcher is a demo --watch process and the reports it printed.
type watcher struct {
	via    string
	cmd    *exec.Cmd
	stdout bytes.Buffer // a copy, for the token check
	stderr bytes.Buffer
	done   chan struct{}

	mu      sync.Mutex
	reports []app.Report
}

// startWatch runs the demo in a private mount namespace (unshare) where a
// tmpfs hides the host's /run and saDir appears at the service-account path.
// Nothing on the host changes.
func startWatch(t *testing.T, demoBin, saDir, host, port string, args ...string) *watcher {
	t.Helper()
	cmd := podCommand(demoBin, saDir, []string{"KUBERNETES_SERVICE_HOST=" + host, "KUBERNETES_SERVICE_PORT=" + port},
		append([]string{"--watch", "--interval=200ms", "-o", "json"}, args...)...)
	w := &watcher{via: args[0], cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &w.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("unshare: %v (the rotation test needs unshare from util-linux and mount namespaces)", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	go func() {
		defer close(w.done)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			w.stdout.Write(append(sc.Bytes(), '\n'))
			var r app.Report
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				r = app.Report{Error: "not a JSON report: " + sc.Text()}
			}
			w.mu.Lock()
			w.reports = append(w.reports, r)
			w.mu.Unlock()
		}
	}()
	return w
}

func (w *watcher) waitReports(t *testing.T, n int) { w.waitReportsAfter(t, time.Time{}, n) }

// waitReportsAfter waits for n reports that started after since.
func (w *watcher) waitReportsAfter(t *testing.T, since time.Time, n int) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 100*time.Millisecond, 60*time.Second, true, func(context.Context) (bool, error) {
		select {
		case <-w.done:
			return false, fmt.Errorf("the demo exited early: %v", w.cmd.Wait())
		default:
		}
		w.mu.Lock()
		defer w.mu.Unlock()
		got := 0
		for _, r := range w.reports {
			if r.Time.After(since) {
				got++
			}
		}
		return got >= n, nil
	})
	if err != nil {
		t.Fatalf("%s: waiting for %d reports (60 s): %v\n%s", w.via, n, err, w.stderr.String())
	}
}

// stop sends SIGTERM: the demo must exit 0, promptly.
func (w *watcher) stop(t *testing.T) {
	t.Helper()
	start := time.Now()
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	<-w.done
	if err := w.cmd.Wait(); err != nil {
		t.Errorf("%s: after SIGTERM: %v, want exit 0", w.via, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("%s: took %s to stop after SIGTERM", w.via, d)
	}
}

// countFailedAfter returns the number of reports and of failed ones that
// started after since.
func (w *watcher) countFailedAfter(since time.Time) (total, failed int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, r := range w.reports {
		if r.Error != "" && r.Time.After(since) {
			failed++
		}
	}
	return len(w.reports), failed
}

// waitRevoked waits until the API server rejects tok (TokenReview).
func waitRevoked(t *testing.T, tok string) {
	t.Helper()
	err := wait.PollUntilContextTimeout(t.Context(), 200*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		tr, err := client.AuthenticationV1().TokenReviews().Create(ctx,
			&authenticationv1.TokenReview{Spec: authenticationv1.TokenReviewSpec{Token: tok}}, metav1.CreateOptions{})
		return err == nil && !tr.Status.Authenticated, nil
	})
	if err != nil {
		t.Fatal("the old token is still accepted 60 s after its Secret was deleted")
	}
}

// podCommand runs the demo as if in a pod (hack/as-pod.sh): saDir appears
// at /var/run/secrets/kubernetes.io/serviceaccount in a private mount
// namespace, and env is its only environment besides PATH. Nothing on the
// host changes.
func podCommand(demoBin, saDir string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(asPod, append([]string{saDir, demoBin}, args...)...)
	cmd.Env = append([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, env...)
	return cmd
}

// asPod is hack/as-pod.sh; tests run in e2e/.
var asPod, _ = filepath.Abs(filepath.Join("..", "hack", "as-pod.sh"))

var (
	demoOnce  sync.Once
	builtDemo string
	demoErr   error
)

// buildDemo builds ./cmd/demo for this host, once.
func buildDemo(t *testing.T) string {
	t.Helper()
	demoOnce.Do(func() {
		dir, err := os.MkdirTemp("", "incluster-e2e-demo")
		if err != nil {
			demoErr = err
			return
		}
		builtDemo = filepath.Join(dir, "demo")
		out, err := exec.Command("go", "build", "-o", builtDemo, "github.com/incluster/incluster/cmd/demo").CombinedOutput()
		if err != nil {
			demoErr = fmt.Errorf("go build ./cmd/demo: %v\n%s", err, out)
		}
	})
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	return builtDemo
}

// writeAtomic replaces dir/name as the kubelet does: a new file renamed
// over the old one.
func writeAtomic(t *testing.T, dir, name, data string) {
	t.Helper()
	tmp := filepath.Join(dir, "."+name+".new")
	if err := os.WriteFile(tmp, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		t.Fatal(err)
	}
}
