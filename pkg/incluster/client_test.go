// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// clientMakers build a Client for a fake API server in the two usual ways:
// from a kubeconfig, and from a fake in-cluster mount.
var clientMakers = []struct {
	name string
	new  func(t *testing.T, srv *apiServer, opts ...Option) *Client
}{
	{"kubeconfig", kubeconfigClient},
	{"in-cluster", inClusterClient},
}

func TestAPIVersions(t *testing.T) {
	for _, mk := range clientMakers {
		t.Run(mk.name, func(t *testing.T) {
			srv := newAPIServer(t, nil)
			c := mk.new(t, srv)
			if srv.conns.Load() != 0 || len(srv.requests()) != 0 {
				t.Fatalf("New sent requests (%d connections, %d requests)", srv.conns.Load(), len(srv.requests()))
			}
			got, err := c.APIVersions(t.Context())
			if err != nil {
				t.Fatalf("APIVersions: %v", err)
			}
			want := &metav1.APIVersions{
				TypeMeta: metav1.TypeMeta{Kind: "APIVersions"},
				Versions: []string{"v1"},
				ServerAddressByClientCIDRs: []metav1.ServerAddressByClientCIDR{
					{ClientCIDR: "0.0.0.0/0", ServerAddress: "172.18.0.2:6443"},
					{ClientCIDR: "10.0.0.0/8", ServerAddress: "10.96.0.1:443"},
				},
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("APIVersions = %+v\nwant %+v", got, want)
			}
			// Re-encoded, it is the document the server sent.
			b, _ := json.Marshal(got)
			if string(b) != apiVersionsJSON {
				t.Errorf("re-encoded: %s\nsent:       %s", b, apiVersionsJSON)
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want exactly one: %+v", len(reqs), reqs)
			}
			r := reqs[0]
			if r.Method != http.MethodGet || r.Path != "/api" || r.Query != "" {
				t.Errorf("request %s %s?%s, want GET /api", r.Method, r.Path, r.Query)
			}
			if r.Accept != "application/json" {
				t.Errorf("Accept = %q, want exactly application/json (no aggregated discovery)", r.Accept)
			}
			if r.Authorization != "Bearer "+testToken {
				t.Errorf("Authorization header is not the token")
			}
			if program := filepath.Base(os.Args[0]); !strings.HasPrefix(r.UserAgent, program+"/") {
				t.Errorf("User-Agent = %q, want it to name %q", r.UserAgent, program)
			}
			if r.ProtoMajor != 2 {
				t.Errorf("HTTP/%d, want HTTP/2", r.ProtoMajor)
			}
		})
	}
}

func TestServerVersion(t *testing.T) {
	srv := newAPIServer(t, nil)
	c := kubeconfigClient(t, srv)
	v, err := c.ServerVersion(t.Context())
	if err != nil {
		t.Fatalf("ServerVersion: %v", err)
	}
	if v.GitVersion != "v1.37.2" || v.Major != "1" || v.Minor != "37" || v.Platform != "linux/amd64" {
		t.Errorf("ServerVersion = %+v", v)
	}
	reqs := srv.requests()
	if len(reqs) != 1 || reqs[0].Method != http.MethodGet || reqs[0].Path != "/version" || reqs[0].Accept != "application/json" {
		t.Errorf("requests = %+v, want one GET /version with Accept: application/json", reqs)
	}
}

// TestNotAnAPIServer: 200 answers that are not what an API server sends.
func TestNotAnAPIServer(t *testing.T) {
	tests := []struct {
		name, contentType, body string
		call                    func(*Client) error
		want                    []string
	}{
		{
			name: "APIVersions, HTML login page", contentType: "text/html", body: "<html>login</html>",
			call: func(c *Client) error { _, err := c.APIVersions(t.Context()); return err },
			want: []string{"GET https://127.0.0.1:", "/api", "not JSON", "Kubernetes API server"},
		},
		{
			name: "APIVersions, other JSON", contentType: "application/json", body: `{"kind":"Status"}`,
			call: func(c *Client) error { _, err := c.APIVersions(t.Context()); return err },
			want: []string{"not an APIVersions document", `kind "Status"`},
		},
		{
			name: "ServerVersion, no gitVersion", contentType: "application/json", body: `{"major":"1"}`,
			call: func(c *Client) error { _, err := c.ServerVersion(t.Context()); return err },
			want: []string{"/version", "no gitVersion"},
		},
		{
			name: "WhoAmI, HTML login page", contentType: "text/html", body: "<html>login</html>",
			call: func(c *Client) error { _, err := c.WhoAmI(t.Context()); return err },
			want: []string{"create SelfSubjectReview", "not JSON", "proxy or login page"},
		},
		{
			name: "Can, HTML login page", contentType: "text/html", body: "<html>login</html>",
			call: func(c *Client) error {
				_, err := c.Can(t.Context(), authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"})
				return err
			},
			want: []string{"create SelfSubjectAccessReview", "not JSON", "proxy or login page"},
		},
		{
			name: "ServerVersion, HTML", contentType: "text/html", body: "<html/>",
			call: func(c *Client) error { _, err := c.ServerVersion(t.Context()); return err },
			want: []string{"/version", "not JSON"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newAPIServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				fmt.Fprint(w, tt.body)
			}))
			err := tt.call(kubeconfigClient(t, srv))
			wantErrText(t, err, tt.want...)
		})
	}
}

