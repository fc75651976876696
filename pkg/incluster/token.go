package incluster

import (
	"io"
	"net/http"

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
