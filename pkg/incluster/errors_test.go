// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/incluster/incluster/internal/testca"
)

// TestCertificateErrors: each way a server certificate fails says what to
// check, told apart by the error's type (x509.HostnameError,
// x509.CertificateInvalidError, x509.UnknownAuthorityError).
func TestCertificateErrors(t *testing.T) {
	ca := testca.NewCA(t, "test-ca")
	tests := []struct {
		name     string
		host     string                  // in the kubeconfig's server URL
		leaf     func(*x509.Certificate) // edits the template of the server's certificate (testca.CA.Leaf)
		errType  error                   // what err must wrap
		wantHint string
	}{
		{"another host name", "localhost", func(c *x509.Certificate) { c.DNSNames = nil /* IP addresses only */ }, x509.HostnameError{},
			"(the server's certificate is not for this host name: use a name or address of the API server that its certificate lists (kubernetes.default.svc, or KUBERNETES_SERVICE_HOST))"},
		{"expired", "127.0.0.1", func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		},
			x509.CertificateInvalidError{}, "(the server's certificate is not valid (expired, not yet valid, or not for serving): check the API server's certificate and this machine's clock)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(&fakeAPI{})
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{ca.Leaf(t, tt.leaf)}}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			forbidInCluster(t)
			url := strings.Replace(srv.URL, "127.0.0.1", tt.host, 1)
			path := writeFile(t, filepath.Join(t.TempDir(), "config"), kubeconfigYAML(url, ca.PEM, testToken, "team-a"))
			c, err := New(WithKubeconfig(path))
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.APIVersions(t.Context())
			wantErrText(t, err, tt.wantHint)
			switch tt.errType.(type) {
			case x509.HostnameError:
				var e x509.HostnameError
				if !errors.As(err, &e) {
					t.Errorf("%v does not wrap an x509.HostnameError", err)
				}
			case x509.CertificateInvalidError:
				var e x509.CertificateInvalidError
				if !errors.As(err, &e) {
					t.Errorf("%v does not wrap an x509.CertificateInvalidError", err)
				}
			}
		})
	}
}

// TestExplainByType: the hints follow the errors' types, not their words.
func TestExplainByType(t *testing.T) {
	const caHint = "(the server's certificate is not signed by the configured CA: mount this cluster's CA bundle (ca.crt), or check the host)"
	for _, tt := range []struct {
		name string
		err  error
		want string // "" : no hint
	}{
		{"verification error without the word x509", &tls.CertificateVerificationError{Err: errors.New("no trust")}, caHint},
		{"unknown authority", x509.UnknownAuthorityError{}, caHint},
		{"hostname", x509.HostnameError{Certificate: &x509.Certificate{}, Host: "h"}, "not for this host name"},
		{"invalid", x509.CertificateInvalidError{Cert: &x509.Certificate{}, Reason: x509.Expired}, "is not valid (expired"},
		{"the text x509: alone", errors.New("x509: looks like a certificate problem"), ""},
		{"the text serializer for alone", errors.New("serializer for text/html doesn't exist"), ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := Explain(tt.err, "op").Error()
			if tt.want == "" {
				if got != "op: "+tt.err.Error() {
					t.Errorf("Explain = %q, want no hint", got)
				}
				return
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("Explain = %q, want it to contain %q", got, tt.want)
			}
		})
	}
}

// TestExplainNotJSON records what client-go returns when a typed client
// gets an answer it cannot decode: an error without a type
// (*errors.errorString), which Explain leaves without a hint rather than
// match its words. Should client-go give it a type, this test fails: then
// explain can recognise it.
func TestExplainNotJSON(t *testing.T) {
	for _, tt := range []struct{ contentType, body, text string }{
		{"text/html", "<html>login</html>", "serializer for text/html doesn't exist"},
		{"application/json", "<html>login</html>", "couldn't get version/kind; json parse error"},
	} {
		t.Run(tt.contentType, func(t *testing.T) {
			srv := newAPIServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", tt.contentType)
				fmt.Fprint(w, tt.body)
			}))
			c := kubeconfigClient(t, srv)
			cs, err := kubernetes.NewForConfigAndClient(c.Config(), c.HTTPClient())
			if err != nil {
				t.Fatal(err)
			}
			_, err = cs.CoreV1().Pods("team-a").List(t.Context(), metav1.ListOptions{})
			if err == nil || !strings.Contains(err.Error(), tt.text) {
				t.Fatalf("err = %v, want %q", err, tt.text)
			}
			if typ := fmt.Sprintf("%T", err); typ != "*errors.errorString" || errors.Unwrap(err) != nil {
				t.Errorf("client-go's error is a %s now (unwraps to %v): let explain recognise it by its type", typ, errors.Unwrap(err))
			}
			if got := Explain(err, "list pods").Error(); got != "list pods: "+err.Error() {
				t.Errorf("Explain = %q, want no hint", got)
			}
		})
	}
}
