// SPDX-License-Identifier: Apache-2.0

package direct

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	"github.com/incluster/incluster/internal/testca"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// testToken is recognisable so that a test can tell if it leaks.
const testToken = "tok-SECRET-123"

const apiVersionsJSON = `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"10.0.0.1:6443"}]}`

var wantAPIVersions = &metav1.APIVersions{
	TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
	Versions: []string{"v1"},
	ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{
		{ClientCIDR: "0.0.0.0/0", ServerAddress: "10.0.0.1:6443"},
	},
}

// seen is what a test server recorded of the last request.
type seen struct {
	mu                        sync.Mutex
	method, path              string
	auth, accept, userAgent   string
	requests                  int
	authorizationHeaderValues []string
}

func (s *seen) record(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.method, s.path = r.Method, r.URL.Path
	s.auth, s.accept, s.userAgent = r.Header.Get("Authorization"), r.Header.Get("Accept"), r.Header.Get("User-Agent")
	s.authorizationHeaderValues = r.Header.Values("Authorization")
	s.requests++
}

func (s *seen) get() seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return seen{method: s.method, path: s.path, auth: s.auth, accept: s.accept, userAgent: s.userAgent,
		requests: s.requests, authorizationHeaderValues: s.authorizationHeaderValues}
}

// startTLS starts an HTTPS test server on l (127.0.0.1:0 if nil) that
// records each request in s and hands it to h.
func startTLS(t *testing.T, l net.Listener, s *seen, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s != nil {
			s.record(r)
		}
		h(w, r)
	}))
	// The server's own complaints (a client refusing its certificate) are
	// expected; the tests check what the client reports.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if l != nil {
		srv.Listener.Close()
		srv.Listener = l
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// saDir writes a service-account directory trusting srv's certificate and
// holding token.
func saDir(t *testing.T, srv *httptest.Server, token string) string {
	t.Helper()
	dir := t.TempDir()
	writeCA(t, dir, srv.Certificate())
	writeToken(t, dir, token)
	return dir
}