func TestWhoAmI(t *testing.T) {
	for _, mk := range clientMakers {
		t.Run(mk.name, func(t *testing.T) {
			srv := newAPIServer(t, nil)
			c := mk.new(t, srv)
			u, err := c.WhoAmI(t.Context())
			if err != nil {
				t.Fatalf("WhoAmI: %v", err)
			}
			want := authenticationv1.UserInfo{
				Username: "system:serviceaccount:team-a:demo", UID: "1234",
				Groups: []string{"system:serviceaccounts", "system:serviceaccounts:team-a", "system:authenticated"},
			}
			if !reflect.DeepEqual(u, want) {
				t.Errorf("WhoAmI = %+v, want %+v", u, want)
			}
			reqs := srv.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Method != http.MethodPost || r.Path != "/apis/authentication.k8s.io/v1/selfsubjectreviews" {
				t.Errorf("request %s %s", r.Method, r.Path)
			}
			var sent authenticationv1.SelfSubjectReview
			if err := decodeObject(r.Body, &sent); err != nil {
				t.Errorf("body %q (%v), want a SelfSubjectReview", r.Body, err)
			}
		})
	}
}

func TestCan(t *testing.T) {
	deny := &fakeAPI{Deny: func(attrs authorizationv1.ResourceAttributes) (string, bool) {
		if attrs.Resource == "secrets" {
			return `no RBAC policy matched`, true
		}
		return "", false
	}}
	tests := []struct {
		name      string
		attrs     authorizationv1.ResourceAttributes
		want      Decision
		wantAttrs authorizationv1.ResourceAttributes // as sent
	}{
		{
			name:      "namespace defaults to the client's",
			attrs:     authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"},
			want:      Decision{Allowed: true, Reason: `RBAC: allowed by RoleBinding "demo"`},
			wantAttrs: authorizationv1.ResourceAttributes{Namespace: "team-a", Verb: "list", Resource: "pods"},
		},
		{
			name:      "explicit namespace",
			attrs:     authorizationv1.ResourceAttributes{Namespace: "kube-system", Verb: "get", Resource: "configmaps", Name: "kube-root-ca.crt"},
			want:      Decision{Allowed: true, Reason: `RBAC: allowed by RoleBinding "demo"`},
			wantAttrs: authorizationv1.ResourceAttributes{Namespace: "kube-system", Verb: "get", Resource: "configmaps", Name: "kube-root-ca.crt"},
		},
		{
			name:      "denied is not an error",
			attrs:     authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets"},
			want:      Decision{Allowed: false, Reason: "no RBAC policy matched"},
			wantAttrs: authorizationv1.ResourceAttributes{Namespace: "team-a", Verb: "get", Resource: "secrets"},
		},
		{
			name:      "group and subresource",
			attrs:     authorizationv1.ResourceAttributes{Verb: "create", Group: "apps", Resource: "deployments", Subresource: "scale"},
			want:      Decision{Allowed: true, Reason: `RBAC: allowed by RoleBinding "demo"`},
			wantAttrs: authorizationv1.ResourceAttributes{Namespace: "team-a", Verb: "create", Group: "apps", Resource: "deployments", Subresource: "scale"},
		},
	}
	for _, mk := range clientMakers {
		for _, tt := range tests {
			t.Run(mk.name+"/"+tt.name, func(t *testing.T) {
				srv := newAPIServer(t, deny)
				c := mk.new(t, srv)
				got, err := c.Can(t.Context(), tt.attrs)
				if err != nil {
					t.Fatalf("Can: %v", err)
				}
				if got != tt.want {
					t.Errorf("Can = %+v, want %+v", got, tt.want)
				}
				reqs := srv.requests()
				if len(reqs) != 1 || reqs[0].Method != http.MethodPost || reqs[0].Path != "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
					t.Fatalf("requests = %+v, want one POST of a SelfSubjectAccessReview", reqs)
				}
				var sent authorizationv1.SelfSubjectAccessReview
				if err := decodeObject(reqs[0].Body, &sent); err != nil {
					t.Fatal(err)
				}
				if sent.Spec.ResourceAttributes == nil || *sent.Spec.ResourceAttributes != tt.wantAttrs {
					t.Errorf("sent %+v\nwant resourceAttributes %+v", sent.Spec, tt.wantAttrs)
				}
			})
		}
	}
}

