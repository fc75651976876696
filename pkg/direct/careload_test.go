// SPDX-License-Identifier: Apache-2.0

package direct

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/incluster/incluster/pkg/internal/testca"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// caRotation is a test server whose certificate is signed by oldCA and a
// Client whose ca.crt holds oldCA, with a clock that stands still and a
// count of the reads of ca.crt after New.
type caRotation struct {
	srv          *testca.Server
	oldCA, newCA *testca.CA
	caFile       string
	clock        *testca.Clock
	reads        *testca.Reads
	c            *Client
}

func newCARotation(t *testing.T) *caRotation {
	t.Helper()
	r := &caRotation{oldCA: testca.NewCA(t, "old-ca"), newCA: testca.NewCA(t, "new-ca"), clock: testca.NewClock(), reads: &testca.Reads{}}
	r.srv = testca.NewServer(t, reply(200, "application/json", apiVersionsJSON), r.oldCA.Leaf(t))
	dir := t.TempDir()
	r.caFile = filepath.Join(dir, serviceaccount.CAFile)
	testca.WriteFile(t, r.caFile, r.oldCA.PEM)
	writeToken(t, dir, testToken)
	oldNow, oldRead := caReloadNow, caReloadReadFile
	t.Cleanup(func() { caReloadNow, caReloadReadFile = oldNow, oldRead })
	caReloadNow, caReloadReadFile = r.clock.Now, r.reads.ReadFile
	c, err := New(Options{Host: r.srv.Listener.Addr().String(), Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	if _, err := c.APIVersions(t.Context()); err != nil {
		t.Fatalf("before the switch: %v", err)
	}
	return r
}

// switchTo makes the server present cert and closes its connections, and
// the client's idle ones: without that, the next request may race the
// client's noticing the close and fail with a broken pipe first.
func (r *caRotation) switchTo(t *testing.T, cert tls.Certificate) {
	t.Helper()
	r.srv.Switch(cert)
	utilnet.CloseIdleConnectionsFor(r.c.http.Transport)
}

func (r *caRotation) get(t *testing.T) error {
	t.Helper()
	_, err := r.c.APIVersions(t.Context())
	noToken(t, err)
	return err
}

// wantUnknownAuthority checks that err is an unknown-authority failure (by
// type) whose message names the CA file and holds each of want.
func wantUnknownAuthority(t *testing.T, err error, caFile string, want ...string) {
	t.Helper()
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("err = %v, want an x509.UnknownAuthorityError", err)
	}
	for _, w := range append([]string{caFile}, want...) {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the error does not say %q: %v", w, err)
		}
	}
}

// TestCARotation: the server switches to a certificate from a new CA and
// ca.crt holds the new bundle before the next request, which reads the file
// once, retries once on a new transport and succeeds.
func TestCARotation(t *testing.T) {
	r := newCARotation(t)
	r.switchTo(t, r.newCA.Leaf(t))
	testca.WriteFile(t, r.caFile, testca.Bundle(r.newCA, r.oldCA))
	hs, reqs := r.srv.Handshakes(), r.srv.Requests()
	if err := r.get(t); err != nil {
		t.Fatalf("after the switch: %v", err)
	}
	if n := r.srv.Requests() - reqs; n != 1 {
		t.Errorf("the server received %d requests, want 1", n)
	}
	if n := r.reads.N(); n != 1 {
		t.Errorf("ca.crt was read %d times, want once", n)
	}
	if n := r.srv.Handshakes() - hs; n != 2 {
		t.Errorf("%d handshakes, want 2 (refused, then exactly one retry)", n)
	}
	for i := range 3 {
		if err := r.get(t); err != nil {
			t.Fatalf("request %d after the switch: %v", i, err)
		}
	}
	if n := r.reads.N(); n != 1 {
		t.Errorf("ca.crt was read %d times in all, want once", n)
	}
}

// TestCARotationFileUnchanged: with ca.crt not (yet) changed, requests fail
// with the unknown-authority error, and within a second the file is read
// once however many fail.
func TestCARotationFileUnchanged(t *testing.T) {
	r := newCARotation(t)
	r.switchTo(t, r.newCA.Leaf(t))
	for range 5 {
		wantUnknownAuthority(t, r.get(t), r.caFile, "has not changed")
	}
	if n := r.reads.N(); n != 1 {
		t.Errorf("ca.crt was read %d times in the same second, want once", n)
	}
	r.clock.Advance(time.Second)
	wantUnknownAuthority(t, r.get(t), r.caFile, "has not changed")
	if n := r.reads.N(); n != 2 {
		t.Errorf("ca.crt was read %d times, want twice (a second later, once more)", n)
	}
}

// TestCARotationBadFile: ca.crt replaced by garbage, or removed, gives an
// error naming the file; the last good CA stays in use, so requests work
// when the server goes back to the old CA's certificate, and the new CA
// works once the file is valid again.
func TestCARotationBadFile(t *testing.T) {
	for name, tc := range map[string]struct {
		write func(t *testing.T, path string)
		want  string
	}{
		"garbage": {func(t *testing.T, p string) {
			testca.WriteFile(t, p, []byte("-----BEGIN CERTIFICATE-----\nnot base64\n"))
		}, "holds no PEM certificate"},
		"missing": {func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, "cannot be read"},
	} {
		t.Run(name, func(t *testing.T) {
			r := newCARotation(t)
			r.switchTo(t, r.newCA.Leaf(t))
			tc.write(t, r.caFile)
			err := r.get(t)
			wantUnknownAuthority(t, err, r.caFile, tc.want, "the last good CA stays in use")
			t.Logf("the error: %v", err)

			r.switchTo(t, r.oldCA.Leaf(t))
			if err := r.get(t); err != nil {
				t.Fatalf("with the old CA's certificate again: %v", err)
			}

			testca.WriteFile(t, r.caFile, testca.Bundle(r.newCA, r.oldCA))
			r.switchTo(t, r.newCA.Leaf(t))
			r.clock.Advance(time.Second)
			if err := r.get(t); err != nil {
				t.Fatalf("with the new CA in ca.crt: %v", err)
			}
		})
	}
}