func writeCA(t *testing.T, dir string, cert *x509.Certificate) {
	t.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
	if err := os.WriteFile(filepath.Join(dir, serviceaccount.CAFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func writeToken(t *testing.T, dir, token string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, serviceaccount.TokenFile), []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
}

// newClient returns a client for srv with a fresh service-account directory.
func newClient(t *testing.T, srv *httptest.Server, opts Options) *Client {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = saDir(t, srv, testToken+"\n")
	}
	if opts.Host == "" {
		opts.Host = srv.Listener.Addr().String()
	}
	c, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// reply writes a canned answer.
func reply(code int, contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}
}

func status(code int, reason, message string) string {
	b, _ := json.Marshal(metav1.Status{TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
		Status: metav1.StatusFailure, Message: message, Reason: metav1.StatusReason(reason), Code: int32(code)})
	return string(b)
}

// noToken fails the test if err mentions the token.
func noToken(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	for _, format := range []string{"%v", "%+v", "%q"} {
		if s := fmt.Sprintf(format, err); strings.Contains(s, "SECRET") {
			t.Errorf("the error (%s) mentions the token: %s", format, s)
		}
	}
}

func TestAPIVersions(t *testing.T) {
	var s seen
	srv := startTLS(t, nil, &s, reply(http.StatusOK, "application/json", apiVersionsJSON))
	c := newClient(t, srv, Options{})
	got, err := c.APIVersions(t.Context())
	if err != nil {
		t.Fatalf("APIVersions: %v", err)
	}
	if !reflect.DeepEqual(got, wantAPIVersions) {
		t.Errorf("APIVersions = %#v, want %#v", got, wantAPIVersions)
	}
	r := s.get()
	checks := []struct{ name, got, want string }{
		{"method", r.method, http.MethodGet},
		{"path", r.path, "/api"},
		{"Authorization", r.auth, "Bearer " + testToken}, // the file's newline trimmed
		{"Accept", r.accept, "application/json"},
		{"User-Agent", r.userAgent, "incluster-direct"},
	}
	for _, ck := range checks {
		if ck.got != ck.want {
			t.Errorf("request %s = %q, want %q", ck.name, ck.got, ck.want)
		}
	}
	if n := len(r.authorizationHeaderValues); n != 1 {
		t.Errorf("%d Authorization headers, want 1", n)
	}
	if want := "https://" + srv.Listener.Addr().String(); c.URL() != want {
		t.Errorf("URL() = %q, want %q", c.URL(), want)
	}
}

func TestAPIVersionsAnswers(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    *metav1.APIVersions
		errHas  []string // parts of the error, with {base} for the server's URL
	}{
		{name: "JSON with charset", handler: reply(http.StatusOK, "application/json; charset=utf-8", apiVersionsJSON), want: wantAPIVersions},
		{name: "no addresses", handler: reply(http.StatusOK, "application/json", `{"kind":"APIVersions","versions":["v1"]}`),
			want: &metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"}}},
		{name: "text/plain", handler: reply(http.StatusOK, "text/plain; charset=utf-8", "ok"),
			errHas: []string{"GET {base}/api: ", `the answer is "text/plain", not JSON; is {base} a Kubernetes API server?`}},
		{name: "HTML", handler: reply(http.StatusOK, "text/html", "<html><body>Sign in</body></html>"),
			errHas: []string{"GET {base}/api: ", `the answer is "text/html", not JSON; is {base} a Kubernetes API server?`}},
		{name: "no content type", handler: func(w http.ResponseWriter, _ *http.Request) {
			w.Header()["Content-Type"] = nil // no sniffing
			fmt.Fprint(w, apiVersionsJSON)
		}, errHas: []string{`the answer is "", not JSON`}},
		{name: "broken JSON", handler: reply(http.StatusOK, "application/json", `{"kind":"APIVers`),
			errHas: []string{"GET {base}/api: the answer is not valid JSON: "}},
		{name: "another kind", handler: reply(http.StatusOK, "application/json", `{"kind":"Status","apiVersion":"v1"}`),
			errHas: []string{`GET {base}/api: the answer is not an APIVersions document (kind "Status"); is {base} a Kubernetes API server?`}},
		{name: "no kind", handler: reply(http.StatusOK, "application/json", `{"versions":["v1"]}`),
			errHas: []string{`not an APIVersions document (kind "")`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startTLS(t, nil, nil, tt.handler)
			c := newClient(t, srv, Options{})
			got, err := c.APIVersions(t.Context())
			if tt.errHas == nil {
				if err != nil || !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("APIVersions = %#v, %v; want %#v", got, err, tt.want)
				}
				return
			}
			if err == nil || got != nil {
				t.Fatalf("APIVersions = %#v, %v; want an error", got, err)
			}
			for _, part := range tt.errHas {
				if part = strings.ReplaceAll(part, "{base}", c.URL()); !strings.Contains(err.Error(), part) {
					t.Errorf("error %q lacks %q", err, part)
				}
			}
			var se *StatusError
			if errors.As(err, &se) {
				t.Errorf("a 200 answer gave a StatusError: %v", err)
			}
			noToken(t, err)
		})
	}
}

func TestBrokenJSONWrapsSyntaxError(t *testing.T) {
	srv := startTLS(t, nil, nil, reply(http.StatusOK, "application/json", `[1,2`))
	c := newClient(t, srv, Options{})
	_, err := c.APIVersions(t.Context())
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		t.Errorf("error %v does not wrap a *json.SyntaxError", err)
	}
}

