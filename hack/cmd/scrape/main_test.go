// SPDX-License-Identifier: Apache-2.0

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const secret = "s3cret-token-value"

// listen127 listens on 127.0.0.1 (httptest may fall back to [::1]).
func listen127(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// server is an httptest TLS server on 127.0.0.1 whose body is the request's
// Authorization header, or "none".
func server(t *testing.T) *httptest.Server {
	t.Helper()
	l := listen127(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, ok := r.Header["Authorization"]
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte("none"))
			return
		}
		_, _ = w.Write([]byte(strings.Join(auth, ",")))
	}))
	srv.Listener.Close()
	srv.Listener = l
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

// scrapeRun runs scrape with args and returns its exit code, its lines
// (decoded) and its stderr.
func scrapeRun(t *testing.T, args ...string) (int, []line, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	var lines []line
	for _, s := range strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n") {
		if s == "" {
			continue
		}
		var l line
		if err := json.Unmarshal([]byte(s), &l); err != nil {
			t.Fatalf("line %q: %v", s, err)
		}
		lines = append(lines, l)
	}
	return code, lines, errOut.String()
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// caFile writes srv's certificate as a PEM bundle, for -ca-file.
func caFile(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	return writeFile(t, "ca.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
}

func body(l line) string {
	if l.Body == nil {
		return "<no body>"
	}
	return *l.Body
}

func TestBearerAndFingerprint(t *testing.T) {
	srv := server(t)
	sum := sha256.Sum256(srv.Certificate().Raw)
	fp := hex.EncodeToString(sum[:])
	tokenFile := writeFile(t, "token", "  "+secret+"\n")
	ca := caFile(t, srv)

	code, lines, stderr := scrapeRun(t, "-ca-file", ca, "-token-file", tokenFile, "-repeat", "2", "-interval", "1ms", srv.URL+"/metrics")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("exit %d, %d lines (want 0, 2); stderr: %s", code, len(lines), stderr)
	}
	for _, l := range lines {
		if l.Status != 200 || body(l) != "Bearer "+secret || l.Error != "" {
			t.Errorf("line %+v (body %q): want 200, body %q", l, body(l), "Bearer "+secret)
		}
		if l.Fingerprint != fp {
			t.Errorf("fingerprint %q, want %q (sha256 of the leaf)", l.Fingerprint, fp)
		}
		if l.URL != srv.URL+"/metrics" || l.Time == "" {
			t.Errorf("url %q time %q", l.URL, l.Time)
		}
	}
	if strings.Contains(stderr, secret) {
		t.Errorf("stderr has the token: %s", stderr)
	}

	// -until-fingerprint: the first round presents it, no second round.
	if code, lines, _ := scrapeRun(t, "-ca-file", ca, "-token-file", tokenFile, "-repeat", "5", "-interval", "1ms", "-until-fingerprint", fp, srv.URL); code != 0 || len(lines) != 1 {
		t.Errorf("-until-fingerprint of the served certificate: exit %d, %d lines; want 0, 1", code, len(lines))
	}

	// -token-file "": no header, nothing said.
	code, lines, stderr = scrapeRun(t, "-ca-file", ca, "-token-file=", srv.URL)
	if code != 0 || len(lines) != 1 || lines[0].Status != 401 || body(lines[0]) != "none" || stderr != "" {
		t.Errorf(`-token-file="": exit %d, lines %+v, stderr %q; want 0, one 401 "none", no stderr`, code, lines, stderr)
	}

	// A missing file: no header, said once.
	code, lines, stderr = scrapeRun(t, "-ca-file", ca, "-token-file", filepath.Join(t.TempDir(), "nope"), "-repeat", "2", "-interval", "0", srv.URL, srv.URL)
	if code != 0 || len(lines) != 4 {
		t.Fatalf("missing token: exit %d, %d lines; want 0, 4", code, len(lines))
	}
	for _, l := range lines {
		if l.Status != 401 || body(l) != "none" {
			t.Errorf("missing token: line %+v, want 401 none", l)
		}
	}
	if strings.Count(stderr, "no Authorization header") != 1 || !strings.Contains(stderr, "does not exist") {
		t.Errorf("missing token: stderr %q, want one line saying so", stderr)
	}
}

func TestVerify(t *testing.T) {
	srv := server(t)
	ca := caFile(t, srv)

	code, lines, stderr := scrapeRun(t, "-token-file=", "-ca-file", ca, srv.URL)
	if code != 0 || len(lines) != 1 || lines[0].Status != 401 || lines[0].Error != "" {
		t.Errorf("-ca-file: exit %d, lines %+v, stderr %q; want a response", code, lines, stderr)
	}

	// Without -ca-file: the system roots, which do not have httptest's CA.
	code, lines, _ = scrapeRun(t, "-token-file=", srv.URL)
	if code != 0 || len(lines) != 1 || lines[0].Status != 0 || lines[0].Body != nil || !strings.Contains(lines[0].Error, "certificate") {
		t.Errorf("system roots: exit %d, lines %+v; want an error line about the certificate", code, lines)
	}

	// A -ca-file without a certificate: cannot start.
	code, lines, stderr = scrapeRun(t, "-token-file=", "-ca-file", writeFile(t, "bad.crt", "not pem"), srv.URL)
	if code != 1 || len(lines) != 0 || !strings.Contains(stderr, "no PEM certificate") {
		t.Errorf("bad -ca-file: exit %d, lines %+v, stderr %q; want 1", code, lines, stderr)
	}
}

func TestUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "https://" + l.Addr().String() + "/metrics"
	l.Close()
	code, lines, stderr := scrapeRun(t, "-token-file=", u)
	if code != 0 || len(lines) != 1 {
		t.Fatalf("exit %d, %d lines; stderr %q", code, len(lines), stderr)
	}
	if l := lines[0]; l.URL != u || l.Status != 0 || l.Error == "" || l.Body != nil || l.Fingerprint != "" || l.Time == "" {
		t.Errorf("line %+v: want an error line", l)
	}
}

// TestRetryUnreachable: with -retry-unreachable a refused connection is
// tried again until the server listens (a Service kube-proxy programs late);
// an answer, even a TLS failure, is never retried, and without the flag
// nothing is.
func TestRetryUnreachable(t *testing.T) {
	l := listen127(t)
	addr := l.Addr().String()
	l.Close()
	u := "https://" + addr + "/metrics"

	// Refused until the server listens on that port, 600 ms later.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(600 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listening again on %s: %v", addr, err)
			return
		}
		srv.Listener.Close()
		srv.Listener = l
		srv.StartTLS()
	}()
	t.Cleanup(func() { <-done; srv.Close() })

	code, lines, stderr := scrapeRun(t, "-token-file=", "-retry-unreachable", "20s", u)
	<-done
	if code != 0 || len(lines) != 1 {
		t.Fatalf("exit %d, %d lines; stderr %q", code, len(lines), stderr)
	}
	// The system roots do not have httptest's CA: a TLS error, after the
	// connection was made, so the last attempt is that one.
	if l := lines[0]; l.Retries < 1 || !strings.Contains(l.Error, "certificate") {
		t.Errorf("line %+v: want retries >= 1 and then the certificate error", l)
	}
	if code, lines, _ := scrapeRun(t, "-token-file=", "-retry-unreachable", "20s", u); code != 0 || len(lines) != 1 || lines[0].Retries != 0 || !strings.Contains(lines[0].Error, "certificate") {
		t.Errorf("a TLS failure: lines %+v; want it at once, not retried", lines)
	}

	// Without the flag, or past the bound: one attempt's error.
	l = listen127(t)
	gone := "https://" + l.Addr().String() + "/"
	l.Close()
	start := time.Now()
	if code, lines, _ := scrapeRun(t, "-token-file=", "-retry-unreachable", "300ms", gone); code != 0 || len(lines) != 1 || lines[0].Retries < 1 || lines[0].Status != 0 || lines[0].Error == "" {
		t.Errorf("past the bound: lines %+v; want the refused error after retries", lines)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("-retry-unreachable 300ms took %v", d)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"-token-file="},
		{"-nope", "https://127.0.0.1/"},
		{"-repeat", "0", "https://127.0.0.1/"},
		{"-timeout", "0s", "https://127.0.0.1/"},
		{"-retry-unreachable", "-1s", "https://127.0.0.1/"},
		{"-insecure", "https://127.0.0.1/"}, // gone: verification is never off
		{"127.0.0.1/metrics"},
		{"ftp://127.0.0.1/"},
	} {
		if code, lines, _ := scrapeRun(t, args...); code != 2 || len(lines) != 0 {
			t.Errorf("%q: exit %d, %d lines; want 2, none", args, code, len(lines))
		}
	}
}

// TestServerName: a server reached by IP whose certificate is for a DNS name
// only (a pod behind a Service) is verified with -server-name that name, and
// not without it, nor with another name.
func TestServerName(t *testing.T) {
	const name = "metrics.example"
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "scrape test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name}, // no IP SAN
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}

	// The body is the SNI the client sent.
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte("sni=" + r.TLS.ServerName))
	}))
	srv.Listener.Close()
	srv.Listener = listen127(t)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{leafDER}, PrivateKey: key}}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	if !strings.HasPrefix(srv.URL, "https://127.0.0.1:") {
		t.Fatalf("URL %s, want https://127.0.0.1:port", srv.URL)
	}
	ca := writeFile(t, "ca.crt", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})))
	sum := sha256.Sum256(leafDER)
	fp := hex.EncodeToString(sum[:])

	code, lines, stderr := scrapeRun(t, "-token-file=", "-ca-file", ca, "-server-name", name, srv.URL+"/metrics")
	if code != 0 || len(lines) != 1 {
		t.Fatalf("-server-name %s: exit %d, %d lines; stderr %q", name, code, len(lines), stderr)
	}
	if l := lines[0]; l.Status != 200 || l.Error != "" || body(l) != "sni="+name || l.Fingerprint != fp {
		t.Errorf("-server-name %s: line %+v (body %q); want 200, body %q, fingerprint %s", name, l, body(l), "sni="+name, fp)
	}

	for _, c := range []struct {
		args []string
		want string // in the error
	}{
		{[]string{"-ca-file", ca}, "for 127.0.0.1"},                                      // verified for the URL's host: not in the certificate
		{[]string{"-ca-file", ca, "-server-name", "other.example"}, "not other.example"}, // another name
		{[]string{"-server-name", name}, "unknown authority"},                            // the system roots
	} {
		args := append(append([]string{"-token-file="}, c.args...), srv.URL+"/metrics")
		code, lines, stderr := scrapeRun(t, args...)
		if code != 0 || len(lines) != 1 {
			t.Fatalf("%q: exit %d, %d lines; stderr %q", args, code, len(lines), stderr)
		}
		if l := lines[0]; l.Status != 0 || l.Body != nil || !strings.Contains(l.Error, c.want) {
			t.Errorf("%q: line %+v; want an error line with %q", args, l, c.want)
		}
	}
}
