// SPDX-License-Identifier: Apache-2.0

// Command scrape GETs URLs the way a metrics scraper in a pod does (a bearer
// token from the service account, TLS always verified, against a CA bundle)
// and prints one JSON line per request. It exists because the local
// cluster's images have no shell and no curl: the e2e suite runs it as a pod.
//
//	scrape [-token-file PATH] [-ca-file PATH] [-server-name NAME]
//	       [-repeat 1] [-interval 1s] [-timeout 5s] [-retry-unreachable 0]
//	       URL...
//
// Each line, on stdout, is
//
//	{"time":"...","url":"...","status":200,"fingerprint":"...","body":"..."}
//
// plus "retries":N when -retry-unreachable made N more attempts.
//
// time is when the request was sent (RFC 3339, nanoseconds, UTC);
// fingerprint is the lowercase hex SHA-256 of the server's leaf
// certificate (DER), absent for http:// URLs; body is the whole body (invalid
// UTF-8 becomes U+FFFD). A request that got no response gives
// {"time":"...","url":"...","error":"..."} (no status: 0); a body cut short
// gives the status line plus "error". Redirects are not followed (the 3xx is
// the answer), no proxy is used, and every request opens a new connection,
// so the fingerprint is that of the certificate served at that moment.
//
//	-token-file  its content, trimmed, goes in "Authorization: Bearer ...",
//	             read again for every request (kubelet rotates projected
//	             tokens). Default: the service account's token. "" sends no
//	             Authorization header; an unreadable or empty file sends none
//	             either, said once on stderr. The token is never printed.
//	-ca-file     verify the server against this PEM bundle instead of the
//	             system roots.
//	-server-name verify the server's certificate for this name instead of
//	             the URL's host (Prometheus' tls_config.server_name), e.g.
//	             reach a pod by IP and verify the certificate issued for
//	             its Service's DNS name; also sent as SNI. No effect on
//	             http:// URLs. Verification is never turned off.
//	-repeat N    request every URL N times, in rounds, -interval apart.
//	-until-fingerprint SHA256
//	             stop after the round in which a server presented this
//	             certificate (e.g. to wait for a reloaded one).
//	-timeout D   for each request, body included.
//	-retry-unreachable D
//	             when no connection could be made (refused, no route: a
//	             Service whose endpoints kube-proxy has not programmed yet),
//	             try again every 250 ms for up to D, as a scraper does on
//	             its next scrape; only the last attempt is printed. Errors
//	             after the connection (TLS, HTTP status) are never retried.
//
// Exit status: 0 when every request was made, whatever came back (HTTP
// errors and transport errors are in the lines); 2 on bad usage (no URL, a
// URL that is not http:// or https://, a bad flag); 1 when it could not
// start (unreadable -ca-file) or could not write to stdout.
package main

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