func TestStatusErrors(t *testing.T) {
	const (
		// The same words as package incluster's (one table: pkg/internal/hint).
		hint401 = " (the API server rejected the credentials: the service-account token is expired, revoked or for another cluster; check the token mount (or the kubeconfig's user))"
		hint403 = " (" + forbiddenNonResource + ")" // GET /api
		hint404 = " (the API server does not serve this path: check the host and the server version)"
		hint429 = " (the API server is shedding load (API Priority and Fairness): retry later)"
		hint5xx = " (the API server failed: retry later, and check its logs)"
	)
	forbidden := `forbidden: User "system:serviceaccount:default:default" cannot get path "/api"`
	tests := []struct {
		name        string
		handler     http.HandlerFunc
		code        int
		message     string
		wantSuffix  string // after "GET <url>: "
		wantNoHints bool
	}{
		{name: "401", handler: reply(401, "application/json", status(401, "Unauthorized", "Unauthorized")),
			code: 401, message: "Unauthorized", wantSuffix: "401 Unauthorized: Unauthorized" + hint401},
		{name: "401 without body", handler: reply(401, "", ""),
			code: 401, wantSuffix: "401 Unauthorized" + hint401},
		{name: "403", handler: reply(403, "application/json", status(403, "Forbidden", forbidden)),
			code: 403, message: forbidden, wantSuffix: "403 Forbidden: " + forbidden + hint403},
		{name: "404 text", handler: reply(404, "text/plain; charset=utf-8", "404 page not found\n"),
			code: 404, wantSuffix: "404 Not Found" + hint404},
		{name: "404 Status", handler: reply(404, "application/json", status(404, "NotFound", "the server could not find the requested resource")),
			code: 404, message: "the server could not find the requested resource", wantSuffix: "404 Not Found: the server could not find the requested resource" + hint404},
		{name: "429", handler: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Retry-After", "1")
			reply(429, "application/json", status(429, "TooManyRequests", "too many requests, please try again later"))(w, r)
		}, code: 429, message: "too many requests, please try again later", wantSuffix: "429 Too Many Requests: too many requests, please try again later" + hint429},
		{name: "500", handler: reply(500, "application/json", status(500, "InternalError", "etcdserver: request timed out")),
			code: 500, message: "etcdserver: request timed out", wantSuffix: "500 Internal Server Error: etcdserver: request timed out" + hint5xx},
		{name: "500 HTML", handler: reply(500, "text/html", "<html>Bad gateway</html>"),
			code: 500, wantSuffix: "500 Internal Server Error" + hint5xx},
		{name: "503", handler: reply(503, "", ""), code: 503, wantSuffix: "503 Service Unavailable" + hint5xx},
		{name: "409", handler: reply(409, "application/json", status(409, "Conflict", "conflict")),
			code: 409, message: "conflict", wantSuffix: "409 Conflict: conflict", wantNoHints: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startTLS(t, nil, nil, tt.handler)
			c := newClient(t, srv, Options{})
			got, err := c.APIVersions(t.Context())
			if err == nil || got != nil {
				t.Fatalf("APIVersions = %#v, %v; want a StatusError", got, err)
			}
			var se *StatusError
			if !errors.As(err, &se) {
				t.Fatalf("error %v (%T) is not a *StatusError", err, err)
			}
			want := &StatusError{URL: c.URL() + "/api", Code: tt.code, Message: tt.message}
			if *se != *want {
				t.Errorf("StatusError = %+v, want %+v", *se, *want)
			}
			if wantMsg := "GET " + c.URL() + "/api: " + tt.wantSuffix; err.Error() != wantMsg {
				t.Errorf("Error() =\n%q, want\n%q", err, wantMsg)
			}
			if tt.wantNoHints && strings.Contains(err.Error(), " (") {
				t.Errorf("Error() %q has a hint", err)
			}
			var ce *serviceaccount.ConfigError
			if errors.As(err, &ce) {
				t.Errorf("an API failure is a ConfigError: %v", err)
			}
			noToken(t, err)
		})
	}
}

// TestUnwrapURLError: only a *url.Error loses its "Get URL:" prefix; any
// other error, even one that wraps another, is kept whole.
func TestUnwrapURLError(t *testing.T) {
	inner := errors.New("connection refused")
	if got := unwrapURLError(&url.Error{Op: "Get", URL: "https://h/api", Err: inner}); got != inner {
		t.Errorf("*url.Error: got %v, want the error it wraps", got)
	}
	wrapped := fmt.Errorf("reading the token: %w", inner)
	if got := unwrapURLError(wrapped); got != wrapped {
		t.Errorf("a wrapping error that is not a *url.Error: got %v, want it whole", got)
	}
	if got := unwrapURLError(inner); got != inner {
		t.Errorf("a plain error: got %v", got)
	}
}

// TestDefaultTimeout: a zero Options.Timeout is DefaultTimeout.
func TestDefaultTimeout(t *testing.T) {
	srv := startTLS(t, nil, nil, reply(200, "application/json", "{}"))
	if c := newClient(t, srv, Options{}); c.http.Timeout != DefaultTimeout {
		t.Errorf("timeout %v, want %v", c.http.Timeout, DefaultTimeout)
	}
}

// The 403 hints: a Role and RoleBinding grant only requests in their
// namespace; cluster-scoped requests and non-resource URLs (/api, /version)
// need a ClusterRole and ClusterRoleBinding.
const (
	forbiddenNonResource = "the service account lacks RBAC permission for this non-resource URL: grant it with a ClusterRole (nonResourceURLs) and ClusterRoleBinding; a Role and RoleBinding cannot"
	forbiddenCluster     = "the service account lacks RBAC permission for this cluster-scoped request: grant it with a ClusterRole and ClusterRoleBinding; a Role and RoleBinding cannot"
)

