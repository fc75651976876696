// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// TestCertificateErrors: each way a server certificate fails says what to
// check, told apart by the error's type (x509.HostnameError,
// x509.CertificateInvalidError, x509.UnknownAuthorityError).
func TestCertificateErrors(t *testing.T) {
	ca, caKey := newTestCA(t)
	tests := []struct {
		name     string
		host     string // in the kubeconfig's server URL
		leaf     func(*x509.Certificate)
		errType  error // what err must wrap
		wantHint string
	}{
		{"another host name", "localhost", nil, x509.HostnameError{},
			"(the server's certificate is not for this host name: use a name or address of the API server that its certificate lists (kubernetes.default.svc, or KUBERNETES_SERVICE_HOST))"},
		{"expired", "127.0.0.1", func(c *x509.Certificate) {
			c.NotBefore, c.NotAfter = time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour)
		},
			x509.CertificateInvalidError{}, "(the server's certificate is not valid (expired, not yet valid, or not for serving): check the API server's certificate and this machine's clock)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewUnstartedServer(&fakeAPI{})
			srv.TLS = &tls.Config{Certificates: []tls.Certificate{newLeaf(t, ca, caKey, tt.leaf)}}
			srv.StartTLS()
			t.Cleanup(srv.Close)
			forbidInCluster(t)
			url := strings.Replace(srv.URL, "127.0.0.1", tt.host, 1)
			path := writeFile(t, filepath.Join(t.TempDir(), "config"), kubeconfigYAML(url, certPEM(ca), testToken, "team-a"))
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

// newTestCA returns a CA certificate and its key.
func newTestCA(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	ca, key, _ := newCert(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "test-ca"}, KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}, nil, nil)
	return ca, key
}

// newLeaf returns a serving certificate for 127.0.0.1 signed by ca, after
// edit (if not nil) has changed its template. (testca.CA.Leaf makes only
// good ones.)
func newLeaf(t *testing.T, ca *x509.Certificate, caKey *ecdsa.PrivateKey, edit func(*x509.Certificate)) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject: pkix.Name{CommonName: "apiserver"}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if edit != nil {
		edit(tmpl)
	}
	_, key, der := newCert(t, tmpl, ca, caKey)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// newCert signs tmpl (valid for the hour around now unless it says
// otherwise) with parent's key, or with its own key if parent is nil.
func newCert(t *testing.T, tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(time.Now().UnixNano())
	if tmpl.NotAfter.IsZero() {
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, der
}
