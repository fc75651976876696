// SPDX-License-Identifier: Apache-2.0

package incluster

import (
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

	"github.com/incluster/incluster/internal/testca"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// caRotation is a testca.Rotation on a fake API server, with an in-cluster
// Client whose ca.crt holds the old CA, made with the clock and the count
// of reads of the Rotation.
type caRotation struct {
	*testca.Rotation
	dir string
	c   *Client
}

func newCARotation(t *testing.T) *caRotation {
	t.Helper()
	r := &caRotation{Rotation: testca.NewRotation(t, &fakeAPI{})}
	m := goodMount()
	m.CA = r.Old.PEM
	r.dir = fakeServiceAccount(t, m)
	r.CAFile = filepath.Join(r.dir, serviceaccount.CAFile)
	_, port := r.Server.HostPort(t)
	setServiceEnv(t, "127.0.0.1", port)
	seamReload(t, r.Clock, r.Reads)
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	r.CloseIdle = func() { utilnet.CloseIdleConnectionsFor(c.HTTPClient().Transport) }
	if _, err := c.APIVersions(t.Context()); err != nil {
		t.Fatalf("before the switch: %v", err)
	}
	return r
}

// seamReload points the CA reload's clock and file reads at clock and reads
// until the test ends.
func seamReload(t *testing.T, clock *testca.Clock, reads *testca.Reads) {
	t.Helper()
	testca.Seam(t, &caReloadNow, &caReloadReadFile, clock, reads)
}

// get calls APIVersions; its error must not hold the token.
func (r *caRotation) get(t *testing.T) func() error {
	return func() error {
		t.Helper()
		_, err := r.c.APIVersions(t.Context())
		if err != nil && strings.Contains(err.Error(), testToken) {
			t.Errorf("the error holds the token: %v", err)
		}
		return err
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
			if n := r.CheckRetry(t, func() error { return call(r.c) }); n != 0 {
				t.Errorf("%d more handshakes, want 0 (one connection)", n)
			}
		})
	}
}

// TestCARotationConcurrent: requests that fail at the same time read ca.crt
// once, and all succeed.
func TestCARotationConcurrent(t *testing.T) {
	r := newCARotation(t)
	r.SwitchTo(r.New.Leaf(t))
	testca.WriteFile(t, r.CAFile, testca.Bundle(r.New, r.Old))
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
	if n := r.Reads.N(); n != 1 {
		t.Errorf("ca.crt was read %d times, want once", n)
	}
}

// TestCARotationFileUnchanged: the server switched but ca.crt did not
// change (yet). Requests fail with the unknown-authority error and say that
// the file has not changed; within a second the file is read once, however
// many requests fail.
func TestCARotationFileUnchanged(t *testing.T) {
	r := newCARotation(t)
	r.CheckFileUnchanged(t, r.get(t))
	// And when the kubelet updates it, the next request a second later works.
	testca.WriteFile(t, r.CAFile, testca.Bundle(r.New, r.Old))
	r.Clock.Advance(time.Second)
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
			r.CheckBadFile(t, r.get(t), tc.write, tc.want)
			if n := r.Reads.N(); n != 2 {
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
	utilnet.CloseIdleConnectionsFor(c.HTTPClient().Transport) // see testca.Rotation.SwitchTo
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
	if cfg.TLSClientConfig.CAFile != r.CAFile {
		t.Fatalf("CAFile = %q, want %q", cfg.TLSClientConfig.CAFile, r.CAFile)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	get := func() error {
		resp, err := hc.Get(r.Server.URL + "/version")
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
	r.SwitchTo(r.New.Leaf(t))
	utilnet.CloseIdleConnectionsFor(hc.Transport) // and plain client-go's
	testca.WriteFile(t, r.CAFile, testca.Bundle(r.New, r.Old))
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