func forbiddenIn(ns string) string {
	return "the service account lacks RBAC permission in namespace " + ns + ": grant it with a Role and RoleBinding in " + ns + " (see deploy/)"
}

func TestStatusErrorFormat(t *testing.T) {
	const u = "https://10.96.0.1:443/api"
	tests := []struct {
		err  StatusError
		want string
	}{
		{StatusError{URL: u, Code: 401}, "GET " + u + ": 401 Unauthorized (the API server rejected the credentials: the service-account token is expired, revoked or for another cluster; check the token mount (or the kubeconfig's user))"},
		// The 403 hint depends on what was refused: /api is a non-resource URL.
		{StatusError{URL: u, Code: 403, Message: "no"}, "GET " + u + ": 403 Forbidden: no (" + forbiddenNonResource + ")"},
		{StatusError{URL: "https://10.96.0.1:443/version", Code: 403}, "GET https://10.96.0.1:443/version: 403 Forbidden (" + forbiddenNonResource + ")"},
		{StatusError{URL: "https://10.96.0.1:443/api/v1/nodes", Code: 403}, "GET https://10.96.0.1:443/api/v1/nodes: 403 Forbidden (" + forbiddenCluster + ")"},
		{StatusError{URL: "https://10.96.0.1:443/api/v1/pods", Code: 403}, "GET https://10.96.0.1:443/api/v1/pods: 403 Forbidden (" + forbiddenCluster + ")"},
		{StatusError{URL: "https://10.96.0.1:443/apis/apps/v1/namespaces/team-a/deployments", Code: 403},
			"GET https://10.96.0.1:443/apis/apps/v1/namespaces/team-a/deployments: 403 Forbidden (" + forbiddenIn("team-a") + ")"},
		{StatusError{URL: u, Code: 429}, "GET " + u + ": 429 Too Many Requests (the API server is shedding load (API Priority and Fairness): retry later)"},
		{StatusError{URL: u, Code: 404, Message: "gone"}, "GET " + u + ": 404 Not Found: gone (the API server does not serve this path: check the host and the server version)"},
		{StatusError{URL: u, Code: 302}, "GET " + u + ": 302 Found"},
		{StatusError{URL: u, Code: 599}, "GET " + u + ": 599 "},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.err.Code), func(t *testing.T) {
			if got := tt.err.Error(); got != tt.want {
				t.Errorf("Error() =\n%q, want\n%q", got, tt.want)
			}
		})
	}
}

// hang never answers: when the client goes away or the test ends it drops
// the connection. (Returning normally would send an empty 200, which the
// client can still read while it closes its end after a ctx deadline.)
func hang(t *testing.T) http.HandlerFunc {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // runs before the server's Close
	return func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
		panic(http.ErrAbortHandler) // close the connection without an answer
	}
}

func TestTimeouts(t *testing.T) {
	const hintTimeout = " (the API server did not answer in time: check that it runs and that a NetworkPolicy allows egress to it)"
	tests := []struct {
		name         string
		timeout      time.Duration                                   // Options.Timeout
		ctx          func(context.Context) (context.Context, func()) // nil: t.Context()
		wantIs       error
		wantHint     string
		wantNetError bool
	}{
		{name: "Options.Timeout", timeout: 200 * time.Millisecond, wantHint: hintTimeout, wantNetError: true},
		{name: "ctx deadline", timeout: time.Minute, ctx: func(ctx context.Context) (context.Context, func()) {
			return context.WithTimeout(ctx, 200*time.Millisecond)
		}, wantIs: context.DeadlineExceeded, wantHint: hintTimeout, wantNetError: true},
		{name: "ctx canceled", timeout: time.Minute, ctx: func(ctx context.Context) (context.Context, func()) {
			ctx, cancel := context.WithCancel(ctx)
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}, wantIs: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startTLS(t, nil, nil, hang(t))
			c := newClient(t, srv, Options{Timeout: tt.timeout})
			ctx, cancel := t.Context(), func() {}
			if tt.ctx != nil {
				ctx, cancel = tt.ctx(ctx)
			}
			defer cancel()
			start := time.Now()
			got, err := c.APIVersions(ctx)
			if err == nil || got != nil {
				t.Fatalf("APIVersions = %#v, %v; want an error", got, err)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("it took %v to give up", d)
			}
			if !strings.HasPrefix(err.Error(), "GET "+c.URL()+"/api: ") {
				t.Errorf("error %q does not name the URL", err)
			}
			if strings.Count(err.Error(), c.URL()) != 1 {
				t.Errorf("error %q repeats the URL (url.Error's prefix not dropped)", err)
			}
			if tt.wantHint != "" && !strings.HasSuffix(err.Error(), tt.wantHint) {
				t.Errorf("error %q lacks the hint %q", err, tt.wantHint)
			}
			if tt.wantHint == "" && strings.Contains(err.Error(), " (") {
				t.Errorf("error %q has a hint", err)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, tt.wantIs)
			}
			var ne net.Error
			if tt.wantNetError && (!errors.As(err, &ne) || !ne.Timeout()) {
				t.Errorf("error %v is not a net.Error with Timeout()", err)
			}
			noToken(t, err)
		})
	}
}

