// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes/fake"
)

// probe sends GET path to m's Handler and returns the status and body.
func probe(m *Manager, path string) (int, string) {
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, strings.TrimSpace(rec.Body.String())
}

func TestProbes(t *testing.T) {
	now := time.Unix(1000, 0)
	missing := `rule missing: add to the Role in namespace app: apiGroups [""] resources ["configmaps"] verbs ["watch"]`
	tests := []struct {
		name                    string
		preflightMissing        string // "" passed
		synced                  bool
		round                   string // "": none; "standby", "leader", "stale" (leading, renewal overdue)
		healthz, readyz, leader int
		readyzBody              string
	}{
		{name: "starting", healthz: 200, readyz: 503, leader: 503, readyzBody: "not ready: RBAC preflight or cache sync not done"},
		{name: "rule missing", preflightMissing: missing, healthz: 200, readyz: 503, leader: 503, readyzBody: "not ready: " + missing},
		{name: "synced standby", synced: true, round: "standby", healthz: 200, readyz: 200, leader: 503},
		{name: "leader", synced: true, round: "leader", healthz: 200, readyz: 200, leader: 200},
		{name: "leader not renewed", synced: true, round: "stale", healthz: 500, readyz: 200, leader: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, _ := newTestManager(t, fake.NewClientset(), "me")
			if tt.preflightMissing != "" {
				m.preflightMissing.Store(&tt.preflightMissing)
			}
			m.synced.Store(tt.synced)
			if tt.round != "" {
				clock := now
				g := newLeaseGate(&fakeLock{id: "me"}, func() time.Time { return clock }, time.Second)
				_ = g.Create(t.Context(), renewal("me", now))
				if tt.round != "standby" {
					g.startWork(func(error) {})
				}
				if tt.round == "stale" {
					clock = now.Add(m.o.renewDeadline + time.Millisecond)
				}
				m.round.Store(g)
			}
			for _, p := range []struct {
				path string
				want int
			}{{"/healthz", tt.healthz}, {"/readyz", tt.readyz}, {"/leader", tt.leader}} {
				if code, body := probe(m, p.path); code != p.want {
					t.Errorf("%s = %d %q, want %d", p.path, code, body, p.want)
				}
			}
			if tt.readyzBody != "" {
				if _, body := probe(m, "/readyz"); body != tt.readyzBody {
					t.Errorf("/readyz body = %q, want %q", body, tt.readyzBody)
				}
			}
		})
	}
}

// The probe server listens on the address given, and Run says what to do
// when it cannot.
func TestProbeServer(t *testing.T) {
	m, _ := newTestManager(t, fake.NewClientset(), "me", WithProbeAddress("127.0.0.1:0"))
	stop, err := m.serveProbes(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	stop()

	ln := httptest.NewServer(http.NotFoundHandler())
	defer ln.Close()
	busy := strings.TrimPrefix(ln.URL, "http://")
	m2, _ := newTestManager(t, fake.NewClientset(), "me", WithProbeAddress(busy))
	err = m2.Run(t.Context(), func(ctx context.Context) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "choose another address with WithProbeAddress") {
		t.Errorf("Run with a busy probe address = %v", err)
	}
}
