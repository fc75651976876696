// SPDX-License-Identifier: Apache-2.0

package metrics

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"

	"github.com/incluster/incluster/pkg/controller"
)

// This file owns serving: the listener, the certificate (self-signed, or
// from a directory and reloaded) and the filter that lets a scrape in only
// with a token the API server says may get /metrics.

// Files WithCertDir reads, as in a kubernetes.io/tls Secret.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// ErrCertificate: Serve cannot make or read the serving certificate.
var ErrCertificate = errors.New("metrics: no serving certificate")

// certPollInterval is how often WithCertDir's files are read for a change.
const certPollInterval = 2 * time.Second

// How long an answer about a token is kept: scrapes every 15-30 s then cost
// the API server two reviews a minute, and a revoked binding is seen within
// the minute. A refusal is kept shorter, so that a fixed binding shows soon.
const (
	allowedTTL = time.Minute
	deniedTTL  = 10 * time.Second
	reviewTTL  = 10 * time.Second // one TokenReview or SubjectAccessReview
	maxCached  = 1024
)

// Serve implements controller.Metrics: it listens on the address and
// serves /metrics until stop is called.
func (x *Metrics) Serve(ctx context.Context, s controller.MetricsServing) (stop func(), err error) {
	if !x.serving() {
		return func() {}, nil
	}
	log := s.Log
	if log == nil {
		log = slog.Default()
	}
	var h http.Handler = promhttp.HandlerFor(x.reg, promhttp.HandlerOpts{})
	mux := http.NewServeMux()
	ln, err := net.Listen("tcp", x.o.address)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w: choose another address with metrics.WithAddress (example-controller: --metrics-bind-address)", err)
	}
	x.addr.Store(ln.Addr().String())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	certCtx, stopCerts := context.WithCancel(context.WithoutCancel(ctx))
	if x.o.insecure {
		mux.Handle("GET /metrics", h)
		log.Warn("metrics: served over plain HTTP without authentication or authorization: for development only (example-controller: drop --metrics-secure=false)", "address", x.o.address)
	} else {
		certs, err := x.certificates(certCtx, log)
		if err != nil {
			stopCerts()
			ln.Close()
			return nil, err
		}
		a := &authorizer{tokens: s.TokenReviews, access: s.SubjectAccessReviews, log: log, cache: map[[32]byte]decision{}}
		mux.Handle("GET /metrics", a.filter(h))
		srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.get}
		ln = tls.NewListener(ln, srv.TLSConfig)
		log.Info("metrics: serving /metrics over HTTPS to scrapers whose token may get /metrics (TokenReview, SubjectAccessReview)", "address", x.o.address, "certificate", certs.source)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics: server stopped", "err", err)
		}
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		stopCerts()
		<-done
	}, nil
}

// servingCert is the certificate served now: self-signed, or the files of a
// directory, polled for changes.
type servingCert struct {
	source string
	cert   atomic.Pointer[tls.Certificate]
}

func (c *servingCert) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cert.Load(), nil }

func (x *Metrics) certificates(ctx context.Context, log *slog.Logger) (*servingCert, error) {
	c := &servingCert{}
	if x.o.certDir == "" {
		cert, err := selfSigned()
		if err != nil {
			return nil, fmt.Errorf("%w: making a self-signed one: %w", ErrCertificate, err)
		}
		c.cert.Store(cert)
		c.source = "self-signed, made at start (give a directory with metrics.WithCertDir, example-controller: --metrics-cert-path)"
		return c, nil
	}
	certFile, keyFile := filepath.Join(x.o.certDir, CertFile), filepath.Join(x.o.certDir, KeyFile)
	read := func() (*tls.Certificate, []byte, error) {
		crt, err := os.ReadFile(certFile)
		if err != nil {
			return nil, nil, err
		}
		key, err := os.ReadFile(keyFile)
		if err != nil {
			return nil, nil, err
		}
		cert, err := tls.X509KeyPair(crt, key)
		if err != nil {
			return nil, nil, fmt.Errorf("%s and %s: %w", certFile, keyFile, err)
		}
		return &cert, append(crt, key...), nil
	}
	cert, seen, err := read()
	if err != nil {
		return nil, fmt.Errorf("%w: %w (mount a kubernetes.io/tls Secret there, or leave the directory out for a self-signed one)", ErrCertificate, err)
	}
	c.cert.Store(cert)
	c.source = x.o.certDir
	go func() {
		t := time.NewTicker(certPollInterval)
		defer t.Stop()
		failing := false
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			cert, now, err := read()
			switch {
			case err != nil:
				if !failing { // mid-update, say, or removed: keep serving the last good one
					log.Warn("metrics: cannot read the serving certificate; still serving the last one", "err", err)
				}
				failing = true
			case !bytes.Equal(now, seen):
				seen, failing = now, false
				c.cert.Store(cert)
				changed := ""
				if fi, err := os.Stat(certFile); err == nil {
					changed = fi.ModTime().UTC().Format(time.RFC3339Nano)
				}
				log.Info("metrics: serving the new certificate from "+x.o.certDir, "fingerprint", Fingerprint(cert.Certificate[0]), "filesChanged", changed)
			default:
				failing = false
			}
		}
	}()
	return c, nil
}

