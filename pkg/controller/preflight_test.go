// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/incluster/incluster/pkg/incluster"
)

func TestMissingRules(t *testing.T) {
	cm := func(ns, verb string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Namespace: ns, Verb: verb, Resource: "configmaps"}
	}
	lease := func(verb, name string) authorizationv1.ResourceAttributes {
		return authorizationv1.ResourceAttributes{Namespace: "app", Verb: verb, Group: "coordination.k8s.io", Resource: "leases", Name: name}
	}
	tests := []struct {
		missing []authorizationv1.ResourceAttributes
		want    string
	}{
		{[]authorizationv1.ResourceAttributes{cm("app", "watch")},
			`rule missing: add to the Role in namespace app: apiGroups [""] resources ["configmaps"] verbs ["watch"]`},
		{[]authorizationv1.ResourceAttributes{cm("app", "list"), cm("app", "watch"), lease("get", "l"), lease("create", ""), lease("update", "l")},
			`rule missing: add to the Role in namespace app: apiGroups [""] resources ["configmaps"] verbs ["list", "watch"]; ` +
				`add to the Role in namespace app: apiGroups ["coordination.k8s.io"] resources ["leases"] resourceNames ["l"] verbs ["get", "update"]; ` +
				`add to the Role in namespace app: apiGroups ["coordination.k8s.io"] resources ["leases"] verbs ["create"]`},
		{[]authorizationv1.ResourceAttributes{cm("", "list")},
			`rule missing: add to a ClusterRole bound to the service account by a ClusterRoleBinding: apiGroups [""] resources ["configmaps"] verbs ["list"]`},
		{[]authorizationv1.ResourceAttributes{{Namespace: "app", Verb: "get", Resource: "pods", Subresource: "log"}},
			`rule missing: add to the Role in namespace app: apiGroups [""] resources ["pods/log"] verbs ["get"]`},
	}
	for _, tt := range tests {
		if got := missingRules(tt.missing); got != tt.want {
			t.Errorf("missingRules:\n got %s\nwant %s", got, tt.want)
		}
	}
}

func TestAccessNeeded(t *testing.T) {
	m, _ := newTestManager(t, fake.NewClientset(), "me",
		WithPermissions(authorizationv1.ResourceAttributes{Verb: "patch", Resource: "configmaps"}))
	if _, err := NewInformer(m, m.fake().CoreV1().ConfigMaps); err != nil {
		t.Fatal(err)
	}
	if _, err := NewInformer(m, m.fake().CoreV1().ConfigMaps, WithLabelSelector("a=b")); err != nil { // same verbs: once
		t.Fatal(err)
	}
	var got []string
	for _, a := range m.accessNeeded() {
		got = append(got, strings.Join([]string{a.Namespace, a.Verb, a.Group, a.Resource, a.Name}, " "))
	}
	want := []string{
		"app list  configmaps ",
		"app watch  configmaps ",
		"app get coordination.k8s.io leases test-lease",
		"app create coordination.k8s.io leases ",
		"app update coordination.k8s.io leases test-lease",
		"app list coordination.k8s.io leases test-lease",
		"app watch coordination.k8s.io leases test-lease",
		"app patch  configmaps ",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("accessNeeded:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	all, _ := newTestManager(t, fake.NewClientset(), "me", WithAllNamespaces())
	if _, err := NewInformer(all, all.fake().CoreV1().ConfigMaps); err != nil {
		t.Fatal(err)
	}
	if a := all.accessNeeded()[0]; a.Namespace != "" || a.Verb != "list" {
		t.Errorf("WithAllNamespaces: first check %+v, want list at cluster scope", a)
	}
}

// A missing verb: one log line per round naming the rule, not ready, and
// ready without a restart once the Role grants it; an unreachable API
// server: a line saying so, and retries.
func TestPreflightRecheck(t *testing.T) {
	m, logs := newTestManager(t, fake.NewClientset(), "me")
	if _, err := NewInformer(m, m.fake().CoreV1().ConfigMaps); err != nil {
		t.Fatal(err)
	}
	var round atomic.Int32 // counts checks of list configmaps: one per round
	readyzDuring := make(chan string, 1)
	m.can = func(_ context.Context, a authorizationv1.ResourceAttributes) (incluster.Decision, error) {
		if a.Verb == "list" && a.Resource == "configmaps" {
			n := round.Add(1)
			if n == 3 { // rounds 1 and 2 have ended: look at /readyz
				code, body := probe(m, "/readyz")
				readyzDuring <- fmt.Sprintf("%d %s", code, body)
			}
		}
		switch r := round.Load(); {
		case r == 3:
			return incluster.Decision{}, errors.New("connection refused")
		case a.Verb == "watch" && a.Resource == "configmaps" && r <= 3:
			return incluster.Decision{Allowed: false}, nil
		}
		return incluster.Decision{Allowed: true}, nil
	}
	if !m.preflight(t.Context()) {
		t.Fatal("preflight = false")
	}
	rule := `rule missing: add to the Role in namespace app: apiGroups [""] resources ["configmaps"] verbs ["watch"]`
	select { // preflight has returned: round 3 has run, or never will
	case got := <-readyzDuring:
		if want := "503 not ready: " + rule; got != want {
			t.Errorf("/readyz while missing = %q, want %q", got, want)
		}
	default:
		t.Fatalf("the preflight passed in round %d, before the Role granted watch (round 4); log:\n%s", round.Load(), logs)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("want 4 log lines (2 missing, 1 cannot check, 1 passed), got:\n%s", logs)
	}
	for _, l := range lines[:2] {
		if !strings.Contains(l, "level=WARN") || !strings.Contains(l, strings.ReplaceAll(rule, `"`, `\"`)) {
			t.Errorf("line %q does not name the rule %s", l, rule)
		}
	}
	if !strings.Contains(lines[2], "cannot check access") || !strings.Contains(lines[2], "connection refused") {
		t.Errorf("line 3 = %q, want the check's error", lines[2])
	}
	if !strings.Contains(lines[3], "RBAC preflight passed") {
		t.Errorf("line 4 = %q", lines[3])
	}
	if code, _ := probe(m, "/readyz"); code != 503 { // caches not synced yet
		t.Errorf("/readyz after the preflight, before sync = %d", code)
	}
	if m.preflightMissing.Load() != nil {
		t.Error("preflightMissing still set after passing")
	}
}
