// SPDX-License-Identifier: Apache-2.0

package app

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

const testToken = "tok-SECRET-4711" // must never appear in any output

const apiDoc = `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"10.0.0.1:6443"}]}`

// fakeAPI answers the demo's requests like an API server would, or with
// status for every request when status is not 0.
type fakeAPI struct {
	status   atomic.Int32
	requests atomic.Int32
	conns    atomic.Int32 // connections accepted
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	if r.Header.Get("Authorization") != "" && r.Header.Get("Authorization") != "Bearer "+testToken {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	if s := int(f.status.Load()); s != 0 {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s)
		fmt.Fprintf(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","message":"fake failure","code":%d}`, s)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	switch r.URL.Path {
	case "/api":
		fmt.Fprint(w, apiDoc)
	case "/version":
		fmt.Fprint(w, `{"major":"1","minor":"37","gitVersion":"v1.37.2"}`)
	case "/apis/authentication.k8s.io/v1/selfsubjectreviews":
		fmt.Fprint(w, `{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","status":{"userInfo":{"username":"system:serviceaccount:demo-ns:demo","groups":["system:serviceaccounts","system:authenticated"]}}}`)
	case "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
		fmt.Fprint(w, `{"kind":"SelfSubjectAccessReview","apiVersion":"authorization.k8s.io/v1","status":{"allowed":true}}`)
	case "/api/v1/namespaces/demo-ns/pods":
		fmt.Fprint(w, `{"kind":"PodList","apiVersion":"v1","items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}`)
	case "/api/v1/namespaces/other/pods":
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,`+
			`"message":"pods is forbidden: User \"system:serviceaccount:demo-ns:demo\" cannot list resource \"pods\" in API group \"\" in the namespace \"other\""}`)
	default:
		http.NotFound(w, r)
	}
}

// notInPod clears what would make the demo think it runs in a pod.
func notInPod(t *testing.T) {
	t.Helper()
	for _, v := range []string{"KUBERNETES_SERVICE_HOST", "KUBERNETES_SERVICE_PORT", "POD_NAMESPACE", "KUBECONFIG"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
	t.Setenv("HOME", t.TempDir())
}

// startAPI starts a TLS fake API server on 127.0.0.1 and writes a kubeconfig
// and a service-account directory for it.
func startAPI(t *testing.T) (f *fakeAPI, srv *httptest.Server, kubeconfig, saDir string) {
	t.Helper()
	f = &fakeAPI{}
	srv = httptest.NewUnstartedServer(f)
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			f.conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	dir := t.TempDir()
	kubeconfig = filepath.Join(dir, "kubeconfig")
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: %q, certificate-authority: %q}
users:
- name: u
  user: {token: %q}
contexts:
- name: x
  context: {cluster: c, user: u, namespace: demo-ns}
current-context: x
`, srv.URL, filepath.Join(dir, "ca.crt"), testToken)
	saDir = filepath.Join(dir, "sa")
	must(t, os.Mkdir(saDir, 0o755))
	for name, data := range map[string][]byte{
		kubeconfig:                        []byte(kc),
		filepath.Join(dir, "ca.crt"):      ca,
		filepath.Join(saDir, "ca.crt"):    ca,
		filepath.Join(saDir, "token"):     []byte(testToken),
		filepath.Join(saDir, "namespace"): []byte("demo-ns\n"),
	} {
		must(t, os.WriteFile(name, data, 0o600))
	}
	return f, srv, kubeconfig, saDir
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func run(t *testing.T, ctx context.Context, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Run(ctx, args, &out, &errb)
	for _, s := range []string{out.String(), errb.String()} {
		if strings.Contains(s, testToken) {
			t.Errorf("output contains the token:\n%s", s)
		}
	}
	return code, out.String(), errb.String()
}

func decode(t *testing.T, line string) Report {
	t.Helper()
	var r Report
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		t.Fatalf("not a JSON report: %v\n%s", err, line)
	}
	return r
}

