// SPDX-License-Identifier: Apache-2.0

// Package careload follows a CA bundle file that changes while a program
// runs, as the service-account ca.crt does when the cluster's CA is rotated:
// the kubelet updates the file from the kube-root-ca.crt ConfigMap, and the
// API server starts serving a certificate from the new CA.
//
// Transport sends each request through the transport of the moment. When a
// request fails because the server's certificate is signed by an unknown
// authority, it reads the file again at once; if the contents changed and
// parse as a CA bundle, it builds a transport that trusts them, swaps it in
// atomically, closes the old one's idle connections and sends the request
// once more (if its body can be replayed). Unless the last read found a new
// bundle, the file is read at most once per interval (one second), so a
// server that fails every handshake does not make every request read the
// file. A file that is missing, empty or not a
// CA bundle changes nothing: the last good transport stays in use and the
// request's error says what is wrong with the file.
//
// Packages incluster and direct both use it, so that they behave the same.
package careload

import (
	"bytes"
	"crypto/x509"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	utilnet "k8s.io/apimachinery/pkg/util/net"

	"github.com/incluster/incluster/pkg/serviceaccount"
)

// DefaultInterval is the least time between two reads of the file.
const DefaultInterval = time.Second

// Options configure a Transport.
type Options struct {
	// Path is the CA bundle file to follow.
	Path string
	// PEM is what Transport trusts: the file's contents when it was built.
	// Nil means unknown, so that the first read counts as a change.
	PEM []byte
	// Transport is the transport of the start, trusting PEM.
	Transport http.RoundTripper
	// Build returns a transport that trusts pool, which was parsed from pem.
	// It is never called concurrently.
	Build func(pem []byte, pool *x509.CertPool) (http.RoundTripper, error)
	// Interval is the least time between two reads of the file, unless the
	// last read found a new bundle; zero means DefaultInterval.
	Interval time.Duration
	// Now and ReadFile are test seams; nil means time.Now and os.ReadFile.
	Now      func() time.Time
	ReadFile func(name string) ([]byte, error)
}

// Transport is an http.RoundTripper that follows a CA bundle file; see the
// package doc. It is safe for concurrent use.
type Transport struct {
	path     string
	build    func([]byte, *x509.CertPool) (http.RoundTripper, error)
	interval time.Duration
	now      func() time.Time
	readFile func(string) ([]byte, error)

	cur atomic.Pointer[current]

	mu       sync.Mutex // serializes reloads, and guards what follows
	lastRead time.Time  // zero: never read, or the last read swapped the transport
	lastWhy  string     // what the last read found, for the failures until the next read
}

// current is a transport and the bundle it trusts.
type current struct {
	rt  http.RoundTripper
	pem []byte
}

// New returns a Transport for o.
func New(o Options) *Transport {
	t := &Transport{path: o.Path, build: o.Build, interval: o.Interval, now: o.Now, readFile: o.ReadFile}
	if t.interval <= 0 {
		t.interval = DefaultInterval
	}
	if t.now == nil {
		t.now = time.Now
	}
	if t.readFile == nil {
		t.readFile = os.ReadFile
	}
	t.cur.Store(&current{rt: o.Transport, pem: o.PEM})
	return t
}

// IsUnknownAuthority reports whether err is, or wraps, a certificate
// verification failure because no trusted CA signed the server's
// certificate (x509.UnknownAuthorityError; crypto/tls wraps it in a
// *tls.CertificateVerificationError, net/http in a *url.Error). It matches
// by type, never by message.
func IsUnknownAuthority(err error) bool {
	var ua x509.UnknownAuthorityError
	return errors.As(err, &ua)
}

// Error is the error of a request that failed because of an unknown
// authority after the CA file was re-read (or, within the interval, not
// re-read again). It says what the file holds and wraps the request's error,
// so errors.As finds the x509.UnknownAuthorityError.
type Error struct {
	Path   string // the CA file
	Reason string // what re-reading the file found, a full sentence without the file
	Err    error  // the request's error
}

func (e *Error) Error() string {
	return e.Path + ` was re-read after "certificate signed by unknown authority" but ` + e.Reason + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// RoundTrip sends req through the current transport; see the package doc.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	used := t.cur.Load()
	resp, err := used.rt.RoundTrip(req)
	if err == nil || !IsUnknownAuthority(err) || req.Context().Err() != nil {
		return resp, err
	}
	next, why := t.reload(used)
	if next == nil {
		return nil, &Error{Path: t.path, Reason: why, Err: err}
	}
	retry, ok := replayable(req)
	if !ok {
		return nil, &Error{Path: t.path, Reason: "it changed and its new CA bundle is now in use; this request was not sent again because its body cannot be replayed", Err: err}
	}
	resp, err = next.rt.RoundTrip(retry)
	if err != nil && IsUnknownAuthority(err) {
		return nil, &Error{Path: t.path, Reason: "its new CA bundle, now in use, does not hold the server's CA either", Err: err}
	}
	return resp, err
}

// reload reads the file unless it was read less than an interval ago, and
// swaps the transport if the file changed and holds a CA bundle. used is the
// transport the failed request went through. It returns the transport to
// retry with, or nil and what is wrong.
func (t *Transport) reload(used *current) (*current, string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if cur := t.cur.Load(); cur != used {
		return cur, "" // another request swapped it meanwhile: retry on the new one
	}
	now := t.now()
	if !t.lastRead.IsZero() && now.Sub(t.lastRead) < t.interval {
		return nil, t.lastWhy
	}
	t.lastRead = now
	const kept = "; the last good CA stays in use"
	b, err := t.readFile(t.path)
	switch {
	case err != nil:
		t.lastWhy = "it cannot be read (" + errText(err) + ")" + kept
	case len(bytes.TrimSpace(b)) == 0:
		t.lastWhy = "it is empty" + kept
	case bytes.Equal(b, used.pem):
		t.lastWhy = "it has not changed, and no CA in it signed the server's certificate (is the host this cluster's API server? during a CA rotation, the kubelet updates the file within a minute or two)"
	default:
		pool, err := serviceaccount.ParseCA(b)
		if err != nil {
			t.lastWhy = "it " + strings.TrimPrefix(err.Error(), "the CA bundle ") + kept
			break
		}
		rt, err := t.build(b, pool)
		if err != nil {
			t.lastWhy = "no transport could be built with its CA bundle (" + err.Error() + ")" + kept
			break
		}
		next := &current{rt: rt, pem: b}
		t.cur.Store(next)
		// Requests under way, watches included, keep their connections.
		utilnet.CloseIdleConnectionsFor(used.rt)
		// The limit is for a file that has not changed: should the new
		// bundle fail too, the next failure reads the file again at once.
		t.lastRead, t.lastWhy = time.Time{}, ""
		return next, ""
	}
	return nil, t.lastWhy
}

// replayable returns a copy of req to send again, or false if its body
// cannot be read again (as for the 401 retry of package incluster).
func replayable(req *http.Request) (*http.Request, bool) {
	retry := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, false
		}
		body, err := req.GetBody()
		if err != nil {
			return nil, false
		}
		retry.Body = body
	}
	return retry, true
}

// WrappedRoundTripper returns the current transport, for client-go's
// transport helpers (e.g. utilnet.CloseIdleConnectionsFor).
func (t *Transport) WrappedRoundTripper() http.RoundTripper { return t.cur.Load().rt }

// errText is the OS error without the path it repeats.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}
