// SPDX-License-Identifier: Apache-2.0

package direct

import (
	"os"
	"path/filepath"
	"testing"

	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/incluster/incluster/internal/testca"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// caRotation is a testca.Rotation with a Client whose ca.crt holds the old
// CA, made with the clock and the count of reads of the Rotation.
type caRotation struct {
	*testca.Rotation
	c *Client
}

func newCARotation(t *testing.T) *caRotation {
	t.Helper()
	r := &caRotation{Rotation: testca.NewRotation(t, reply(200, "application/json", apiVersionsJSON))}
	dir := t.TempDir()
	r.CAFile = filepath.Join(dir, serviceaccount.CAFile)
	testca.WriteFile(t, r.CAFile, r.Old.PEM)
	writeToken(t, dir, testToken)
	testca.Seam(t, &caReloadNow, &caReloadReadFile, r.Clock, r.Reads)
	c, err := New(Options{Host: r.Server.Listener.Addr().String(), Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	r.CloseIdle = func() { utilnet.CloseIdleConnectionsFor(c.http.Transport) }
	if _, err := c.APIVersions(t.Context()); err != nil {
		t.Fatalf("before the switch: %v", err)
	}
	return r
}

// get makes one request; its error must not hold the token.
func (r *caRotation) get(t *testing.T) func() error {
	return func() error {
		t.Helper()
		_, err := r.c.APIVersions(t.Context())
		noToken(t, err)
		return err
	}
}

// TestCARotation: the server switches to a certificate from a new CA and
// ca.crt holds the new bundle before the next request, which reads the file
// once, retries once on a new transport and succeeds.
func TestCARotation(t *testing.T) {
	r := newCARotation(t)
	r.CheckRetry(t, r.get(t))
}

// TestCARotationFileUnchanged: with ca.crt not (yet) changed, requests fail
// with the unknown-authority error, and within a second the file is read
// once however many fail.
func TestCARotationFileUnchanged(t *testing.T) {
	r := newCARotation(t)
	r.CheckFileUnchanged(t, r.get(t))
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
			r.CheckBadFile(t, r.get(t), tc.write, tc.want)
		})
	}
}