func TestRunReports(t *testing.T) {
	notInPod(t)
	_, srv, kubeconfig, saDir := startAPI(t)
	old := serviceAccountDir
	serviceAccountDir = saDir
	t.Cleanup(func() { serviceAccountDir = old })
	host := strings.TrimPrefix(srv.URL, "https://")

	tests := []struct {
		name     string
		args     []string
		env      map[string]string
		wantNS   string
		wantSrc  string
		wantUser bool
	}{
		{"client-go with kubeconfig", []string{"--kubeconfig", kubeconfig, "-o", "json"}, nil, "demo-ns", "kubeconfig", true},
		{"KUBECONFIG", []string{"--kubeconfig=", "-o", "json"}, map[string]string{"KUBECONFIG": kubeconfig}, "demo-ns", "kubeconfig", true},
		{"POD_NAMESPACE wins", []string{"--kubeconfig", kubeconfig, "-o", "json"}, map[string]string{"POD_NAMESPACE": "other"}, "other", "POD_NAMESPACE", true},
		{"rest", []string{"--via=rest", "--server", host, "-o", "json"}, nil, "demo-ns", "serviceaccount-file", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			code, out, errOut := run(t, t.Context(), tt.args...)
			if code != ExitOK || errOut != "" {
				t.Fatalf("exit %d, stderr %q", code, errOut)
			}
			r := decode(t, out)
			if r.Namespace != tt.wantNS || r.NamespaceSource != tt.wantSrc {
				t.Errorf("namespace %q from %q, want %q from %q", r.Namespace, r.NamespaceSource, tt.wantNS, tt.wantSrc)
			}
			if r.APIVersions == nil || r.APIVersions.Kind != "APIVersions" || len(r.APIVersions.ServerAddressByClientCIDRs) != 1 ||
				r.APIVersions.ServerAddressByClientCIDRs[0].ServerAddress != "10.0.0.1:6443" {
				t.Errorf("apiVersions = %+v", r.APIVersions)
			}
			if r.ServerVersion != "v1.37.2" {
				t.Errorf("serverVersion = %q", r.ServerVersion)
			}
			if tt.wantUser {
				if r.User == nil || r.User.Username != "system:serviceaccount:demo-ns:demo" {
					t.Errorf("user = %+v", r.User)
				}
				if r.CanListPods == nil || !*r.CanListPods {
					t.Errorf("canListPods = %v", r.CanListPods)
				}
			}
			if r.Error != "" {
				t.Errorf("error = %q", r.Error)
			}
		})
	}
}

func TestRunReadPods(t *testing.T) {
	notInPod(t)
	_, _, kubeconfig, _ := startAPI(t)
	code, out, errOut := run(t, t.Context(), "--kubeconfig", kubeconfig, "-o", "json", "--read-pods=demo-ns")
	if r := decode(t, out); code != ExitOK || r.Pods == nil || *r.Pods != (Pods{Namespace: "demo-ns", Count: 2}) {
		t.Errorf("exit %d, pods %+v, stderr %q", code, r.Pods, errOut)
	}
	code, out, errOut = run(t, t.Context(), "--kubeconfig", kubeconfig, "-o", "json", "--read-pods=other")
	r := decode(t, out)
	if code != ExitAPI || r.Pods != nil || r.APIVersions == nil {
		t.Errorf("exit %d, pods %+v, want exit %d and no pods", code, r.Pods, ExitAPI)
	}
	// A namespaced request: a Role and RoleBinding in that namespace grant it.
	const hint = "(HTTP 403: the service account lacks RBAC permission in namespace other: grant it with a Role and RoleBinding in other (see deploy/))"
	for _, want := range []string{"readPods: list pods in namespace other", "cannot list resource", hint} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr %q lacks %q", errOut, want)
		}
	}
}

func TestRunText(t *testing.T) {
	notInPod(t)
	_, _, kubeconfig, _ := startAPI(t)
	code, out, _ := run(t, t.Context(), "--kubeconfig", kubeconfig)
	if code != ExitOK {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"via:", "client-go", "namespace:", "demo-ns (from kubeconfig)", "api versions:", "10.0.0.1:6443", "can list pods:", "yes", "v1.37.2"} {
		if !strings.Contains(out, want) {
			t.Errorf("text output lacks %q:\n%s", want, out)
		}
	}
}

func TestRunProxy(t *testing.T) {
	notInPod(t)
	t.Setenv("POD_NAMESPACE", "demo-ns")
	f := &fakeAPI{}
	srv := httptest.NewServer(f) // plain HTTP on 127.0.0.1, as kubectl proxy
	defer srv.Close()
	code, out, errOut := run(t, t.Context(), "--via=proxy", "--proxy-url="+srv.URL, "-o=json")
	if code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if r := decode(t, out); r.Via != "proxy" || r.APIVersions == nil || r.User == nil {
		t.Errorf("report = %+v", r)
	}
}

func TestRunAPIErrors(t *testing.T) {
	notInPod(t)
	f, _, kubeconfig, _ := startAPI(t)
	tests := []struct {
		status int
		want   string
	}{
		{401, "401"},
		{403, "403"},
		{404, "404"},
		{429, "429"},
		{500, "500"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			f.status.Store(int32(tt.status))
			defer f.status.Store(0)
			code, out, errOut := run(t, t.Context(), "--kubeconfig", kubeconfig, "-o", "json")
			if code != ExitAPI {
				t.Errorf("exit %d, want %d", code, ExitAPI)
			}
			r := decode(t, out)
			if r.Error == "" || !strings.Contains(r.Error, "apiVersions:") {
				t.Errorf("report error = %q", r.Error)
			}
			lines := strings.Split(strings.TrimSpace(errOut), "\n")
			if len(lines) != 4 {
				t.Errorf("want one stderr line per failed step (4), got %d:\n%s", len(lines), errOut)
			}
			for _, l := range lines {
				if !strings.HasPrefix(l, "demo: ") || !strings.Contains(l, tt.want) {
					t.Errorf("stderr line %q lacks %q", l, tt.want)
				}
			}
		})
	}
}