func TestWrongCA(t *testing.T) {
	var s seen
	srv := startTLS(t, nil, &s, reply(http.StatusOK, "application/json", apiVersionsJSON))
	dir := t.TempDir()
	writeCA(t, dir, otherCA(t).Cert)
	writeToken(t, dir, testToken)
	c := newClient(t, srv, Options{Dir: dir})
	got, err := c.APIVersions(t.Context())
	if err == nil || got != nil {
		t.Fatalf("APIVersions = %#v, %v; want a certificate error", got, err)
	}
	var cv *tls.CertificateVerificationError
	if !errors.As(err, &cv) {
		t.Errorf("error %v does not wrap a *tls.CertificateVerificationError", err)
	}
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Errorf("error %v does not wrap an x509.UnknownAuthorityError", err)
	}
	caPath := filepath.Join(dir, serviceaccount.CAFile)
	wantHint := " (the server's certificate is not signed by the CA in " + caPath + ": mount this cluster's CA bundle, or check that the host is this cluster's API server)"
	if !strings.HasPrefix(err.Error(), "GET "+c.URL()+"/api: ") || !strings.HasSuffix(err.Error(), wantHint) {
		t.Errorf("error =\n%q, want GET %s/api: ...%s", err, c.URL(), wantHint)
	}
	if !strings.Contains(err.Error(), "x509") {
		t.Errorf("error %q does not say what x509 found", err)
	}
	if n := s.get().requests; n != 0 {
		t.Errorf("the server got %d requests (and the token) despite the bad certificate", n)
	}
	noToken(t, err)
}

// otherCA returns a fresh CA that signed no test server's certificate
// (every httptest server shares one built-in certificate).
func otherCA(t *testing.T) *testca.CA {
	t.Helper()
	return testca.NewCA(t, "some other cluster's CA")
}

func TestConnectionRefused(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	writeCA(t, dir, otherCA(t).Cert)
	writeToken(t, dir, testToken)
	c, err := New(Options{Host: addr, Dir: dir, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.APIVersions(t.Context())
	const hint = " (cannot reach the API server: check the host name, cluster DNS, and NetworkPolicies that restrict egress)"
	if err == nil || !strings.HasSuffix(err.Error(), hint) {
		t.Fatalf("error = %v, want the hint %q", err, hint)
	}
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" {
		t.Errorf("error %v does not wrap a dial *net.OpError", err)
	}
	noToken(t, err)
}

func TestServerVersion(t *testing.T) {
	info := version.Info{Major: "1", Minor: "37", GitVersion: "v1.37.2", GitCommit: "abc123", GitTreeState: "clean",
		BuildDate: "2026-07-01T00:00:00Z", GoVersion: "go1.26.8", Compiler: "gc", Platform: "linux/amd64"}
	body, _ := json.Marshal(info)
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    *version.Info
		code    int // StatusError code on error
		errHas  string
	}{
		{name: "ok", handler: reply(200, "application/json", string(body)), want: &info},
		{name: "403", handler: reply(403, "application/json", status(403, "Forbidden", "forbidden")), code: 403,
			errHas: "/version: 403 Forbidden: forbidden (" + forbiddenNonResource + ")"},
		{name: "HTML", handler: reply(200, "text/html", "<html/>"), errHas: `/version: the answer is "text/html", not JSON`},
		// JSON, but not a version document: as incluster.ServerVersion says.
		{name: "no gitVersion", handler: reply(200, "application/json", `{"major":"1"}`), errHas: "/version: the answer has no gitVersion; is https://"},
		{name: "other JSON", handler: reply(200, "application/json", `{"kind":"Status"}`), errHas: "no gitVersion"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var s seen
			srv := startTLS(t, nil, &s, tt.handler)
			c := newClient(t, srv, Options{UserAgent: "probe/1.0"})
			got, err := c.ServerVersion(t.Context())
			r := s.get()
			if r.path != "/version" || r.auth != "Bearer "+testToken || r.userAgent != "probe/1.0" {
				t.Errorf("request: path %q, Authorization %q, User-Agent %q", r.path, r.auth, r.userAgent)
			}
			if tt.errHas == "" {
				if err != nil || !reflect.DeepEqual(got, tt.want) {
					t.Fatalf("ServerVersion = %#v, %v; want %#v", got, err, tt.want)
				}
				return
			}
			if err == nil || got != nil {
				t.Fatalf("ServerVersion = %#v, %v; want an error", got, err)
			}
			if !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("error %q lacks %q", err, tt.errHas)
			}
			var se *StatusError
			if got := errors.As(err, &se); got != (tt.code != 0) || (got && se.Code != tt.code) {
				t.Errorf("error %v: StatusError %v, want code %d", err, se, tt.code)
			}
			noToken(t, err)
		})
	}
}

