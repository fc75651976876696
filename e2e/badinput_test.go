// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"bytes"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var update = flag.Bool("update", false, "rewrite testdata/badinput.golden from this run (then review its diff line by line: see TestBadInput)")

// TestBadInput runs the demo as if in a pod (podCommand) with one thing
// wrong at a time (the environment, the token, the CA, the namespace, the
// API server's answer, the command line) and compares the exit code and
// the whole stderr with testdata/badinput.golden. Real tokens and the real
// API server are used where the failure is the server's (garbage, revoked
// token; wrong CA); a fake
// server on 127.0.0.1 or ::1 gives the answers a real one will not give
// on demand (403 for /api, 404, 429, 500, HTML, a hang, an expired token's
// 401). No output may contain a token.
//
// The golden file is the specification of these messages, so a change to
// it is reviewed as a change of behaviour: edit it by hand with the code
// change that causes it, in the same commit, and read its diff
// (git diff e2e/testdata/badinput.golden) line by line: each changed line
// must follow from that code change, and none may change that it does not
// explain (a hint that is now wrong for one of the cases, an exit code, a
// lost message). -update only writes what this run printed: use it to see
// what a run prints, never as the way a change lands; a rewritten file
// still gets the same line-by-line reading before it is committed.
func TestBadInput(t *testing.T) {
	h := newHostPod(t, "badinput")
	good := h.token("anchor-good")
	revoked := h.token("anchor-revoked")
	if err := client.CoreV1().Secrets(h.ns).Delete(t.Context(), "anchor-revoked", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitRevoked(t, revoked)
	demo := buildDemo(t)

	fake := newFakeServer(t, "127.0.0.1:0")
	fake6 := newFakeServer(t, "[::1]:0")
	fakeCA := fake.caPEM // httptest servers share one CA

	type dirFiles map[string]string // file name -> content; "-" means absent
	base := dirFiles{"token": good, "ca.crt": h.ca, "namespace": h.ns}
	with := func(changes dirFiles) dirFiles {
		d := dirFiles{}
		for k, v := range base {
			d[k] = v
		}
		for k, v := range changes {
			d[k] = v
		}
		return d
	}
	real := []string{"KUBERNETES_SERVICE_HOST=" + h.host, "KUBERNETES_SERVICE_PORT=" + h.port}
	fakeEnv := func(f *fakeServer, status string) []string {
		host, port, _ := net.SplitHostPort(f.addr)
		f.setMode(status)
		return []string{"KUBERNETES_SERVICE_HOST=" + host, "KUBERNETES_SERVICE_PORT=" + port}
	}
	fakeFiles := with(dirFiles{"ca.crt": fakeCA})

	cases := []struct {
		name  string
		files dirFiles
		env   func() []string
		args  []string
	}{
		{"env unset", base, func() []string { return nil }, nil},
		{"env host only", base, func() []string { return real[:1] }, nil},
		{"env port only", base, func() []string { return real[1:] }, nil},
		{"env host garbage", base, func() []string { return []string{"KUBERNETES_SERVICE_HOST=not a host!", real[1]} }, nil},
		{"env port garbage", base, func() []string { return []string{real[0], "KUBERNETES_SERVICE_PORT=https"} }, nil},
		{"env port zero", base, func() []string { return []string{real[0], "KUBERNETES_SERVICE_PORT=0"} }, nil},
		{"env IPv6 host", fakeFiles, func() []string { return fakeEnv(fake6, "ok") }, nil},
		{"token missing", with(dirFiles{"token": "-"}), func() []string { return real }, nil},
		{"token empty", with(dirFiles{"token": ""}), func() []string { return real }, nil},
		{"token garbage", with(dirFiles{"token": "not-a-token"}), func() []string { return real }, nil},
		{"token revoked", with(dirFiles{"token": revoked}), func() []string { return real }, nil},
		{"401 from a fake server (stands in for an expired token: a TokenRequest expires after 10 minutes at the soonest, too long for the suite; the real server rejects a garbage and a revoked token above)", fakeFiles, func() []string { return fakeEnv(fake, "expired") }, nil},
		{"CA missing", with(dirFiles{"ca.crt": "-"}), func() []string { return real }, nil},
		{"CA garbage", with(dirFiles{"ca.crt": "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n"}), func() []string { return real }, nil},
		{"CA wrong", with(dirFiles{"ca.crt": fakeCA}), func() []string { return real }, nil},
		{"namespace missing", with(dirFiles{"namespace": "-"}), func() []string { return real }, nil},
		{"namespace empty", with(dirFiles{"namespace": "\n"}), func() []string { return real }, nil},
		{"namespace invalid", with(dirFiles{"namespace": "Not_A_Namespace"}), func() []string { return real }, nil},
		{"POD_NAMESPACE invalid", base, func() []string { return append([]string{"POD_NAMESPACE=-bad-"}, real...) }, nil},
		{"server 403", fakeFiles, func() []string { return fakeEnv(fake, "403") }, nil},
		{"server 404", fakeFiles, func() []string { return fakeEnv(fake, "404") }, nil},
		{"server 429", fakeFiles, func() []string { return fakeEnv(fake, "429") }, nil},
		{"server 500", fakeFiles, func() []string { return fakeEnv(fake, "500") }, nil},
		{"server HTML", fakeFiles, func() []string { return fakeEnv(fake, "html") }, []string{"--via=rest", "--server=" + fake.addr}},
		{"server HTML (client-go)", fakeFiles, func() []string { return fakeEnv(fake, "html") }, nil},
		{"server hangs", fakeFiles, func() []string { return fakeEnv(fake, "hang") }, nil},
		{"flag unknown", base, func() []string { return real }, []string{"--bogus"}},
		{"flag value unknown", base, func() []string { return real }, []string{"--via=curl"}},
		{"flag output unknown", base, func() []string { return real }, []string{"-o", "yaml"}},
		{"flag interval invalid", base, func() []string { return real }, []string{"--watch", "--interval=0s"}},
	}

	var got bytes.Buffer
	for _, c := range cases {
		dir := t.TempDir()
		for name, content := range c.files {
			if content != "-" {
				writeAtomic(t, dir, name, content)
			}
		}
		var stdout, stderr bytes.Buffer
		cmd := podCommand(demo, dir, c.env(), c.args...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		err := cmd.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		for _, tok := range []string{good, revoked} {
			if strings.Contains(stdout.String()+stderr.String(), tok) {
				t.Errorf("%s: the output contains a token", c.name)
			}
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("%s: took %s", c.name, d)
		}
		// Variable parts: the namespace, the servers' addresses.
		msg := strings.NewReplacer(h.ns, "NAMESPACE", fake.addr, "FAKE", fake6.addr, "FAKE6",
			net.JoinHostPort(h.host, h.port), "APISERVER").Replace(stderr.String())
		fmt.Fprintf(&got, "## %s: exit %d\n%s\n", c.name, code, msg)
	}

	golden := filepath.Join("testdata", "badinput.golden")
	if *update {
		if err := os.WriteFile(golden, got.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -run TestBadInput -update once)", err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		t.Errorf("exit codes and messages differ from %s; if the change is intended, edit the file and review its diff line by line (see TestBadInput's comment):\n%s", golden, lineDiff(string(want), got.String()))
	}
	t.Logf("%d bad inputs tried", len(cases))
}

// lineDiff lists the lines of want missing from got and the other way round.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < len(w) || i < len(g); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&b, "line %d\n  want: %s\n  got:  %s\n", i+1, wl, gl)
		}
	}
	return b.String()
}

