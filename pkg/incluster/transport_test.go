// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"encoding/pem"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
)

// TestTokenRotation: the token file is replaced and the old token revoked;
// the next request gets a 401, reads the file again and succeeds, so the
// caller sees no failure.
func TestTokenRotation(t *testing.T) {
	var (
		mu           sync.Mutex
		valid        = "token-one"
		unauthorized int
	)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+valid {
			unauthorized++
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/api":
			fmt.Fprint(w, `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"10.0.0.1:6443"}]}`)
		case "/apis/authentication.k8s.io/v1/selfsubjectreviews": // a POST: its body must be replayed
			fmt.Fprint(w, `{"kind":"SelfSubjectReview","apiVersion":"authentication.k8s.io/v1","status":{"userInfo":{"username":"u"}}}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()

	tokenFile := filepath.Join(t.TempDir(), "token")
	write := func(tok string) {
		t.Helper()
		// As the kubelet does: a new file renamed over the old one.
		tmp := tokenFile + ".new"
		if err := os.WriteFile(tmp, []byte(tok), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, tokenFile); err != nil {
			t.Fatal(err)
		}
	}
	write("token-one")
	cfg := &rest.Config{Host: srv.URL, BearerTokenFile: tokenFile, QPS: -1,
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}}
	c, err := NewForConfig(cfg, "ns")
	if err != nil {
		t.Fatal(err)
	}
	call := map[string]func() error{
		"APIVersions": func() error { _, err := c.APIVersions(t.Context()); return err },
		"WhoAmI":      func() error { _, err := c.WhoAmI(t.Context()); return err },
	}
	for name, f := range call {
		t.Run(name, func(t *testing.T) {
			if err := f(); err != nil {
				t.Fatalf("before rotation: %v", err)
			}
			next := valid + "-next"
			write(next)
			mu.Lock()
			valid, unauthorized = next, 0 // the old token is revoked
			mu.Unlock()
			for i := range 3 {
				if err := f(); err != nil {
					t.Fatalf("request %d after rotation: %v", i, err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if unauthorized != 1 {
				t.Errorf("the server answered 401 %d times, want once (then the file is read again)", unauthorized)
			}
		})
	}
}

// TestTokenRevokedNotRotated: a revoked token that is not replaced fails
// after one retry, with a message that says what to check.
func TestTokenRevokedNotRotated(t *testing.T) {
	var count int
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		count++
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprint(w, `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401}`)
	}))
	defer srv.Close()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte("revoked-token-xyz"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: srv.URL, BearerTokenFile: tokenFile,
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}}
	c, err := NewForConfig(cfg, "ns")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.APIVersions(t.Context())
	if err == nil || !strings.Contains(err.Error(), "HTTP 401") || !strings.Contains(err.Error(), "token") {
		t.Errorf("err = %v, want an HTTP 401 error that talks about the token", err)
	}
	if strings.Contains(err.Error(), "revoked-token-xyz") {
		t.Errorf("the error contains the token: %v", err)
	}
	if count != 2 {
		t.Errorf("%d requests, want 2 (one retry)", count)
	}
}
