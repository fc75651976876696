// SPDX-License-Identifier: Apache-2.0

package direct

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	"github.com/incluster/incluster/pkg/internal/defaults"
	"github.com/incluster/incluster/pkg/internal/hint"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// DefaultHost is the API server's name in cluster DNS, as on the docs page.
const DefaultHost = "kubernetes.default.svc"

// maxBody bounds what is read of an answer; discovery documents are small.
const maxBody = 4 << 20

// DefaultTimeout bounds each request when Options.Timeout is zero; it is
// incluster.DefaultRequestTimeout too.
const DefaultTimeout = defaults.RequestTimeout

// Options say where the API server is and where the credentials are.
// The zero value means: https://kubernetes.default.svc:443, credentials from
// serviceaccount.DefaultDir, DefaultTimeout per request.
type Options struct {
	// Host is host or host:port of the API server. Empty means
	// DefaultHost; HostFromEnv gives it from KUBERNETES_SERVICE_HOST/_PORT.
	Host string
	// Dir is the service-account directory; empty means serviceaccount.DefaultDir.
	Dir string
	// Timeout bounds each request; zero means DefaultTimeout.
	Timeout time.Duration
	// UserAgent is sent with every request; empty means "incluster-direct".
	UserAgent string
}

// Client sends authenticated GETs to one API server. It is safe for
// concurrent use.
type Client struct {
	base      string
	caPath    string
	dir       string // the service-account directory: the token is read per request
	userAgent string
	http      *http.Client
}

// New checks the token and reads the CA and returns a client for opts.Host.
// Its errors are *serviceaccount.ConfigError values naming the file at fault.
// Like the docs page's $(cat token), every request reads the token file
// again, so a token the kubelet rotated is used at once.
func New(opts Options) (*Client, error) {
	if _, err := serviceaccount.Token(opts.Dir); err != nil {
		return nil, err
	}
	caPath, pool, err := serviceaccount.CAPath(opts.Dir)
	if err != nil {
		return nil, err
	}
	host := opts.Host
	if host == "" {
		host = DefaultHost
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(strings.Trim(host, "[]"), "443")
	}
	timeout := opts.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	ua := opts.UserAgent
	if ua == "" {
		ua = "incluster-direct"
	}
	transport := &http.Transport{
		Proxy:               nil, // in-cluster traffic never goes through an HTTP proxy
		TLSClientConfig:     &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: timeout,
		DialContext:         (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 4,
		IdleConnTimeout:     90 * time.Second,
	}
	return &Client{
		base:      "https://" + host,
		caPath:    caPath,
		dir:       opts.Dir,
		userAgent: ua,
		http:      &http.Client{Transport: followCA(caPath, transport), Timeout: timeout}, // careload.go
	}, nil
}

// HostFromEnv is the Host the kubelet advertises in KUBERNETES_SERVICE_HOST
// and KUBERNETES_SERVICE_PORT (an IP address, so it needs no cluster DNS).
// (Not FromEnv: that name is the namespace source, serviceaccount.FromEnv.)
func HostFromEnv() (string, error) { return serviceaccount.Host() }

// URL is the base URL requests go to, e.g. https://kubernetes.default.svc:443.
func (c *Client) URL() string { return c.base }

// APIVersions GETs /api, the document the docs page's curl prints.
func (c *Client) APIVersions(ctx context.Context) (*metav1.APIVersions, error) {
	var v metav1.APIVersions
	if err := c.Get(ctx, "/api", &v); err != nil {
		return nil, err
	}
	if v.Kind != "APIVersions" {
		return nil, fmt.Errorf("GET %s/api: the answer is not an APIVersions document (kind %q); is %s a Kubernetes API server?", c.base, v.Kind, c.base)
	}
	return &v, nil
}

// ServerVersion GETs /version. An answer without gitVersion is an error, as
// in package incluster: it is not a Kubernetes API server's.
func (c *Client) ServerVersion(ctx context.Context) (*version.Info, error) {
	var v version.Info
	if err := c.Get(ctx, "/version", &v); err != nil {
		return nil, err
	}
	if v.GitVersion == "" {
		return nil, fmt.Errorf("GET %s/version: the answer has no gitVersion; is %s a Kubernetes API server?", c.base, c.base)
	}
	return &v, nil
}

// StatusError is a non-2xx answer from the API server.
type StatusError struct {
	URL     string
	Code    int
	Message string // the Status message the server sent, if any
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("GET %s: %d %s", e.URL, e.Code, http.StatusText(e.Code))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	if h := hint.Status(e.Code, hint.ForPath(urlPath(e.URL))); h != "" {
		msg += " (" + h + ")"
	}
	return msg
}

// urlPath is the path of rawURL, "" if it does not parse.
func urlPath(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	return u.Path
}

// Get sends an authenticated GET for path and decodes the JSON answer into out.
func (c *Client) Get(ctx context.Context, path string, out any) error {
	target := c.base + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	token, err := serviceaccount.Token(c.dir)
	if err != nil {
		return fmt.Errorf("GET %s: %w", target, err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w%s", target, unwrapURLError(err), c.hint(err))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("GET %s: reading the answer: %w", target, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		var st metav1.Status
		_ = json.Unmarshal(body, &st) // best effort: the message, if it is a Status
		return &StatusError{URL: target, Code: resp.StatusCode, Message: st.Message}
	}
	if ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); ct != "application/json" {
		return fmt.Errorf("GET %s: the answer is %q, not JSON; is %s a Kubernetes API server?", target, ct, c.base)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("GET %s: the answer is not valid JSON: %w", target, err)
	}
	return nil
}

// hint says what to do about a transport error.
func (c *Client) hint(err error) string {
	var cv *tls.CertificateVerificationError
	var ne net.Error
	switch {
	case errors.Is(err, context.Canceled):
		return ""
	case errors.As(err, &cv):
		return " (the server's certificate is not signed by the CA in " + c.caPath + ": mount this cluster's CA bundle, or check that the host is this cluster's API server)"
	case errors.As(err, &ne) && ne.Timeout():
		return " (the API server did not answer in time: check that it runs and that a NetworkPolicy allows egress to it)"
	default:
		return " (cannot reach the API server: check the host name, cluster DNS, and NetworkPolicies that restrict egress)"
	}
}

// unwrapURLError drops *url.Error's "Get \"URL\":" prefix, which the caller's
// message already carries. Any other error is returned as it is.
func unwrapURLError(err error) error {
	if ue, ok := err.(*url.Error); ok && ue.Err != nil {
		return ue.Err
	}
	return err
}