// fakeServer is a TLS server that answers as setMode says: "ok" (an API
// server), an HTTP status, "expired" (the 401 of an expired token), "html"
// (a login page) or "hang" (never answers).
type fakeServer struct {
	addr  string
	caPEM string
	mode  chan string // holds the current mode
}

func newFakeServer(t *testing.T, listen string) *fakeServer {
	t.Helper()
	l, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatalf("listen on %s: %v", listen, err)
	}
	f := &fakeServer{addr: l.Addr().String(), mode: make(chan string, 1)}
	f.mode <- "ok"
	srv := httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	srv.Listener.Close()
	srv.Listener = l
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	var b bytes.Buffer
	_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	f.caPEM = b.String()
	return f
}

func (f *fakeServer) setMode(m string) { <-f.mode; f.mode <- m }

func (f *fakeServer) getMode() string { m := <-f.mode; f.mode <- m; return m }

func (f *fakeServer) serve(w http.ResponseWriter, r *http.Request) {
	status := func(code int, reason, msg string) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":%q,"reason":%q,"code":%d}`, msg, reason, code)
	}
	switch m := f.getMode(); m {
	case "ok":
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api":
			fmt.Fprint(w, `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"[fd00::1]:6443"}]}`)
		case "/version":
			fmt.Fprint(w, `{"major":"1","minor":"37","gitVersion":"v1.37.2"}`)
		case "/apis/authentication.k8s.io/v1/selfsubjectreviews":
			fmt.Fprint(w, `{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","status":{"userInfo":{"username":"system:serviceaccount:fake:demo"}}}`)
		case "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
			fmt.Fprint(w, `{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","status":{"allowed":false}}`)
		default:
			http.NotFound(w, r)
		}
	case "expired":
		status(401, "Unauthorized", "Unauthorized")
	case "403":
		status(403, "Forbidden", "forbidden: User \"system:serviceaccount:fake:demo\" cannot get path \""+r.URL.Path+"\"")
	case "404":
		status(404, "NotFound", "the server could not find the requested resource")
	case "429":
		w.Header().Set("Retry-After", "0")
		status(429, "TooManyRequests", "too many requests, please try again later")
	case "500":
		status(500, "InternalError", "Internal error occurred: etcd is unhappy")
	case "html":
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><body>Please log in</body></html>")
	case "hang":
		<-r.Context().Done()
	default:
		panic("fakeServer: unknown mode " + m)
	}
}
