// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"io"
	"net/http"
	"net/http/httptrace"
	"sync"
	"sync/atomic"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/transport"
)

// useResettableToken moves cfg's token file into a token source that forgets
// its cached token on a 401. client-go re-reads a BearerTokenFile every
// minute, but its bearer-token transport ignores 401s; the token-source
// transport (transport.ResettableTokenSourceWrapTransport) drops the cached
// token when the server refuses it, so the next request reads the file.
func useResettableToken(cfg *rest.Config) {
	ts := transport.NewCachedFileTokenSource(cfg.BearerTokenFile)
	cfg.Wrap(transport.ResettableTokenSourceWrapTransport(ts))
	cfg.BearerToken, cfg.BearerTokenFile = "", ""
}

// retryUnauthorized resends a request once when the API server answers 401
// Unauthorized. Below it, the token source of useResettableToken has dropped
// its cached token, so the retry reads the token file again: a rotated token, with the old one revoked, works at the first
// request instead of failing until client-go's periodic re-read a minute
// later. A request whose body cannot be replayed is not retried.
type retryUnauthorized struct{ next http.RoundTripper }

func (t *retryUnauthorized) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil || resp.StatusCode != http.StatusUnauthorized {
		return resp, err
	}
	retry := req.Clone(req.Context())
	if req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return resp, nil
		}
		body, err := req.GetBody()
		if err != nil {
			return resp, nil
		}
		retry.Body = body
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	return t.next.RoundTrip(retry)
}

// WrappedRoundTripper lets client-go's transport helpers see the transport below.
func (t *retryUnauthorized) WrappedRoundTripper() http.RoundTripper { return t.next }

// oneConnection makes the first request of a client go alone until it has
// its connection, and the requests sent meanwhile wait for that moment. Go's
// transport would otherwise dial one TLS connection per request that starts
// before the first connection is up, so a burst of concurrent requests at
// start (the demo's report sends four) costs four TLS handshakes instead of
// one. Once the first connection is up, HTTP/2 multiplexes every request on
// it. Over plain HTTP (WithProxy) there is no HTTP/2: each request in flight
// takes a connection of its own, without a handshake to save. The wait is
// bounded by the request's context.
type oneConnection struct {
	next    http.RoundTripper
	started atomic.Bool
	ready   chan struct{} // closed when the first request has a connection, or failed
	release func()
}

func newOneConnection(next http.RoundTripper) *oneConnection {
	c := &oneConnection{next: next, ready: make(chan struct{})}
	c.release = sync.OnceFunc(func() { close(c.ready) })
	return c
}

func (c *oneConnection) RoundTrip(req *http.Request) (*http.Response, error) {
	if c.started.CompareAndSwap(false, true) {
		trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) { c.release() }}
		resp, err := c.next.RoundTrip(req.WithContext(httptrace.WithClientTrace(req.Context(), trace)))
		c.release()
		return resp, err
	}
	select {
	case <-c.ready:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	return c.next.RoundTrip(req)
}

// WrappedRoundTripper lets client-go's transport helpers see the transport below.
func (c *oneConnection) WrappedRoundTripper() http.RoundTripper { return c.next }