func TestGetDecodesIntoAnyValue(t *testing.T) {
	srv := startTLS(t, nil, nil, reply(200, "application/json", `{"kind":"APIGroupList","groups":[]}`))
	c := newClient(t, srv, Options{})
	var out map[string]any
	if err := c.Get(t.Context(), "/apis", &out); err != nil {
		t.Fatal(err)
	}
	if out["kind"] != "APIGroupList" {
		t.Errorf("decoded %v", out)
	}
}

func TestTokenIsReadPerRequest(t *testing.T) {
	var s seen
	srv := startTLS(t, nil, &s, reply(200, "application/json", apiVersionsJSON))
	dir := saDir(t, srv, "first-token")
	c := newClient(t, srv, Options{Dir: dir})
	if _, err := c.APIVersions(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := s.get().auth; got != "Bearer first-token" {
		t.Errorf("first request: Authorization %q", got)
	}
	writeToken(t, dir, "rotated-token\n")
	if _, err := c.APIVersions(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := s.get().auth; got != "Bearer rotated-token" {
		t.Errorf("after rotation: Authorization %q", got)
	}

	// The token disappears: the request is not sent, the error names the file.
	if err := os.Remove(filepath.Join(dir, serviceaccount.TokenFile)); err != nil {
		t.Fatal(err)
	}
	before := s.get().requests
	_, err := c.APIVersions(t.Context())
	var ce *serviceaccount.ConfigError
	if !errors.As(err, &ce) || !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v is not a ConfigError about a missing file", err)
	}
	if want := filepath.Join(dir, serviceaccount.TokenFile); ce.Source != want {
		t.Errorf("Source = %q, want %q", ce.Source, want)
	}
	if want := "GET " + c.URL() + "/api: " + filepath.Join(dir, serviceaccount.TokenFile) + ": no service-account token is mounted; "; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q does not start with %q", err, want)
	}
	if s.get().requests != before {
		t.Error("a request went out without a token")
	}
}

func TestNewErrors(t *testing.T) {
	goodCA := otherCA(t).PEM
	tests := []struct {
		name    string
		token   *string // nil: no file
		ca      []byte  // nil: no file
		file    string  // the file at fault
		reason  string
		missing bool
	}{
		{name: "no token", ca: goodCA, file: serviceaccount.TokenFile, reason: "no service-account token is mounted", missing: true},
		{name: "empty token", token: ptr("\n"), ca: goodCA, file: serviceaccount.TokenFile, reason: "the service-account token file is empty"},
		{name: "token with a space", token: ptr(testToken + " x"), ca: goodCA, file: serviceaccount.TokenFile, reason: "does not hold a token"},
		{name: "no CA", token: ptr(testToken), file: serviceaccount.CAFile, reason: "no cluster CA bundle is mounted", missing: true},
		{name: "garbage CA", token: ptr(testToken), ca: []byte("garbage"), file: serviceaccount.CAFile, reason: "the CA bundle holds no PEM certificate"},
		{name: "neither", file: serviceaccount.TokenFile, reason: "no service-account token is mounted", missing: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if tt.token != nil {
				writeToken(t, dir, *tt.token)
			}
			if tt.ca != nil {
				if err := os.WriteFile(filepath.Join(dir, serviceaccount.CAFile), tt.ca, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			c, err := New(Options{Host: "10.96.0.1", Dir: dir})
			if err == nil || c != nil {
				t.Fatalf("New = %v, %v; want an error", c, err)
			}
			var ce *serviceaccount.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v (%T) is not a *serviceaccount.ConfigError", err, err)
			}
			if want := filepath.Join(dir, tt.file); ce.Source != want {
				t.Errorf("Source = %q, want %q", ce.Source, want)
			}
			if !strings.Contains(ce.Reason, tt.reason) {
				t.Errorf("Reason %q lacks %q", ce.Reason, tt.reason)
			}
			if ce.Fix == "" {
				t.Error("no Fix")
			}
			if got := errors.Is(err, fs.ErrNotExist); got != tt.missing {
				t.Errorf("errors.Is(err, fs.ErrNotExist) = %v, want %v", got, tt.missing)
			}
			noToken(t, err)
		})
	}
}

