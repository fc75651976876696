// SPDX-License-Identifier: Apache-2.0

package careload

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/incluster/incluster/internal/testca"
)

func TestIsUnknownAuthority(t *testing.T) {
	ua := x509.UnknownAuthorityError{}
	for _, tc := range []struct {
		name string
		err  error
		want bool
	}{
		{"bare", ua, true},
		{"as crypto/tls and net/http wrap it", &url.Error{Op: "Get", URL: "https://x", Err: &tls.CertificateVerificationError{Err: ua}}, true},
		{"wrapped by fmt", fmt.Errorf("GET /api: %w", &tls.CertificateVerificationError{Err: ua}), true},
		{"another verification failure", &tls.CertificateVerificationError{Err: x509.HostnameError{}}, false},
		{"the same words, not the type", errors.New("x509: certificate signed by unknown authority"), false},
		{"nil", nil, false},
	} {
		if got := IsUnknownAuthority(tc.err); got != tc.want {
			t.Errorf("%s: IsUnknownAuthority = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// fakeRT fails every request with an unknown-authority error unless it
// trusts the server's CA, and counts the requests it sends.
type fakeRT struct {
	trusts bool
	sent   atomic.Int32
	bodies []string
}

func (f *fakeRT) RoundTrip(req *http.Request) (*http.Response, error) {
	f.sent.Add(1)
	if req.Body != nil {
		b, _ := io.ReadAll(req.Body)
		_ = req.Body.Close()
		f.bodies = append(f.bodies, string(b))
	}
	if !f.trusts {
		return nil, &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}
	}
	return &http.Response{StatusCode: http.StatusOK, Body: http.NoBody, Request: req}, nil
}

type fixture struct {
	path  string
	old   *fakeRT
	built []*fakeRT
	reads *testca.Reads
	clock *testca.Clock
	tr    *Transport
}

// newFixture: a Transport on old, whose Build returns a transport that
// trusts the server when the bundle holds serverCA.
func newFixture(t *testing.T, serverCA *testca.CA, startPEM []byte) *fixture {
	f := &fixture{path: filepath.Join(t.TempDir(), "ca.crt"), old: &fakeRT{}, reads: &testca.Reads{}, clock: testca.NewClock()}
	testca.WriteFile(t, f.path, startPEM)
	f.tr = New(Options{Path: f.path, PEM: startPEM, Transport: f.old,
		Build: func(pem []byte, _ *x509.CertPool) (http.RoundTripper, error) {
			rt := &fakeRT{trusts: bytes.Contains(pem, serverCA.PEM)}
			f.built = append(f.built, rt)
			return rt, nil
		},
		Now: f.clock.Now, ReadFile: f.reads.ReadFile})
	return f
}

func post(t *testing.T, body string, replayable bool) *http.Request {
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "https://127.0.0.1/x", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if !replayable {
		req.GetBody = nil
	}
	return req
}

// TestRetryReplaysBody: after the swap, the request is sent once more on
// the new transport, with its body.
func TestRetryReplaysBody(t *testing.T) {
	oldCA, newCA := testca.NewCA(t, "old"), testca.NewCA(t, "new")
	f := newFixture(t, newCA, oldCA.PEM)
	testca.WriteFile(t, f.path, testca.Bundle(newCA, oldCA))
	resp, err := f.tr.RoundTrip(post(t, "hello", true))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if len(f.built) != 1 || f.built[0].sent.Load() != 1 || f.built[0].bodies[0] != "hello" {
		t.Fatalf("built %d transports; want one that sent the request once with its body", len(f.built))
	}
	if f.tr.WrappedRoundTripper() != f.built[0] {
		t.Error("the new transport is not the current one")
	}
}

// TestNoRetryWithoutGetBody: a body that cannot be replayed is not sent
// again, but the new CA is in use for the next request.
func TestNoRetryWithoutGetBody(t *testing.T) {
	oldCA, newCA := testca.NewCA(t, "old"), testca.NewCA(t, "new")
	f := newFixture(t, newCA, oldCA.PEM)
	testca.WriteFile(t, f.path, testca.Bundle(newCA, oldCA))
	_, err := f.tr.RoundTrip(post(t, "hello", false))
	if err == nil || !strings.Contains(err.Error(), "cannot be replayed") || !IsUnknownAuthority(err) {
		t.Fatalf("err = %v, want the unknown-authority error saying the request was not sent again", err)
	}
	if f.built[0].sent.Load() != 0 {
		t.Error("the request was sent again")
	}
	if _, err := f.tr.RoundTrip(post(t, "next", false)); err != nil {
		t.Fatalf("the next request: %v", err)
	}
}

// TestNewBundleWithoutServerCA: the file changed, but not to a bundle with
// the server's CA: the error says so, and the next failure reads the file
// again at once (the one-second limit is for a file that has not changed),
// then not again within the second.
func TestNewBundleWithoutServerCA(t *testing.T) {
	oldCA, otherCA, serverCA := testca.NewCA(t, "old"), testca.NewCA(t, "other"), testca.NewCA(t, "server")
	f := newFixture(t, serverCA, oldCA.PEM)
	testca.WriteFile(t, f.path, otherCA.PEM)
	_, err := f.tr.RoundTrip(post(t, "x", true))
	if err == nil || !strings.Contains(err.Error(), "does not hold the server's CA either") {
		t.Fatalf("err = %v", err)
	}
	for range 3 {
		_, err = f.tr.RoundTrip(post(t, "x", true))
		if err == nil || !strings.Contains(err.Error(), "has not changed") {
			t.Fatalf("err = %v, want: has not changed", err)
		}
	}
	if n := f.reads.N(); n != 2 {
		t.Errorf("%d reads, want 2", n)
	}
	f.clock.Advance(999 * time.Millisecond)
	_, _ = f.tr.RoundTrip(post(t, "x", true))
	if n := f.reads.N(); n != 2 {
		t.Errorf("%d reads 999 ms later, want still 2", n)
	}
	f.clock.Advance(time.Millisecond)
	_, _ = f.tr.RoundTrip(post(t, "x", true))
	if n := f.reads.N(); n != 3 {
		t.Errorf("%d reads a second later, want 3", n)
	}
}

// TestOtherErrorsPassThrough: errors other than an unknown authority do
// not read the file.
func TestOtherErrorsPassThrough(t *testing.T) {
	ca := testca.NewCA(t, "ca")
	want := errors.New("connection refused")
	reads := &testca.Reads{}
	tr := New(Options{Path: "/nonexistent", PEM: ca.PEM, ReadFile: reads.ReadFile,
		Transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, want })})
	if _, err := tr.RoundTrip(post(t, "x", true)); err != want {
		t.Errorf("err = %v, want %v unchanged", err, want)
	}
	if reads.N() != 0 {
		t.Error("the file was read")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
