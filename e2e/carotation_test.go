// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/incluster/incluster/internal/testca"
)

// TestCARotation switches the certificate that the demo's API server
// presents to one from a new CA while demo --watch runs (client-go and rest),
// the way a cluster's CA rotation does, and at that moment writes the demo's
// ca.crt with the new bundle (new CA + old CA), as the kubelet does when
// kube-root-ca.crt changes. Failed reports after the switch: none wanted.
//
// The server here is a TLS front on 127.0.0.1 that the test controls: it
// presents a certificate from CA 1, then one from CA 2, and hands every
// request, the pod's own token included, to the cluster's API server. (A
// rotation of the cluster's own CA is the CA-rotation issue's.)
//
// A negative control runs beside them: the same demos with a ca.crt that is
// never updated. Every report of theirs after the switch must fail; if one
// succeeds, the switch did not reach the clients and the test proves nothing.
func TestCARotation(t *testing.T) {
	h := newHostPod(t, "carotation")
	writeAtomic(t, h.saDir, "token", h.token("anchor"))
	front := newTLSFront(t)
	writeAtomic(t, h.saDir, "ca.crt", string(front.ca[0].PEM))
	// The control: the same pod, whose ca.crt keeps the old CA.
	staleDir := t.TempDir()
	for _, f := range []string{"token", "namespace"} {
		copyFile(t, h.saDir, staleDir, f)
	}
	writeAtomic(t, staleDir, "ca.crt", string(front.ca[0].PEM))

	demoBin := buildDemo(t)
	server := net.JoinHostPort(front.host, front.port)
	start := func(dir string) []*watcher {
		return []*watcher{
			startWatch(t, demoBin, dir, front.host, front.port, "--via=client-go"),
			startWatch(t, demoBin, dir, front.host, front.port, "--via=rest", "--server="+server),
		}
	}
	rotated, stale := start(h.saDir), start(staleDir)
	for _, w := range append(rotated, stale...) {
		w.waitReports(t, 5)
	}

	writeAtomic(t, h.saDir, "ca.crt", string(testca.Bundle(front.ca[1], front.ca[0])))
	front.switchTo(1)
	// After switchTo: a report that began while it waited for a quiet
	// moment may still have been served with CA 1.
	switched := time.Now()
	for _, w := range rotated {
		w.waitReportsAfter(t, switched, 10)
	}
	for _, w := range stale {
		w.waitReportsAfter(t, switched, 5)
	}

	for _, w := range rotated {
		w.stop(t)
		total, failed := w.countFailedAfter(switched)
		t.Logf("%s, ca.crt rotated: %d reports; failed after the switch: %d", w.via, total, failed)
		if failed != 0 {
			t.Errorf("%s: %d failed reports after the server switched to the new CA and ca.crt was rotated; want none\n%s", w.via, failed, w.stderr.String())
		}
	}
	for _, w := range stale {
		w.stop(t)
		w.mu.Lock()
		var after, ok int
		for _, r := range w.reports {
			if r.Time.After(switched) {
				after++
				if r.Error == "" {
					ok++
				}
			}
		}
		w.mu.Unlock()
		t.Logf("%s, control (ca.crt not rotated): %d reports after the switch, %d of them failed", w.via, after, after-ok)
		if ok != 0 {
			t.Errorf("%s: control: %d of %d reports after the switch succeeded with the old CA only: the server's certificate did not change for the client, so the rotated case proves nothing", w.via, ok, after)
		}
	}
	t.Logf("TLS front: %d handshakes with CA 1, %d with CA 2", front.handshakes[0].Load(), front.handshakes[1].Load())
}

// tlsFront is an HTTPS server on 127.0.0.1 that presents a certificate from
// one of two CAs and passes every request, headers included, to the
// cluster's API server. It holds no credentials of its own.
type tlsFront struct {
	srv        *httptest.Server
	host, port string
	ca         [2]*testca.CA
	leaf       [2]tls.Certificate
	current    atomic.Int32
	handshakes [2]atomic.Int64
	gate       sync.RWMutex // held by switchTo, so that it cuts no request in half
	arrivals   atomic.Int64
}

func newTLSFront(t *testing.T) *tlsFront {
	t.Helper()
	f := &tlsFront{}
	for i := range f.ca {
		f.ca[i] = testca.NewCA(t, "incluster-e2e-ca-"+string(rune('1'+i)))
		f.leaf[i] = f.ca[i].Leaf(t)
	}
	upstream, err := url.Parse(restConfig.Host)
	if err != nil {
		t.Fatal(err)
	}
	// Only the cluster's CA: the requests carry the pod's own token.
	rt, err := rest.TransportFor(&rest.Config{Host: restConfig.Host, TLSClientConfig: rest.TLSClientConfig{
		CAData: restConfig.CAData, CAFile: restConfig.CAFile, ServerName: restConfig.ServerName}})
	if err != nil {
		t.Fatal(err)
	}
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(r *httputil.ProxyRequest) { r.SetURL(upstream); r.Out.Host = upstream.Host },
		Transport: rt,
	}
	f.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.arrivals.Add(1)
		f.gate.RLock()
		defer f.gate.RUnlock()
		proxy.ServeHTTP(w, r)
	}))
	f.srv.EnableHTTP2 = true
	// The control's refused handshakes are expected, and counted below: one
	// "TLS handshake error" line each in the test's output would bury it.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	// GetConfigForClient, not GetCertificate: crypto/tls asks GetCertificate
	// only when the client sends a server name, and a client of 127.0.0.1
	// sends none (httptest's own certificate would answer instead).
	f.srv.TLS = &tls.Config{GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		i := f.current.Load()
		f.handshakes[i].Add(1)
		return &tls.Config{Certificates: []tls.Certificate{f.leaf[i]}, NextProtos: []string{"h2", "http/1.1"}}, nil
	}}
	f.srv.StartTLS()
	t.Cleanup(f.srv.Close)
	u, _ := url.Parse(f.srv.URL)
	f.host, f.port, _ = net.SplitHostPort(u.Host)
	return f
}

// switchTo makes the front present CA i's certificate from the next
// handshake on, and closes every open connection, as a restarting API
// server does. It does so in a quiet moment (no request for 50 ms), so that
// no request in flight is cut: the test counts what the CA does to the
// clients, not what a closed connection does.
func (f *tlsFront) switchTo(i int32) {
	for {
		f.gate.Lock()
		n := f.arrivals.Load()
		time.Sleep(50 * time.Millisecond) // a request arriving now waits at the gate
		if f.arrivals.Load() == n {
			break
		}
		f.gate.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	defer f.gate.Unlock()
	f.current.Store(i)
	f.srv.CloseClientConnections()
}

func copyFile(t *testing.T, from, to, name string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(from, name))
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, to, name, string(b))
}