// wantErrText checks that err's message contains every string of want and
// not the token.
func wantErrText(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want an error containing %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("err = %q\nwant it to contain %q", err, w)
		}
	}
	if strings.Contains(err.Error(), testToken) {
		t.Errorf("err contains the token: %q", err)
	}
}

// The 403 hints: what grants a request depends on what it is about. A
// Role and RoleBinding grant only requests in their namespace; cluster-
// scoped resources (SelfSubjectReview, SelfSubjectAccessReview, a list
// across namespaces) and non-resource URLs (/api, /version) need a
// ClusterRole and ClusterRoleBinding.
const (
	forbiddenNonResource = "the service account lacks RBAC permission for this non-resource URL: grant it with a ClusterRole (nonResourceURLs) and ClusterRoleBinding; a Role and RoleBinding cannot"
	forbiddenCluster     = "the service account lacks RBAC permission for this cluster-scoped request: grant it with a ClusterRole and ClusterRoleBinding; a Role and RoleBinding cannot"
	forbiddenUnknown     = "the service account lacks RBAC permission for this: grant it with a Role and RoleBinding in the namespace, or with a ClusterRole and ClusterRoleBinding for a cluster-scoped resource or a non-resource URL (see deploy/)"
)

func forbiddenIn(ns string) string {
	return "the service account lacks RBAC permission in namespace " + ns + ": grant it with a Role and RoleBinding in " + ns + " (see deploy/)"
}

// helperCalls are the Client helpers that send a request, and the 403
// hint each must give.
var helperCalls = []struct {
	name      string
	call      func(ctx context.Context, c *Client) error
	forbidden string
}{
	{"APIVersions", func(ctx context.Context, c *Client) error { _, err := c.APIVersions(ctx); return err }, forbiddenNonResource},
	{"ServerVersion", func(ctx context.Context, c *Client) error { _, err := c.ServerVersion(ctx); return err }, forbiddenNonResource},
	{"WhoAmI", func(ctx context.Context, c *Client) error { _, err := c.WhoAmI(ctx); return err }, forbiddenCluster},
	{"Can", func(ctx context.Context, c *Client) error {
		_, err := c.Can(ctx, authorizationv1.ResourceAttributes{Verb: "get", Resource: "pods"})
		return err
	}, forbiddenCluster},
	{"GetJSON", func(ctx context.Context, c *Client) error {
		var list struct{ Items []json.RawMessage }
		return c.GetJSON(ctx, "/api/v1/namespaces/other/pods", &list)
	}, forbiddenIn("other")},
}

// TestHTTPErrors: each helper's error for the usual failure answers carries
// the status code and what to do, and still satisfies apierrors' predicates.
func TestHTTPErrors(t *testing.T) {
	tests := []struct {
		code   int
		reason string
		plain  bool // answer with text/plain instead of a Status
		is     func(error) bool
		want   []string
	}{
		{code: 401, reason: "Unauthorized", is: apierrors.IsUnauthorized, want: []string{"HTTP 401", "rejected the credentials", "token", "expired"}},
		{code: 401, plain: true, is: apierrors.IsUnauthorized, want: []string{"HTTP 401", "token"}},
		{code: 403, reason: "Forbidden", is: apierrors.IsForbidden, want: []string{"HTTP 403", "RBAC"}},
		{code: 403, plain: true, is: apierrors.IsForbidden, want: []string{"HTTP 403", "RBAC"}},
		{code: 404, reason: "NotFound", is: apierrors.IsNotFound, want: []string{"HTTP 404", "does not serve this path", "server version"}},
		{code: 404, plain: true, is: apierrors.IsNotFound, want: []string{"HTTP 404", "does not serve this path"}},
		{code: 429, reason: "TooManyRequests", is: apierrors.IsTooManyRequests, want: []string{"HTTP 429", "Priority and Fairness", "retry later"}},
		{code: 500, reason: "InternalError", is: apierrors.IsInternalError, want: []string{"HTTP 500", "retry later", "logs"}},
		{code: 500, plain: true, is: apierrors.IsInternalError, want: []string{"HTTP 500", "retry later"}},
		{code: 503, reason: "ServiceUnavailable", is: apierrors.IsServiceUnavailable, want: []string{"HTTP 503", "retry later", "logs"}},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%d", tt.code)
		if tt.plain {
			name += "-plain"
		}
		t.Run(name, func(t *testing.T) {
			const serverMsg = "message from the server"
			srv := newAPIServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.plain {
					w.Header().Set("Content-Type", "text/plain")
					w.WriteHeader(tt.code)
					fmt.Fprint(w, serverMsg)
					return
				}
				writeStatus(w, tt.code, tt.reason, serverMsg)
			}))
			c := kubeconfigClient(t, srv)
			for _, h := range helperCalls {
				err := h.call(t.Context(), c)
				wantErrText(t, err, tt.want...)
				if tt.code == http.StatusForbidden {
					// The whole hint, and the one for what this helper asks.
					wantErrText(t, err, "(HTTP 403: "+h.forbidden+")")
				}
				if !tt.plain && !strings.Contains(err.Error(), serverMsg) {
					t.Errorf("%s: the server's message is lost: %v", h.name, err)
				}
				if !tt.is(err) {
					t.Errorf("%s: the apierrors predicate for %d is false on %v", h.name, tt.code, err)
				}
				var ce *ConfigError
				if errors.As(err, &ce) {
					t.Errorf("%s: an API error is a *ConfigError: %v", h.name, err)
				}
			}
			if n := len(srv.requests()); n != len(helperCalls) {
				t.Errorf("%d requests for %d calls (no retries expected without Retry-After)", n, len(helperCalls))
			}
		})
	}
}

// TestOperationInErrors: each error names what was being done.
func TestOperationInErrors(t *testing.T) {
	srv := newAPIServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusForbidden, "Forbidden", "nope")
	}))
	c := kubeconfigClient(t, srv)
	want := map[string]string{
		"APIVersions":   "GET " + srv.URL + "/api: ",
		"ServerVersion": "GET " + srv.URL + "/version: ",
		"WhoAmI":        "create SelfSubjectReview: ",
		"Can":           "create SelfSubjectAccessReview: ",
		"GetJSON":       "GET " + srv.URL + "/api/v1/namespaces/other/pods: ",
	}
	for _, h := range helperCalls {
		if err := h.call(t.Context(), c); err == nil || !strings.HasPrefix(err.Error(), want[h.name]) {
			t.Errorf("%s: err = %v, want it to start with %q", h.name, err, want[h.name])
		}
	}
}

// TestRequestTimeout: a server that never answers makes every helper fail
// after the request timeout, with a hint, and errors.Is(DeadlineExceeded).
func TestRequestTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := newAPIServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release) }) // runs before srv.Close
	const timeout = 300 * time.Millisecond
	c := kubeconfigClient(t, srv, WithRequestTimeout(timeout))
	for _, h := range helperCalls {
		t.Run(h.name, func(t *testing.T) {
			start := time.Now()
			err := h.call(t.Context(), c)
			elapsed := time.Since(start)
			wantErrText(t, err, "did not answer in time", "NetworkPolicy")
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("errors.Is(err, context.DeadlineExceeded) = false for %v", err)
			}
			if elapsed < timeout || elapsed > timeout+5*time.Second {
				t.Errorf("returned after %v, want about %v", elapsed, timeout)
			}
		})
	}

	t.Run("caller's deadline without request timeout", func(t *testing.T) {
		c := kubeconfigClient(t, srv, WithRequestTimeout(0))
		ctx, cancel := context.WithTimeout(t.Context(), timeout)
		defer cancel()
		_, err := c.APIVersions(ctx)
		wantErrText(t, err, "did not answer in time")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("errors.Is(err, context.DeadlineExceeded) = false for %v", err)
		}
	})

	t.Run("canceled by the caller: no hint", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err := c.WhoAmI(ctx)
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if strings.Contains(err.Error(), "did not answer in time") {
			t.Errorf("a cancellation blamed on the server: %v", err)
		}
	})
}

