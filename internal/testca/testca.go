// SPDX-License-Identifier: Apache-2.0

// Package testca helps tests that need certificates: certificate
// authorities and serving certificates made in the test (NewCA, CA.Leaf),
// and, for the tests of a CA rotation, a TLS test server whose certificate
// can be switched to one from another CA (Server), a clock that moves only
// when told (Clock), a count of file reads (Reads), and the checks that
// every client which follows its CA file must pass (Rotation). It is for
// tests only: the library does not import it. It sits at the root of the
// module, not under pkg/, so that the e2e module may import it too.
package testca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// CA is a certificate authority.
type CA struct {
	Cert *x509.Certificate
	PEM  []byte // the CA certificate, PEM-encoded: what ca.crt holds
	key  *ecdsa.PrivateKey
}

var serial atomic.Int64

// NewCA returns a new self-signed CA named cn, valid from an hour ago for
// a day.
func NewCA(t testing.TB, cn string) *CA {
	t.Helper()
	return sign(t, &x509.Certificate{
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}, nil)
}

// Leaf returns a serving certificate signed by ca for 127.0.0.1, ::1 and
// localhost, valid from an hour ago for a day, after each of edits (to make
// a bad one) has changed its template.
func (ca *CA) Leaf(t testing.TB, edits ...func(*x509.Certificate)) tls.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:    []string{"localhost"},
	}
	for _, edit := range edits {
		edit(tmpl)
	}
	leaf := sign(t, tmpl, ca)
	return tls.Certificate{Certificate: [][]byte{leaf.Cert.Raw}, PrivateKey: leaf.key, Leaf: leaf.Cert}
}

// sign makes a new key and a certificate for it from tmpl (given a serial
// number of its own), signed by parent, or by the new key if parent is nil.
// It returns them as a CA, whether tmpl makes one or a leaf.
func sign(t testing.TB, tmpl *x509.Certificate, parent *CA) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = big.NewInt(serial.Add(1))
	issuer, issuerKey := tmpl, key
	if parent != nil {
		issuer, issuerKey = parent.Cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, &key.PublicKey, issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), key: key}
}

// PEM encodes a certificate of Leaf as the tls.crt and tls.key of a
// kubernetes.io/tls Secret.
func PEM(t testing.TB, c tls.Certificate) (crt, key []byte) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// Bundle concatenates the CAs' certificates, as a ca.crt during a rotation.
func Bundle(cas ...*CA) []byte {
	var b []byte
	for _, ca := range cas {
		b = append(b, ca.PEM...)
	}
	return b
}

// Server is an HTTP/2 TLS test server on 127.0.0.1 whose certificate can be
// switched while it runs, as a kube-apiserver restarted with a certificate
// from a new CA.
type Server struct {
	*httptest.Server
	cert       atomic.Pointer[tls.Certificate]
	handshakes atomic.Int32
	requests   atomic.Int32
}

// NewServer starts a Server with handler h and certificate cert. It is
// closed when the test ends. The certificate is chosen per handshake in
// tls.Config.GetConfigForClient, not GetCertificate: crypto/tls calls
// GetCertificate only when Certificates is empty or the client sends a
// server name, and a client of 127.0.0.1 sends none.
func NewServer(t testing.TB, h http.Handler, cert tls.Certificate) *Server {
	t.Helper()
	s := &Server{}
	s.cert.Store(&cert)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		h.ServeHTTP(w, r)
	}))
	srv.EnableHTTP2 = true
	// The server's complaints about clients that refuse its certificate are expected.
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		s.handshakes.Add(1)
		return &tls.Config{Certificates: []tls.Certificate{*s.cert.Load()}, NextProtos: []string{"h2", "http/1.1"}}, nil
	}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	s.Server = srv
	return s
}

// Switch makes the server present cert from now on and closes the client
// connections, so that the next request needs a new handshake.
func (s *Server) Switch(cert tls.Certificate) {
	s.cert.Store(&cert)
	s.CloseClientConnections()
}

// Handshakes is the number of TLS handshakes the server has begun.
func (s *Server) Handshakes() int { return int(s.handshakes.Load()) }

// Requests is the number of requests the server has received.
func (s *Server) Requests() int { return int(s.requests.Load()) }

// HostPort returns the server's host and port.
func (s *Server) HostPort(t testing.TB) (string, string) {
	t.Helper()
	host, port, err := net.SplitHostPort(s.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return host, port
}

// WriteFile replaces path with b as the kubelet updates a projected volume:
// a new file renamed over the old one, so that no reader sees half of it.
func WriteFile(t testing.TB, path string, b []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// Reads counts the reads of a file, as a ReadFile test seam.
type Reads struct{ n atomic.Int32 }

// ReadFile is os.ReadFile, counted.
func (r *Reads) ReadFile(name string) ([]byte, error) {
	r.n.Add(1)
	return os.ReadFile(name)
}

// N is the number of reads so far.
func (r *Reads) N() int { return int(r.n.Load()) }

// Clock is a clock for tests: it moves only when Advance is called.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a Clock at a fixed time.
func NewClock() *Clock { return &Clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
