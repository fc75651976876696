// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"fmt"
	"strings"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
)

// checkTimeout bounds one access check.
const checkTimeout = 10 * time.Second

// accessNeeded lists every access check of the preflight: list and watch of
// each informer, the election's get, create and update on its Lease and the
// list and watch of newLeaseInformer (all but create restricted to its name:
// a Role can say resourceNames for them, not for create; sharded, those and
// delete on every Lease of the namespace), then
// WithPermissions', then what WithMetrics' serving needs (cluster scope). Duplicates are left out.
func (m *Manager) accessNeeded() []authorizationv1.ResourceAttributes {
	m.mu.Lock()
	all := append([]authorizationv1.ResourceAttributes(nil), m.watched...)
	m.mu.Unlock()
	lease := authorizationv1.ResourceAttributes{Namespace: m.namespace, Group: coordinationv1.GroupName, Resource: "leases"}
	verbs := []struct{ verb, name string }{{"get", m.leaseName}, {"create", ""}, {"update", m.leaseName}, {"list", m.leaseName}, {"watch", m.leaseName}}
	if m.shards != nil {
		// The shards' and members' Leases: names not known in advance.
		verbs = []struct{ verb, name string }{{"get", ""}, {"create", ""}, {"update", ""}, {"delete", ""}, {"list", ""}, {"watch", ""}}
	}
	for _, v := range verbs {
		a := lease
		a.Verb, a.Name = v.verb, v.name
		all = append(all, a)
	}
	for _, p := range m.o.permissions {
		if p.Namespace == "" {
			p.Namespace = m.namespace
		}
		all = append(all, p)
	}
	all = append(all, m.o.metrics.Access()...) // cluster scope
	seen := map[authorizationv1.ResourceAttributes]bool{}
	out := all[:0]
	for _, a := range all {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	return out
}

// checkAccess asks every check once and returns the missing ones. It stops
// at the first check that cannot be asked (the API server unreachable, say)
// and returns its error.
func (m *Manager) checkAccess(ctx context.Context) (missing []authorizationv1.ResourceAttributes, err error) {
	for _, a := range m.accessNeeded() {
		cctx, cancel := context.WithTimeout(ctx, checkTimeout)
		d, err := m.can(cctx, a)
		cancel()
		if err != nil {
			return nil, err
		}
		if !d.Allowed {
			missing = append(missing, a)
		}
	}
	return missing, nil
}

// preflight checks access until nothing is missing: true then, false if
// ctx ended first. Each round that finds something missing logs one line
// naming the rules to add; a round that cannot check logs why.
func (m *Manager) preflight(ctx context.Context) bool {
	failed := false
	for {
		missing, err := m.checkAccess(ctx)
		if ctx.Err() != nil {
			return false
		}
		switch {
		case len(missing) > 0:
			order, _ := rules(missing)
			m.o.metrics.PreflightMissing(len(order))
			msg := missingRules(missing)
			m.preflightMissing.Store(&msg)
			m.log.Warn(msg, "missing", len(missing), "retryIn", m.o.preflightInterval.String())
			failed = true
		case err != nil:
			msg := "RBAC preflight: cannot check access: " + oneLine(err.Error())
			m.preflightMissing.Store(&msg)
			m.log.Warn("RBAC preflight: cannot check access; retrying", "err", oneLine(err.Error()), "retryIn", m.o.preflightInterval.String())
			failed = true
		default:
			m.o.metrics.PreflightMissing(0)
			m.preflightMissing.Store(nil)
			if failed {
				m.log.Info("RBAC preflight passed: every permission needed is granted")
			}
			return true
		}
		t := time.NewTimer(m.o.preflightInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// missingRules names the RBAC rules that would grant what is missing, in one
// line, e.g.
//
//	rule missing: add to the Role in namespace app: apiGroups [""] resources ["configmaps"] verbs ["watch"]
//
// Checks on the same resource (and names) are one rule with their verbs.
// Cluster-scope checks (WithAllNamespaces) name a ClusterRole.
func missingRules(missing []authorizationv1.ResourceAttributes) string {
	order, verbs := rules(missing)
	var lines []string
	for _, k := range order {
		where := "add to the Role in namespace " + k.namespace
		if k.namespace == "" {
			where = "add to a ClusterRole bound to the service account by a ClusterRoleBinding"
		}
		line := fmt.Sprintf("%s: apiGroups %s resources %s", where, list(k.group), list(k.resource))
		if k.name != "" {
			line += " resourceNames " + list(k.name)
		}
		lines = append(lines, line+" verbs "+list(verbs[k]...))
	}
	return "rule missing: " + strings.Join(lines, "; ")
}

// list writes a YAML flow sequence of strings: ["get", "update"].
func list(s ...string) string {
	q := make([]string, len(s))
	for i, v := range s {
		q[i] = fmt.Sprintf("%q", v)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }
