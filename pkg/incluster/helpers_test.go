// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"

	"github.com/incluster/incluster/pkg/serviceaccount"
)

// testToken is the service-account token of the fake mounts. It is
// distinctive so that a test can look for it in error messages.
const testToken = "tok-3f9a1c77-d00d-4bad-beef-5ec2e7value"

// unsetenv unsets key for the test and restores it afterwards.
func unsetenv(t *testing.T, key string) {
	t.Helper()
	t.Setenv(key, "") // registers the restore
	if err := os.Unsetenv(key); err != nil {
		t.Fatal(err)
	}
}

// cleanEnv removes every variable the package reads, so that the host's
// environment (a CI pod, a developer's KUBECONFIG) cannot leak into a test.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, k := range []string{serviceaccount.HostEnv, serviceaccount.PortEnv, serviceaccount.PodNamespaceEnv, "KUBECONFIG"} {
		unsetenv(t, k)
	}
}

// saMount is a fake service-account mount in a temp dir. The fields are
// the file contents; a nil field means the file is not created.
type saMount struct {
	Token     []byte
	CA        []byte
	Namespace []byte
}

// fakeServiceAccount writes m to a temp dir and points the package's seams
// at it: serviceAccountDir, and loadInClusterConfig, which becomes a copy of
// rest.InClusterConfig that reads the temp dir instead of
// /var/run/secrets. Both are restored when the test ends. The service
// variables are left to the caller (see setServiceEnv); every other
// variable the package reads is unset.
func fakeServiceAccount(t *testing.T, m saMount) string {
	t.Helper()
	cleanEnv(t)
	dir := t.TempDir()
	for name, b := range map[string][]byte{
		serviceaccount.TokenFile:     m.Token,
		serviceaccount.CAFile:        m.CA,
		serviceaccount.NamespaceFile: m.Namespace,
	} {
		if b == nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	oldDir, oldLoad := serviceAccountDir, loadInClusterConfig
	t.Cleanup(func() { serviceAccountDir, loadInClusterConfig = oldDir, oldLoad })
	serviceAccountDir = dir
	loadInClusterConfig = func() (*rest.Config, error) { return inClusterConfigFrom(dir) }
	return dir
}

// inClusterConfigFrom is rest.InClusterConfig (client-go v0.37) with the
// service-account directory as a parameter.
func inClusterConfigFrom(dir string) (*rest.Config, error) {
	tokenFile := filepath.Join(dir, serviceaccount.TokenFile)
	rootCAFile := filepath.Join(dir, serviceaccount.CAFile)
	host, port := os.Getenv(serviceaccount.HostEnv), os.Getenv(serviceaccount.PortEnv)
	if len(host) == 0 || len(port) == 0 {
		return nil, rest.ErrNotInCluster
	}
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		return nil, err
	}
	tlsClientConfig := rest.TLSClientConfig{}
	if _, err := certutil.NewPool(rootCAFile); err == nil {
		tlsClientConfig.CAFile = rootCAFile
	}
	return &rest.Config{
		Host:            "https://" + net.JoinHostPort(host, port),
		TLSClientConfig: tlsClientConfig,
		BearerToken:     string(token),
		BearerTokenFile: tokenFile,
	}, nil
}

func setServiceEnv(t *testing.T, host, port string) {
	t.Helper()
	t.Setenv(serviceaccount.HostEnv, host)
	t.Setenv(serviceaccount.PortEnv, port)
}

// A CA bundle that parses, for tests that send no request.
var testCA = func() []byte {
	srv := httptest.NewTLSServer(http.NotFoundHandler())
	defer srv.Close()
	return certPEM(srv.Certificate())
}()

// otherCA is a CA bundle that did not sign the test servers' certificate.
var otherCA = func() []byte {
	cert, _, err := certutil.GenerateSelfSignedCertKey("other-ca.example", nil, nil)
	if err != nil {
		panic(err)
	}
	return cert
}()

func certPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// goodMount is a complete, valid service-account mount.
func goodMount() saMount {
	return saMount{Token: []byte(testToken + "\n"), CA: testCA, Namespace: []byte("team-a")}
}

// request is what the fake API server saw of one request.
type request struct {
	Method, Path, Query string
	Accept, ContentType string
	Authorization       string
	UserAgent           string
	ProtoMajor          int
	Body                []byte
}

// apiServer is a fake API server: an httptest TLS server on 127.0.0.1 that
// records the requests and counts the TCP connections clients open.
type apiServer struct {
	*httptest.Server
	conns atomic.Int32

	mu   sync.Mutex
	reqs []request
}

// newAPIServer starts an HTTP/2 TLS server whose handler is h (nil:
// fakeAPI with the default answers). It is closed when the test ends.
func newAPIServer(t *testing.T, h http.Handler) *apiServer {
	t.Helper()
	if h == nil {
		h = &fakeAPI{}
	}
	s := &apiServer{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		s.mu.Lock()
		s.reqs = append(s.reqs, request{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Accept: r.Header.Get("Accept"), ContentType: r.Header.Get("Content-Type"),
			Authorization: r.Header.Get("Authorization"), UserAgent: r.Header.Get("User-Agent"),
			ProtoMajor: r.ProtoMajor, Body: body,
		})
		s.mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if h, _, _ := net.SplitHostPort(srv.Listener.Addr().String()); h != "127.0.0.1" {
		t.Fatalf("the test server listens on %s, want 127.0.0.1", h)
	}
	s.Server = srv
	return s
}

func (s *apiServer) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]request(nil), s.reqs...)
}

func (s *apiServer) caPEM() []byte { return certPEM(s.Certificate()) }

func (s *apiServer) hostPort(t *testing.T) (string, string) {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return u.Hostname(), u.Port()
}

// The fake API server's default answers.
const (
	apiVersionsJSON = `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"172.18.0.2:6443"},{"clientCIDR":"10.0.0.0/8","serverAddress":"10.96.0.1:443"}]}`
	versionJSON     = `{"major":"1","minor":"37","gitVersion":"v1.37.2","gitCommit":"abc","platform":"linux/amd64"}`
	whoAmIJSON      = `{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","metadata":{"creationTimestamp":null},"status":{"userInfo":{"username":"system:serviceaccount:team-a:demo","uid":"1234","groups":["system:serviceaccounts","system:serviceaccounts:team-a","system:authenticated"]}}}`
	podListJSON     = `{"kind":"PodList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}`
)

// fakeAPI answers the paths Client's helpers use. Access reviews are
// allowed unless Deny returns a reason for them. Requests may be JSON or
// protobuf (client-go's clientset sends protobuf); answers are JSON.
type fakeAPI struct {
	Deny func(attrs authorizationv1.ResourceAttributes) (reason string, denied bool)
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/api":
		fmt.Fprint(w, apiVersionsJSON)
	case r.Method == http.MethodGet && r.URL.Path == "/version":
		fmt.Fprint(w, versionJSON)
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authentication.k8s.io/v1/selfsubjectreviews":
		w.WriteHeader(http.StatusCreated)
		fmt.Fprint(w, whoAmIJSON)
	case r.Method == http.MethodPost && r.URL.Path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews":
		body, _ := io.ReadAll(r.Body)
		var review authorizationv1.SelfSubjectAccessReview
		if err := decodeObject(body, &review); err != nil || review.Spec.ResourceAttributes == nil {
			writeStatus(w, http.StatusBadRequest, "BadRequest", fmt.Sprintf("bad SelfSubjectAccessReview: %v", err))
			return
		}
		review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: true, Reason: `RBAC: allowed by RoleBinding "demo"`}
		if f.Deny != nil {
			if reason, denied := f.Deny(*review.Spec.ResourceAttributes); denied {
				review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: false, Reason: reason}
			}
		}
		review.APIVersion, review.Kind = "authorization.k8s.io/v1", "SelfSubjectAccessReview"
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(&review)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/api/v1/namespaces/") && strings.HasSuffix(r.URL.Path, "/pods"):
		fmt.Fprint(w, podListJSON)
	default:
		writeStatus(w, http.StatusNotFound, "NotFound", "the server could not find the requested resource")
	}
}

// decodeObject decodes a request body, JSON or protobuf, into obj.
func decodeObject(body []byte, obj runtime.Object) error {
	_, _, err := scheme.Codecs.UniversalDeserializer().Decode(body, nil, obj)
	return err
}

// writeStatus answers with a metav1.Status, as the API server does.
func writeStatus(w http.ResponseWriter, code int, reason, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"kind": "Status", "apiVersion": "v1", "metadata": map[string]any{},
		"status": "Failure", "message": msg, "reason": reason, "code": code,
	})
}

// kubeconfigYAML is a kubeconfig with one context, "test", on server with
// caPEM, a token and namespace (omitted if empty).
func kubeconfigYAML(server string, caPEM []byte, token, namespace string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: Config\ncurrent-context: test\n")
	fmt.Fprintf(&b, "clusters:\n- name: test\n  cluster:\n    server: %s\n", server)
	if caPEM != nil {
		fmt.Fprintf(&b, "    certificate-authority-data: %s\n", base64.StdEncoding.EncodeToString(caPEM))
	}
	fmt.Fprintf(&b, "users:\n- name: test\n  user:\n    token: %s\n", token)
	fmt.Fprintf(&b, "contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n")
	if namespace != "" {
		fmt.Fprintf(&b, "    namespace: %s\n", namespace)
	}
	return b.String()
}

func writeFile(t *testing.T, path, content string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeKubeconfig writes a kubeconfig for srv to a temp dir and returns
// its path.
func writeKubeconfig(t *testing.T, srv *apiServer, token, namespace string) string {
	t.Helper()
	return writeFile(t, filepath.Join(t.TempDir(), "kubeconfig"), kubeconfigYAML(srv.URL, srv.caPEM(), token, namespace))
}

// kubeconfigClient returns a Client for srv built by New(WithKubeconfig)
// with namespace team-a. The in-cluster seams point to an empty temp dir and
// fail the test if used.
func kubeconfigClient(t *testing.T, srv *apiServer, opts ...Option) *Client {
	t.Helper()
	forbidInCluster(t)
	path := writeKubeconfig(t, srv, testToken, "team-a")
	c, err := New(append([]Option{WithKubeconfig(path)}, opts...)...)
	if err != nil {
		t.Fatalf("New(WithKubeconfig): %v", err)
	}
	return c
}

// wrongCAClient is kubeconfigClient with a kubeconfig that trusts another
// CA than the one that signed srv's certificate.
func wrongCAClient(t *testing.T, srv *apiServer) *Client {
	t.Helper()
	forbidInCluster(t)
	path := writeFile(t, filepath.Join(t.TempDir(), "config"), kubeconfigYAML(srv.URL, otherCA, testToken, "team-a"))
	c, err := New(WithKubeconfig(path))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// inClusterClient returns a Client for srv built by New() from a fake
// service-account mount with srv's CA and the service variables set to
// srv's address.
func inClusterClient(t *testing.T, srv *apiServer, opts ...Option) *Client {
	t.Helper()
	m := goodMount()
	m.CA = srv.caPEM()
	fakeServiceAccount(t, m)
	host, port := srv.hostPort(t)
	setServiceEnv(t, host, port)
	c, err := New(opts...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

// forbidInCluster cleans the environment and makes the in-cluster seams
// fail the test if anything uses them.
func forbidInCluster(t *testing.T) {
	t.Helper()
	cleanEnv(t)
	oldDir, oldLoad := serviceAccountDir, loadInClusterConfig
	t.Cleanup(func() { serviceAccountDir, loadInClusterConfig = oldDir, oldLoad })
	serviceAccountDir = t.TempDir()
	loadInClusterConfig = func() (*rest.Config, error) {
		t.Error("the in-cluster config was loaded")
		return nil, rest.ErrNotInCluster
	}
}