func ptr(s string) *string { return &s }

func TestNewHost(t *testing.T) {
	caPEM := otherCA(t).PEM
	dir := t.TempDir()
	writeToken(t, dir, testToken)
	if err := os.WriteFile(filepath.Join(dir, serviceaccount.CAFile), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ host, want string }{
		{"", "https://kubernetes.default.svc:443"},
		{"kubernetes.default.svc", "https://kubernetes.default.svc:443"},
		{"api.example.com:8443", "https://api.example.com:8443"},
		{"10.96.0.1", "https://10.96.0.1:443"},
		{"10.96.0.1:6443", "https://10.96.0.1:6443"},
		{"fd00::1", "https://[fd00::1]:443"},
		{"[fd00::1]", "https://[fd00::1]:443"},
		{"[fd00::1]:6443", "https://[fd00::1]:6443"},
		{"::1", "https://[::1]:443"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			c, err := New(Options{Host: tt.host, Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if c.URL() != tt.want {
				t.Errorf("New(Host: %q).URL() = %q, want %q", tt.host, c.URL(), tt.want)
			}
		})
	}
}

func TestHostFromEnv(t *testing.T) {
	tests := []struct {
		name, host, port string
		want             string
		wantURL          string
		notInPod         bool
		errSource        string
	}{
		{name: "IPv4", host: "10.96.0.1", port: "443", want: "10.96.0.1:443", wantURL: "https://10.96.0.1:443"},
		{name: "IPv6", host: "fd00::1", port: "443", want: "[fd00::1]:443", wantURL: "https://[fd00::1]:443"},
		{name: "IPv6 other port", host: "2001:db8::10", port: "6443", want: "[2001:db8::10]:6443", wantURL: "https://[2001:db8::10]:6443"},
		{name: "unset", notInPod: true, errSource: serviceaccount.HostEnv + " and " + serviceaccount.PortEnv},
		{name: "bad port", host: "fd00::1", port: "+443", errSource: serviceaccount.PortEnv},
	}
	caPEM := otherCA(t).PEM
	dir := t.TempDir()
	writeToken(t, dir, testToken)
	if err := os.WriteFile(filepath.Join(dir, serviceaccount.CAFile), caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(serviceaccount.HostEnv, tt.host)
			t.Setenv(serviceaccount.PortEnv, tt.port)
			got, err := HostFromEnv()
			if tt.errSource != "" {
				var ce *serviceaccount.ConfigError
				if !errors.As(err, &ce) || ce.Source != tt.errSource {
					t.Fatalf("HostFromEnv() = %q, %v; want a ConfigError about %s", got, err, tt.errSource)
				}
				if errors.Is(err, serviceaccount.ErrNotInPod) != tt.notInPod {
					t.Errorf("errors.Is(err, ErrNotInPod) = %v, want %v", !tt.notInPod, tt.notInPod)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("HostFromEnv() = %q, %v; want %q", got, err, tt.want)
			}
			c, err := New(Options{Host: got, Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if c.URL() != tt.wantURL {
				t.Errorf("URL() = %q, want %q", c.URL(), tt.wantURL)
			}
		})
	}
}

// listenIPv6 listens on [::1]:0; without ::1 the test fails, or skips if INCLUSTER_NO_IPV6=1.
func listenIPv6(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp6", "[::1]:0")
	if err == nil {
		return l
	}
	if os.Getenv("INCLUSTER_NO_IPV6") == "1" {
		t.Skipf("skipped: INCLUSTER_NO_IPV6=1 and ::1 is not available (%v); TestNewHost and TestHostFromEnv still cover IPv6 host strings", err)
	}
	t.Fatalf("::1 is not available (%v): enable IPv6 on lo (sysctl -w net.ipv6.conf.lo.disable_ipv6=0), or set INCLUSTER_NO_IPV6=1 to skip the tests that need it", err)
	return nil
}

func TestIPv6(t *testing.T) {
	var s seen
	srv := startTLS(t, listenIPv6(t), &s, reply(200, "application/json", apiVersionsJSON))
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	dir := saDir(t, srv, testToken)

	// The way a pod does it: from the kubelet's variables.
	t.Setenv(serviceaccount.HostEnv, "::1")
	t.Setenv(serviceaccount.PortEnv, fmt.Sprint(port))
	host, err := HostFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("[::1]:%d", port); host != want {
		t.Fatalf("HostFromEnv() = %q, want %q", host, want)
	}
	c, err := New(Options{Host: host, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("https://[::1]:%d", port); c.URL() != want {
		t.Errorf("URL() = %q, want %q", c.URL(), want)
	}
	got, err := c.APIVersions(t.Context())
	if err != nil {
		t.Fatalf("APIVersions over IPv6: %v", err)
	}
	if !reflect.DeepEqual(got, wantAPIVersions) {
		t.Errorf("APIVersions = %#v", got)
	}
	if r := s.get(); r.auth != "Bearer "+testToken || r.path != "/api" {
		t.Errorf("request: path %q, Authorization %q", r.path, r.auth)
	}
}

func TestIPv6StatusError(t *testing.T) {
	srv := startTLS(t, listenIPv6(t), nil, reply(401, "application/json", status(401, "Unauthorized", "Unauthorized")))
	c := newClient(t, srv, Options{})
	_, err := c.APIVersions(t.Context())
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 401 {
		t.Fatalf("error %v, want a 401 StatusError", err)
	}
	if !strings.HasPrefix(se.URL, "https://[::1]:") || !strings.HasSuffix(se.URL, "/api") {
		t.Errorf("StatusError.URL = %q", se.URL)
	}
	noToken(t, err)
}

// TestNoErrorMentionsTheToken gathers the errors of every failure path with
// a recognisable token mounted.
func TestNoErrorMentionsTheToken(t *testing.T) {
	handlers := map[string]http.HandlerFunc{
		"401":   reply(401, "application/json", status(401, "Unauthorized", "Unauthorized")),
		"403":   reply(403, "application/json", status(403, "Forbidden", "forbidden")),
		"404":   reply(404, "text/plain", "404 page not found"),
		"429":   reply(429, "application/json", status(429, "TooManyRequests", "slow down")),
		"500":   reply(500, "text/plain", "oops"),
		"text":  reply(200, "text/plain", "ok"),
		"html":  reply(200, "text/html", "<html/>"),
		"json":  reply(200, "application/json", "{"),
		"kind":  reply(200, "application/json", `{"kind":"Status"}`),
		"hang":  hang(t),
		"close": func(w http.ResponseWriter, _ *http.Request) { panic(http.ErrAbortHandler) },
	}
	var errs []error
	for name, h := range handlers {
		srv := startTLS(t, nil, nil, h)
		c := newClient(t, srv, Options{Timeout: 300 * time.Millisecond})
		_, err := c.APIVersions(t.Context())
		if err == nil {
			t.Errorf("%s: no error", name)
		}
		errs = append(errs, err)
		_, err = c.ServerVersion(t.Context())
		errs = append(errs, err)
	}
	// Wrong CA.
	srv := startTLS(t, nil, nil, reply(200, "application/json", apiVersionsJSON))
	dir := t.TempDir()
	writeCA(t, dir, otherCA(t).Cert)
	writeToken(t, dir, testToken)
	c := newClient(t, srv, Options{Dir: dir})
	_, err := c.APIVersions(t.Context())
	errs = append(errs, err)
	// Bad token files and a missing CA.
	for _, tok := range []string{testToken + " x", testToken + "\x00", "\x01" + testToken} {
		dir := t.TempDir()
		writeCA(t, dir, srv.Certificate())
		writeToken(t, dir, tok)
		_, err := New(Options{Host: srv.Listener.Addr().String(), Dir: dir})
		errs = append(errs, err)
	}
	dir = t.TempDir()
	writeToken(t, dir, testToken)
	_, err = New(Options{Dir: dir})
	errs = append(errs, err)

	for _, err := range errs {
		if err == nil {
			continue
		}
		noToken(t, err)
	}
}