const defaultTokenFile = "/var/run/secrets/kubernetes.io/serviceaccount/token"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// line is one request's outcome, printed as one JSON line.
type line struct {
	Time        string  `json:"time"`
	URL         string  `json:"url"`
	Status      int     `json:"status,omitempty"`
	Fingerprint string  `json:"fingerprint,omitempty"`
	Body        *string `json:"body,omitempty"`
	Error       string  `json:"error,omitempty"`
	Retries     int     `json:"retries,omitempty"`
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("scrape", flag.ContinueOnError)
	fs.SetOutput(stderr)
	tokenFile := fs.String("token-file", defaultTokenFile, `send the content of this file, trimmed, as "Authorization: Bearer ..." ("": no Authorization header)`)
	caFile := fs.String("ca-file", "", "verify the server against this PEM CA bundle (default: the system roots)")
	serverName := fs.String("server-name", "", "verify the server's certificate for this name instead of the URL's host")
	repeat := fs.Int("repeat", 1, "request every URL this many times")
	interval := fs.Duration("interval", time.Second, "wait this long between rounds")
	until := fs.String("until-fingerprint", "", "stop after the round in which a server presented this certificate")
	timeout := fs.Duration("timeout", 5*time.Second, "time limit of each request, body included")
	retryFor := fs.Duration("retry-unreachable", 0, "when no connection could be made, try again for up to this long")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: scrape [-token-file PATH] [-ca-file PATH] [-server-name NAME] [-repeat 1] [-interval 1s] [-until-fingerprint SHA256] [-timeout 5s] [-retry-unreachable 0] URL...")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2 // the flag package has said why, and printed the usage
	}
	usage := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "scrape: "+format+"\n", a...)
		fs.Usage()
		return 2
	}
	switch {
	case fs.NArg() == 0:
		return usage("no URL")
	case *repeat < 1:
		return usage("-repeat %d: want 1 or more", *repeat)
	case *interval < 0:
		return usage("-interval %v: want 0 or more", *interval)
	case *timeout <= 0:
		return usage("-timeout %v: want more than 0", *timeout)
	case *retryFor < 0:
		return usage("-retry-unreachable %v: want 0 or more", *retryFor)
	}
	for _, u := range fs.Args() {
		p, err := url.Parse(u)
		if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
			return usage("%q is not an http:// or https:// URL", u)
		}
	}

	// Always verified: the name is -server-name, or else the URL's host.
	tlsConfig := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: *serverName}
	if *caFile != "" {
		pem, err := os.ReadFile(*caFile)
		if err != nil {
			fmt.Fprintf(stderr, "scrape: %v\n", err)
			return 1
		}
		tlsConfig.RootCAs = x509.NewCertPool()
		if !tlsConfig.RootCAs.AppendCertsFromPEM(pem) {
			fmt.Fprintf(stderr, "scrape: no PEM certificate in %s\n", *caFile)
			return 1
		}
	}
	client := &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:   tlsConfig,
			DisableKeepAlives: true,
		},
		Timeout:       *timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	tok := &token{path: *tokenFile, stderr: stderr}
	enc := json.NewEncoder(stdout)
	enc.SetEscapeHTML(false)
	for i := range *repeat {
		if i > 0 {
			time.Sleep(*interval)
		}
		seen := false
		for _, u := range fs.Args() {
			l := scrapeRetrying(client, u, tok, *retryFor)
			seen = seen || (*until != "" && l.Fingerprint == *until)
			if err := enc.Encode(l); err != nil {
				fmt.Fprintf(stderr, "scrape: writing to stdout: %v\n", err)
				return 1
			}
		}
		if seen {
			break
		}
	}
	return 0
}

// scrapeRetrying scrapes u until a connection was made or retryFor has
// passed since the first attempt.
func scrapeRetrying(client *http.Client, u string, tok *token, retryFor time.Duration) line {
	deadline := time.Now().Add(retryFor)
	for retries := 0; ; retries++ {
		l, dialed := scrape(client, u, tok.bearer())
		if dialed || time.Now().After(deadline) {
			l.Retries = retries
			return l
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// scrape GETs u, with "Authorization: Bearer bearer" unless bearer is "".
// It reports whether a connection was made (false: the dial failed).
func scrape(client *http.Client, u, bearer string) (l line, dialed bool) {
	start := time.Now()
	l = line{Time: start.UTC().Format(time.RFC3339Nano), URL: u}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		l.Error = err.Error()
		return l, true
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := client.Do(req)
	if err != nil {
		l.Error = err.Error()
		var op *net.OpError
		return l, !(errors.As(err, &op) && op.Op == "dial")
	}
	defer resp.Body.Close()
	l.Status = resp.StatusCode
	if resp.TLS != nil && len(resp.TLS.PeerCertificates) > 0 {
		sum := sha256.Sum256(resp.TLS.PeerCertificates[0].Raw)
		l.Fingerprint = hex.EncodeToString(sum[:])
	}
	body, err := io.ReadAll(resp.Body)
	s := string(body)
	l.Body = &s
	if err != nil {
		l.Error = "reading the body: " + err.Error()
	}
	return l, true
}

// token reads the bearer token file for every request and says once on
// stderr why none is sent. Never the token, nor its length.
type token struct {
	path   string
	stderr io.Writer
	warned bool
}

func (t *token) bearer() string {
	if t.path == "" {
		return ""
	}
	b, err := os.ReadFile(t.path)
	why := ""
	switch {
	case errors.Is(err, os.ErrNotExist):
		why = t.path + " does not exist"
	case err != nil:
		why = err.Error()
	case strings.TrimSpace(string(b)) == "":
		why = t.path + " is empty"
	}
	if why != "" {
		if !t.warned {
			fmt.Fprintf(t.stderr, "scrape: no Authorization header: %s\n", why)
			t.warned = true
		}
		return ""
	}
	return strings.TrimSpace(string(b))
}
