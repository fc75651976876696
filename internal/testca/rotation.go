// SPDX-License-Identifier: Apache-2.0

package testca

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Rotation is the fixture of a CA rotation test: a Server whose certificate
// is signed by Old, a client under test whose CA file (CAFile) holds Old,
// and the clock and the count of reads that the client's CA reload uses
// (see Seam). Its methods are the checks that every such client must pass.
type Rotation struct {
	Server   *Server
	Old, New *CA
	Clock    *Clock
	Reads    *Reads
	// Set by the test with its client: the CA file, and a func that
	// closes the client's idle connections.
	CAFile    string
	CloseIdle func()
}

// NewRotation returns a Rotation whose Server answers with h. The test then
// writes CAFile, makes its client and sets CloseIdle.
func NewRotation(t testing.TB, h http.Handler) *Rotation {
	t.Helper()
	r := &Rotation{Old: NewCA(t, "old-ca"), New: NewCA(t, "new-ca"), Clock: NewClock(), Reads: &Reads{}}
	r.Server = NewServer(t, h, r.Old.Leaf(t))
	return r
}

// Seam points a package's CA reload seams, its clock (*now) and its file
// reads (*readFile), at clock and reads until the test ends.
func Seam(t testing.TB, now *func() time.Time, readFile *func(string) ([]byte, error), clock *Clock, reads *Reads) {
	t.Helper()
	oldNow, oldRead := *now, *readFile
	t.Cleanup(func() { *now, *readFile = oldNow, oldRead })
	*now, *readFile = clock.Now, reads.ReadFile
}

// SwitchTo makes the server present cert and closes its connections, as a
// restarted API server does, and the client's idle ones: without that, the
// next request may race the client's noticing the close and fail with a
// broken pipe before any handshake.
func (r *Rotation) SwitchTo(cert tls.Certificate) {
	r.Server.Switch(cert)
	r.CloseIdle()
}

// CheckRetry: the server switches to a certificate from New and CAFile
// holds the new bundle (New and Old) before the next request, call. That
// request fails its handshake, reads CAFile once, retries once on a new
// transport and succeeds. Three later calls succeed without reading the file
// again. It returns the number of handshakes of those three.
func (r *Rotation) CheckRetry(t *testing.T, call func() error) (laterHandshakes int) {
	t.Helper()
	r.SwitchTo(r.New.Leaf(t))
	WriteFile(t, r.CAFile, Bundle(r.New, r.Old))
	hs, reqs := r.Server.Handshakes(), r.Server.Requests()
	if err := call(); err != nil {
		t.Fatalf("first request after the switch: %v", err)
	}
	if n := r.Server.Requests() - reqs; n != 1 {
		t.Errorf("the server received %d requests, want 1", n)
	}
	if n := r.Reads.N(); n != 1 {
		t.Errorf("ca.crt was read %d times, want once", n)
	}
	if n := r.Server.Handshakes() - hs; n != 2 {
		t.Errorf("%d handshakes, want 2 (refused, then exactly one retry)", n)
	}
	hs = r.Server.Handshakes()
	for i := range 3 {
		if err := call(); err != nil {
			t.Fatalf("request %d after the switch: %v", i, err)
		}
	}
	if n := r.Reads.N(); n != 1 {
		t.Errorf("ca.crt was read %d times in all, want once", n)
	}
	return r.Server.Handshakes() - hs
}

// CheckFileUnchanged: the server switches to a certificate from New but
// CAFile does not change (yet). Each call fails with the unknown-authority
// error and says that the file has not changed; within a second the file is
// read once however many calls fail, and a second later once more.
func (r *Rotation) CheckFileUnchanged(t *testing.T, call func() error) {
	t.Helper()
	r.SwitchTo(r.New.Leaf(t))
	for range 5 {
		WantUnknownAuthority(t, call(), r.CAFile, "has not changed")
	}
	if n := r.Reads.N(); n != 1 {
		t.Errorf("ca.crt was read %d times in the same second, want once", n)
	}
	r.Clock.Advance(time.Second)
	WantUnknownAuthority(t, call(), r.CAFile, "has not changed")
	if n := r.Reads.N(); n != 2 {
		t.Errorf("ca.crt was read %d times, want twice (a second later, once more)", n)
	}
}

// CheckBadFile: the server switches to a certificate from New while write
// spoils CAFile. The call fails with an error that names the file and says
// want; the last good CA stays in use, so calls work when the server goes
// back to a certificate from Old, and once the file holds the new bundle,
// New works too.
func (r *Rotation) CheckBadFile(t *testing.T, call func() error, write func(t *testing.T, path string), want string) {
	t.Helper()
	r.SwitchTo(r.New.Leaf(t))
	write(t, r.CAFile)
	err := call()
	WantUnknownAuthority(t, err, r.CAFile, want, "the last good CA stays in use")
	t.Logf("the error: %v", err)

	r.SwitchTo(r.Old.Leaf(t))
	if err := call(); err != nil {
		t.Fatalf("with the old CA's certificate again: %v", err)
	}

	WriteFile(t, r.CAFile, Bundle(r.New, r.Old))
	r.SwitchTo(r.New.Leaf(t))
	r.Clock.Advance(time.Second)
	if err := call(); err != nil {
		t.Fatalf("with the new CA in ca.crt: %v", err)
	}
}

// WantUnknownAuthority checks that err is an unknown-authority failure (by
// type) whose message names caFile and holds each of want.
func WantUnknownAuthority(t testing.TB, err error, caFile string, want ...string) {
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