// Fingerprint is a certificate's SHA-256 over its DER bytes, in hex.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return fmt.Sprintf("%x", sum)
}

// selfSigned makes an ECDSA P-256 certificate for this host's name, valid
// for a year.
func selfSigned() (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "incluster-metrics"},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if host != "" {
		tmpl.DNSNames = append(tmpl.DNSNames, host)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// authorizer lets a request through when its bearer token is valid
// (TokenReview: else 401) and its user may get the request's path
// (SubjectAccessReview on the non-resource URL: else 403), as
// controller-runtime's filters.WithAuthenticationAndAuthorization. Answers
// are kept a while per token (by its SHA-256; the token itself is kept
// nowhere).
type authorizer struct {
	tokens authenticationv1client.TokenReviewsGetter
	access authorizationv1client.SubjectAccessReviewsGetter
	log    *slog.Logger

	mu    sync.Mutex
	cache map[[32]byte]decision
}

type decision struct {
	status  int // 200, 401, 403
	message string
	until   time.Time
}

func (a *authorizer) filter(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		token = strings.TrimSpace(token)
		if !ok || token == "" {
			http.Error(w, "Unauthorized: send a service-account token as Authorization: Bearer", http.StatusUnauthorized)
			return
		}
		d, err := a.decide(r.Context(), token, r.URL.Path)
		if err != nil {
			a.log.Warn("metrics: cannot check a scraper's token", "err", err)
			http.Error(w, "cannot check the token with the API server", http.StatusInternalServerError)
			return
		}
		if d.status != http.StatusOK {
			http.Error(w, d.message, d.status)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (a *authorizer) decide(ctx context.Context, token, path string) (decision, error) {
	key := sha256.Sum256([]byte(path + "\x00" + token))
	now := time.Now()
	a.mu.Lock()
	d, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(d.until) {
		return d, nil
	}
	d, err := a.review(ctx, token, path)
	if err != nil {
		return d, err
	}
	ttl := deniedTTL
	if d.status == http.StatusOK {
		ttl = allowedTTL
	}
	d.until = now.Add(ttl)
	a.mu.Lock()
	if len(a.cache) >= maxCached {
		clear(a.cache)
	}
	a.cache[key] = d
	a.mu.Unlock()
	return d, nil
}

func (a *authorizer) review(ctx context.Context, token, path string) (decision, error) {
	ctx, cancel := context.WithTimeout(ctx, reviewTTL)
	defer cancel()
	tr, err := a.tokens.TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token},
	}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("create TokenReview: %w (the service account needs create on tokenreviews.authentication.k8s.io)", err)
	}
	if !tr.Status.Authenticated {
		return decision{status: http.StatusUnauthorized, message: "Unauthorized: the token is not valid"}, nil
	}
	u := tr.Status.User
	extra := map[string]authorizationv1.ExtraValue{}
	for k, v := range u.Extra {
		extra[k] = authorizationv1.ExtraValue(v)
	}
	sar, err := a.access.SubjectAccessReviews().Create(ctx, &authorizationv1.SubjectAccessReview{
		Spec: authorizationv1.SubjectAccessReviewSpec{
			User: u.Username, UID: u.UID, Groups: u.Groups, Extra: extra,
			NonResourceAttributes: &authorizationv1.NonResourceAttributes{Path: path, Verb: "get"},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return decision{}, fmt.Errorf("create SubjectAccessReview: %w (the service account needs create on subjectaccessreviews.authorization.k8s.io)", err)
	}
	if !sar.Status.Allowed {
		return decision{status: http.StatusForbidden, message: fmt.Sprintf("Forbidden: %s may not get %s (bind it to a ClusterRole with nonResourceURLs [%q] verbs [\"get\"])", u.Username, path, path)}, nil
	}
	return decision{status: http.StatusOK}, nil
}