func TestRunConfigErrors(t *testing.T) {
	notInPod(t)
	_, srv, _, saDir := startAPI(t)
	old := serviceAccountDir
	t.Cleanup(func() { serviceAccountDir = old })
	host := strings.TrimPrefix(srv.URL, "https://")

	emptyTokenDir := t.TempDir()
	for _, n := range []string{"ca.crt", "namespace"} {
		b, _ := os.ReadFile(filepath.Join(saDir, n))
		must(t, os.WriteFile(filepath.Join(emptyTokenDir, n), b, 0o600))
	}
	must(t, os.WriteFile(filepath.Join(emptyTokenDir, "token"), nil, 0o600))

	tests := []struct {
		name  string
		args  []string
		dir   string
		wants []string
	}{
		{"not in a pod", nil, saDir, []string{"KUBERNETES_SERVICE_HOST", "not running in a Kubernetes pod", "; " + fixNotInPod}},
		{"kubeconfig missing", []string{"--kubeconfig", "/nonexistent/kubeconfig"}, saDir, []string{"/nonexistent/kubeconfig"}},
		{"rest, empty token", []string{"--via=rest", "--server", host}, emptyTokenDir, []string{"token", "empty"}},
		{"rest, no service account", []string{"--via=rest", "--server", host}, t.TempDir(), []string{"token", "automountServiceAccountToken"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serviceAccountDir = tt.dir
			code, _, errOut := run(t, t.Context(), tt.args...)
			if code != ExitConfig {
				t.Errorf("exit %d, want %d; stderr %q", code, ExitConfig, errOut)
			}
			if strings.Count(errOut, "\n") != 1 {
				t.Errorf("want one line on stderr, got %q", errOut)
			}
			for _, w := range tt.wants {
				if !strings.Contains(errOut, w) {
					t.Errorf("stderr %q lacks %q", errOut, w)
				}
			}
			// The demo's user has flags, not the library's options.
			if strings.Contains(errOut, "WithKubeconfig") {
				t.Errorf("stderr %q names the library's option, not the demo's flag", errOut)
			}
		})
	}
}

func TestRunUsage(t *testing.T) {
	notInPod(t)
	tests := [][]string{
		{"--bogus"},
		{"--via=curl"},
		{"-o", "yaml"},
		{"--interval=0s"},
		{"--interval=soon"},
		{"extra"},
		{"--via=rest", "--kubeconfig=x"},
		{"--proxy-url=http://127.0.0.1:1"},
		{"--server=x:1"},
		{"--watch=maybe"},
		{"--read-pods=Not_A_Namespace"},
		{"--via=rest", "--read-pods=x"},
		{"--api-versions-only", "--read-pods=x"},
	}
	for _, args := range tests {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			code, out, errOut := run(t, t.Context(), args...)
			if code != ExitUsage {
				t.Errorf("exit %d, want %d", code, ExitUsage)
			}
			if out != "" || strings.Count(errOut, "\n") != 1 || !strings.Contains(errOut, "demo --help") {
				t.Errorf("stdout %q, stderr %q", out, errOut)
			}
		})
	}
}

func TestRunHelp(t *testing.T) {
	code, out, _ := run(t, t.Context(), "--help")
	if code != ExitOK || !strings.Contains(out, "Exit codes:") || !strings.Contains(out, "--via") {
		t.Errorf("exit %d, help:\n%s", code, out)
	}
}

func TestRunWatchStopsOnCancel(t *testing.T) {
	notInPod(t)
	f, _, kubeconfig, _ := startAPI(t)
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb bytes.Buffer
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"--kubeconfig", kubeconfig, "-o", "json", "--watch", "--interval=20ms"}, &out, &errb)
	}()
	for f.requests.Load() < 12 { // three reports of four requests
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case code := <-done:
		if code != ExitOK {
			t.Errorf("exit %d after cancel, want 0", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not stop after cancel")
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) < 2 {
		t.Fatalf("want several JSON lines, got %q", out.String())
	}
	for _, l := range lines {
		if r := decode(t, l); r.Error != "" {
			t.Errorf("report error %q", r.Error)
		}
	}
}

func TestRunWatchKeepsGoingOnErrors(t *testing.T) {
	notInPod(t)
	f, _, kubeconfig, _ := startAPI(t)
	f.status.Store(503)
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb bytes.Buffer
	done := make(chan int)
	go func() {
		done <- Run(ctx, []string{"--kubeconfig", kubeconfig, "-o", "json", "--watch", "--interval=20ms"}, &out, &errb)
	}()
	for f.requests.Load() < 8 {
		time.Sleep(5 * time.Millisecond)
	}
	f.status.Store(0)
	start := f.requests.Load()
	for f.requests.Load() < start+8 {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != ExitOK {
		t.Errorf("exit %d, want 0", code)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if first, last := decode(t, lines[0]), decode(t, lines[len(lines)-1]); first.Error == "" || last.Error != "" {
		t.Errorf("first report error %q (want one), last %q (want none)", first.Error, last.Error)
	}
}
