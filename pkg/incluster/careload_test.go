// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"

	"github.com/incluster/incluster/pkg/internal/testca"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// caRotation is a fake API server whose certificate is signed by oldCA, and
// an in-cluster Client whose ca.crt holds oldCA, with a clock that stands
// still and a count of the reads of ca.crt after New.
type caRotation struct {
	srv          *testca.Server
	oldCA, newCA *testca.CA
	dir, caFile  string
	clock        *testca.Clock
	reads        *testca.Reads
	c            *Client
}

// switchTo makes the server present cert, closes its connections, and
// makes the Client drop its idle ones too. A restarted API server closes
// its connections as well; without the client-side close, the next request
// may race the client's noticing the close and fail with a broken pipe
// before any handshake.
func (r *caRotation) switchTo(t *testing.T, cert tls.Certificate, clients ...*http.Client) {
	t.Helper()
	r.srv.Switch(cert)
	for _, hc := range append(clients, r.c.HTTPClient()) {
		utilnet.CloseIdleConnectionsFor(hc.Transport)
	}
}

func newCARotation(t *testing.T) *caRotation {
	t.Helper()
	r := &caRotation{oldCA: testca.NewCA(t, "old-ca"), newCA: testca.NewCA(t, "new-ca"), clock: testca.NewClock(), reads: &testca.Reads{}}
	r.srv = testca.NewServer(t, &fakeAPI{}, r.oldCA.Leaf(t))
	m := goodMount()
	m.CA = r.oldCA.PEM
	r.dir = fakeServiceAccount(t, m)
	r.caFile = filepath.Join(r.dir, serviceaccount.CAFile)
	setServiceEnv(t, "127.0.0.1", portOf(t, r.srv))
	seamReload(t, r.clock, r.reads)
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	if _, err := c.APIVersions(t.Context()); err != nil {
		t.Fatalf("before the switch: %v", err)
	}
	return r
}

// seamReload points the CA reload's clock and file reads at clock and reads
// until the test ends.
func seamReload(t *testing.T, clock *testca.Clock, reads *testca.Reads) {
	t.Helper()
	oldNow, oldRead := caReloadNow, caReloadReadFile
	t.Cleanup(func() { caReloadNow, caReloadReadFile = oldNow, oldRead })
	caReloadNow, caReloadReadFile = clock.Now, reads.ReadFile
}

func portOf(t *testing.T, srv *testca.Server) string {
	t.Helper()
	_, port := srv.HostPort(t)
	return port
}

// wantUnknownAuthority checks that err is an unknown-authority failure
// (by type) whose message names the CA file and holds each of want.
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
	if strings.Contains(err.Error(), testToken) {
		t.Errorf("the error holds the token: %v", err)
	}
}

// TestCARotation: the API server switches to a certificate from a new CA and
// ca.crt is updated with the new bundle (new and old CA) before the next
// request. That request fails its handshake, reads ca.crt once, retries on a
// new transport and succeeds; the caller sees no failure. Later requests
// neither read the file nor shake hands again. WhoAmI is a POST: its body
// is replayed.
func TestCARotation(t *testing.T) {
	calls := map[string]func(*Client) error{
		"APIVersions": func(c *Client) error { _, err := c.APIVersions(t.Context()); return err },
		"WhoAmI":      func(c *Client) error { _, err := c.WhoAmI(t.Context()); return err },
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) {
			r := newCARotation(t)
			r.switchTo(t, r.newCA.Leaf(t))
			testca.WriteFile(t, r.caFile, testca.Bundle(r.newCA, r.oldCA))
			hs, reqs := r.srv.Handshakes(), r.srv.Requests()
			if err := call(r.c); err != nil {
				t.Fatalf("first request after the switch: %v", err)
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
			hs = r.srv.Handshakes()
			for i := range 3 {
				if err := call(r.c); err != nil {
					t.Fatalf("request %d after the switch: %v", i, err)
				}
			}
			if n := r.reads.N(); n != 1 {
				t.Errorf("ca.crt was read %d times in all, want once", n)
			}
			if n := r.srv.Handshakes() - hs; n != 0 {
				t.Errorf("%d more handshakes, want 0 (one connection)", n)
			}
		})
	}
}

