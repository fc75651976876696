// SPDX-License-Identifier: Apache-2.0

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// The new certificate names the same server as the current one and verifies
// against the new CA only.
func TestRun(t *testing.T) {
	dir := t.TempDir()
	first, err := run(writeCurrent(t, dir), filepath.Join(dir, "1"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	second, err := run(filepath.Join(dir, "1", "apiserver.crt"), filepath.Join(dir, "2"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if first == second {
		t.Fatalf("two rotations gave the same CA name %q", first)
	}
	leaf, _ := readCert(filepath.Join(dir, "2", "apiserver.crt"))
	if !slices.Equal(leaf.DNSNames, []string{"kubernetes.default.svc", "localhost"}) || len(leaf.IPAddresses) != 1 || !leaf.IPAddresses[0].Equal(net.ParseIP("10.96.0.1")) {
		t.Errorf("names: DNS %v, IP %v; want those of the current certificate", leaf.DNSNames, leaf.IPAddresses)
	}
	for _, c := range []struct {
		ca   string
		want bool
	}{{"2", true}, {"1", false}} {
		pool := x509.NewCertPool()
		b, _ := os.ReadFile(filepath.Join(dir, c.ca, "ca.crt"))
		pool.AppendCertsFromPEM(b)
		_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "kubernetes.default.svc"})
		if (err == nil) != c.want {
			t.Errorf("verify against CA %s: %v, want ok=%v", c.ca, err, c.want)
		}
	}
	if st, _ := os.Stat(filepath.Join(dir, "2", "ca.key")); st.Mode().Perm() != 0o600 {
		t.Errorf("ca.key mode %v, want 0600", st.Mode().Perm())
	}
}

func TestRunRejectsNoNames(t *testing.T) {
	dir := t.TempDir()
	if _, err := run(writeCurrent(t, dir), filepath.Join(dir, "1"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := run(filepath.Join(dir, "1", "ca.crt"), filepath.Join(dir, "x"), time.Now()); err == nil {
		t.Error("a CA certificate (no server names) was taken as the current serving certificate")
	}
}

// writeCurrent writes a serving certificate from a throwaway CA, as the
// cluster's first one.
func writeCurrent(t *testing.T, dir string) string {
	t.Helper()
	seed := filepath.Join(dir, "seed.crt")
	tmpl := &x509.Certificate{DNSNames: []string{"kubernetes.default.svc", "localhost"}, IPAddresses: []net.IP{net.ParseIP("10.96.0.1")}}
	b, err := selfSigned(tmpl)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(seed, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return seed
}

func selfSigned(tmpl *x509.Certificate) ([]byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}