// TestTransportErrors: TLS and connection failures say what to check.
func TestTransportErrors(t *testing.T) {
	t.Run("certificate of another CA", func(t *testing.T) {
		c := wrongCAClient(t, newAPIServer(t, nil))
		for _, h := range helperCalls {
			wantErrText(t, h.call(t.Context(), c), "x509", "not signed by the configured CA", "ca.crt")
		}
	})
	t.Run("connection refused", func(t *testing.T) {
		srv := newAPIServer(t, nil)
		url := srv.URL
		srv.Close()
		forbidInCluster(t)
		path := writeFile(t, filepath.Join(t.TempDir(), "config"), kubeconfigYAML(url, srv.caPEM(), testToken, "team-a"))
		c, err := New(WithKubeconfig(path))
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range helperCalls {
			wantErrText(t, h.call(t.Context(), c), "connection refused", "cannot reach the API server", "NetworkPolicies")
		}
	})
}

// TestOneHTTPClient: the helpers share one http.Client (package clients
// checks the typed clientset and discovery client on it), so a report of several calls, concurrent or not,
// uses one TLS connection.
func TestOneHTTPClient(t *testing.T) {
	for _, mk := range clientMakers {
		t.Run(mk.name, func(t *testing.T) {
			srv := newAPIServer(t, nil)
			c := mk.new(t, srv)

			hc := c.HTTPClient()
			if hc == nil || hc == http.DefaultClient {
				t.Fatalf("HTTPClient() = %p, want a client of its own", hc)
			}
			if r := c.rest; r.Client != hc {
				t.Errorf("the helpers use http.Client %p, want the shared %p", r.Client, hc)
			}

			// A report: everything at once, then again one after another.
			report := []func() error{
				func() error { _, err := c.APIVersions(t.Context()); return err },
				func() error { _, err := c.ServerVersion(t.Context()); return err },
				func() error { _, err := c.WhoAmI(t.Context()); return err },
				func() error {
					_, err := c.Can(t.Context(), authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"})
					return err
				},
				func() error {
					var pods struct{ Items []json.RawMessage }
					return c.GetJSON(t.Context(), "/api/v1/namespaces/"+c.Namespace()+"/pods", &pods)
				},
			}
			var wg sync.WaitGroup
			errs := make([]error, len(report))
			for i, f := range report {
				wg.Go(func() { errs[i] = f() })
			}
			wg.Wait()
			for _, f := range report {
				errs = append(errs, f())
			}
			for i, err := range errs {
				if err != nil {
					t.Errorf("call %d: %v", i, err)
				}
			}
			if n := srv.conns.Load(); n != 1 {
				t.Errorf("%d connections for %d requests, want 1", n, len(srv.requests()))
			}
			for _, r := range srv.requests() {
				if r.ProtoMajor != 2 {
					t.Errorf("%s %s over HTTP/%d", r.Method, r.Path, r.ProtoMajor)
				}
			}
		})
	}
}

// TestPlainHTTPConfig: a config without TLS, credentials or user agent, such
// as ProxyConfig's, works with NewForConfig. rest.HTTPClientFor returns
// http.DefaultClient for it, with a nil Transport; the client must not
// wrap that (a nil-pointer panic on the first request) nor change it.
func TestPlainHTTPConfig(t *testing.T) {
	srv := httptest.NewServer(&fakeAPI{}) // plain HTTP on 127.0.0.1
	t.Cleanup(srv.Close)
	defaultTransport := http.DefaultClient.Transport

	cfg, err := ProxyConfig(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewForConfig(cfg, "team-a")
	if err != nil {
		t.Fatalf("NewForConfig: %v", err)
	}
	if c.HTTPClient() == http.DefaultClient {
		t.Errorf("the client uses http.DefaultClient")
	}
	if http.DefaultClient.Transport != defaultTransport {
		t.Errorf("http.DefaultClient.Transport changed to %T", http.DefaultClient.Transport)
	}
	v, err := c.APIVersions(t.Context())
	if err != nil {
		t.Fatalf("APIVersions: %v", err)
	}
	if len(v.ServerAddressByClientCIDRs) != 2 {
		t.Errorf("APIVersions = %+v", v)
	}
	if d, err := c.Can(t.Context(), authorizationv1.ResourceAttributes{Verb: "list", Resource: "pods"}); err != nil || !d.Allowed {
		t.Errorf("Can list pods = %+v, %v", d, err)
	}
}

// TestProxyIsHTTP1: through WithProxy, the sidecar is spoken to in plain
// HTTP/1.1 (Go's client does no cleartext HTTP/2), as the docs say: one
// connection per request in flight, reused by the requests that follow.
func TestProxyIsHTTP1(t *testing.T) {
	var mu sync.Mutex
	protos := map[int]int{}
	conns := 0
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		protos[r.ProtoMajor]++
		mu.Unlock()
		(&fakeAPI{}).ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true // the server would speak it: the client does not
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			mu.Lock()
			conns++
			mu.Unlock()
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	fakeServiceAccount(t, goodMount())
	c, err := New(WithProxy(srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := c.APIVersions(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if protos[1] != 3 || len(protos) != 1 {
		t.Errorf("requests by HTTP major version: %v, want 3 over HTTP/1", protos)
	}
	if conns != 1 {
		t.Errorf("%d connections for 3 requests one after another, want 1 (kept alive)", conns)
	}
}

// TestTokenNeverInErrors: whatever fails, the token is not in the message,
// in any of fmt's forms.
func TestTokenNeverInErrors(t *testing.T) {
	check := func(t *testing.T, what string, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: no error", what)
			return
		}
		for _, s := range []string{err.Error(), fmt.Sprintf("%v", err), fmt.Sprintf("%+v", err), fmt.Sprintf("%q", err)} {
			if strings.Contains(s, testToken) || strings.Contains(s, testToken[:16]) {
				t.Errorf("%s: the error contains the token: %s", what, s)
			}
		}
	}

	t.Run("configuration", func(t *testing.T) {
		for name, m := range map[string]func(*saMount){
			"token with a space": func(m *saMount) { m.Token = []byte(testToken + " x") },
			"token with a NUL":   func(m *saMount) { m.Token = []byte(testToken + "\x00") },
			"CA garbage":         func(m *saMount) { m.CA = []byte(testToken) },
		} {
			t.Run(name, func(t *testing.T) {
				mount := goodMount()
				m(&mount)
				fakeServiceAccount(t, mount)
				setServiceEnv(t, "10.96.0.1", "443")
				_, err := New()
				check(t, name, err)
			})
		}
	})

	t.Run("API", func(t *testing.T) {
		for _, code := range []int{400, 401, 403, 404, 409, 422, 429, 500, 502, 503} {
			srv := newAPIServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				writeStatus(w, code, "", "failed")
			}))
			for _, mk := range clientMakers {
				c := mk.new(t, srv)
				for _, h := range helperCalls {
					check(t, fmt.Sprintf("%s %s HTTP %d", mk.name, h.name, code), h.call(t.Context(), c))
				}
			}
		}
	})

	t.Run("transport", func(t *testing.T) {
		srv := newAPIServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
		}))
		for name, opts := range map[string][]Option{"timeout": {WithRequestTimeout(100 * time.Millisecond)}} {
			c := kubeconfigClient(t, srv, opts...)
			for _, h := range helperCalls {
				check(t, name+" "+h.name, h.call(t.Context(), c))
			}
		}
		c := wrongCAClient(t, srv)
		for _, h := range helperCalls {
			check(t, "wrong CA "+h.name, h.call(t.Context(), c))
		}
	})
}

// TestExplain: the exported wrapper, for callers' own client-go calls.
func TestExplain(t *testing.T) {
	if Explain(nil, "x") != nil {
		t.Error("Explain(nil) != nil")
	}
	base := apierrors.NewForbidden(authorizationv1.Resource("secrets"), "db", errors.New("no"))
	err := Explain(base, "get secret db")
	// Explain does not know what the call asked for: the hint names both ways.
	wantErrText(t, err, "get secret db: ", "(HTTP 403: "+forbiddenUnknown+")")
	if !apierrors.IsForbidden(err) || !errors.Is(err, base) {
		t.Errorf("Explain does not wrap: %v", err)
	}
	plain := errors.New("something else")
	if got := Explain(plain, "op").Error(); got != "op: something else" {
		t.Errorf("Explain(plain) = %q", got)
	}
}