// TestCARotationConcurrent: requests that fail at the same time read ca.crt
// once, and all succeed.
func TestCARotationConcurrent(t *testing.T) {
	r := newCARotation(t)
	r.switchTo(t, r.newCA.Leaf(t))
	testca.WriteFile(t, r.caFile, testca.Bundle(r.newCA, r.oldCA))
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Go(func() { _, errs[i] = r.c.APIVersions(t.Context()) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if n := r.reads.N(); n != 1 {
		t.Errorf("ca.crt was read %d times, want once", n)
	}
}

// TestCARotationFileUnchanged: the server switched but ca.crt did not
// change (yet). Requests fail with the unknown-authority error and say that
// the file has not changed; within a second the file is read once, however
// many requests fail.
func TestCARotationFileUnchanged(t *testing.T) {
	r := newCARotation(t)
	r.switchTo(t, r.newCA.Leaf(t))
	for range 5 {
		_, err := r.c.APIVersions(t.Context())
		wantUnknownAuthority(t, err, r.caFile, "has not changed")
	}
	if n := r.reads.N(); n != 1 {
		t.Errorf("ca.crt was read %d times in the same second, want once", n)
	}
	r.clock.Advance(time.Second)
	_, err := r.c.APIVersions(t.Context())
	wantUnknownAuthority(t, err, r.caFile, "has not changed")
	if n := r.reads.N(); n != 2 {
		t.Errorf("ca.crt was read %d times, want twice (a second later, once more)", n)
	}
	// And when the kubelet updates it, the next request a second later works.
	testca.WriteFile(t, r.caFile, testca.Bundle(r.newCA, r.oldCA))
	r.clock.Advance(time.Second)
	if _, err := r.c.APIVersions(t.Context()); err != nil {
		t.Fatalf("after ca.crt was updated: %v", err)
	}
}

// TestCARotationBadFile: ca.crt is replaced by garbage, emptied or removed
// mid-run while the server switches. The request fails with an error that
// names the file and says what is wrong; the last good CA stays in use, so
// when the server goes back to a certificate from the old CA, requests
// work; and once the file holds a valid bundle again, the new CA works too.
func TestCARotationBadFile(t *testing.T) {
	for name, tc := range map[string]struct {
		write func(t *testing.T, path string)
		want  string
	}{
		"garbage": {func(t *testing.T, p string) { testca.WriteFile(t, p, []byte("this is not a certificate\n")) }, "holds no PEM certificate"},
		"empty":   {func(t *testing.T, p string) { testca.WriteFile(t, p, nil) }, "is empty"},
		"missing": {func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}, "cannot be read (no such file or directory)"},
	} {
		t.Run(name, func(t *testing.T) {
			r := newCARotation(t)
			r.switchTo(t, r.newCA.Leaf(t))
			tc.write(t, r.caFile)
			_, err := r.c.APIVersions(t.Context())
			wantUnknownAuthority(t, err, r.caFile, tc.want, "the last good CA stays in use")
			t.Logf("the error: %v", err)

			r.switchTo(t, r.oldCA.Leaf(t))
			if _, err := r.c.APIVersions(t.Context()); err != nil {
				t.Fatalf("with the old CA's certificate again: %v", err)
			}

			testca.WriteFile(t, r.caFile, testca.Bundle(r.newCA, r.oldCA))
			r.switchTo(t, r.newCA.Leaf(t))
			r.clock.Advance(time.Second)
			if _, err := r.c.APIVersions(t.Context()); err != nil {
				t.Fatalf("with the new CA in ca.crt: %v", err)
			}
			if n := r.reads.N(); n != 2 {
				t.Errorf("ca.crt was read %d times, want twice", n)
			}
		})
	}
}

// TestCARotationKubeconfigCAFile: a kubeconfig's certificate-authority file
// is followed the same way.
func TestCARotationKubeconfigCAFile(t *testing.T) {
	forbidInCluster(t)
	oldCA, newCA := testca.NewCA(t, "old-ca"), testca.NewCA(t, "new-ca")
	srv := testca.NewServer(t, &fakeAPI{}, oldCA.Leaf(t))
	dir := t.TempDir()
	caFile := writeFile(t, filepath.Join(dir, "ca.pem"), string(oldCA.PEM))
	kc := writeFile(t, filepath.Join(dir, "config"), "apiVersion: v1\nkind: Config\ncurrent-context: test\n"+
		"clusters:\n- name: test\n  cluster:\n    server: "+srv.URL+"\n    certificate-authority: "+caFile+"\n"+
		"users:\n- name: test\n  user:\n    token: "+testToken+"\n"+
		"contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n    namespace: team-a\n")
	reads := &testca.Reads{}
	seamReload(t, testca.NewClock(), reads)
	c, err := New(WithKubeconfig(kc))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.APIVersions(t.Context()); err != nil {
		t.Fatalf("before the switch: %v", err)
	}
	srv.Switch(newCA.Leaf(t))
	utilnet.CloseIdleConnectionsFor(c.HTTPClient().Transport) // see switchTo
	testca.WriteFile(t, caFile, testca.Bundle(newCA, oldCA))
	if _, err := c.APIVersions(t.Context()); err != nil {
		t.Fatalf("after the switch: %v", err)
	}
	if n := reads.N(); n != 1 {
		t.Errorf("the CA file was read %d times, want once", n)
	}
}

// TestCARotationPlainClientGo is the negative control, and documents what
// plain client-go does: an HTTP client from rest.HTTPClientFor on the same
// in-cluster config (CAFile set) fails after the same switch although
// ca.crt already holds the new bundle, because client-go re-reads the file
// at most every 5 minutes (transport/ca_rotation.go), not after a failure.
func TestCARotationPlainClientGo(t *testing.T) {
	r := newCARotation(t)
	cfg, err := inClusterConfigFrom(r.dir)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLSClientConfig.CAFile != r.caFile {
		t.Fatalf("CAFile = %q, want %q", cfg.TLSClientConfig.CAFile, r.caFile)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	get := func() error {
		resp, err := hc.Get(r.srv.URL + "/version")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, resp.Body)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /version: %s", resp.Status)
		}
		return nil
	}
	if err := get(); err != nil {
		t.Fatalf("before the switch: %v", err)
	}
	r.switchTo(t, r.newCA.Leaf(t), hc)
	testca.WriteFile(t, r.caFile, testca.Bundle(r.newCA, r.oldCA))
	err = get()
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("plain client-go after the switch: err = %v, want an x509.UnknownAuthorityError (it re-reads ca.crt only every 5 minutes)", err)
	}
	// The Client on the same mount follows at once.
	if _, err := r.c.APIVersions(t.Context()); err != nil {
		t.Fatalf("Client after the switch: %v", err)
	}
}
