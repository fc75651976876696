// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"fmt"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
)

// This file owns the RBAC a Manager needs, written once: the preflight
// checks it (preflight.go) and Role renders it for the manifests.

// rule is one RBAC rule's place: namespace ("" cluster scope), API group,
// resource (with "/subresource"), resource name.
type rule struct{ namespace, group, resource, name string }

// rules groups access checks into RBAC rules, in the order of their first
// check, each with its verbs (once each, in order).
func rules(attrs []authorizationv1.ResourceAttributes) (order []rule, verbs map[rule][]string) {
	verbs = map[rule][]string{}
	for _, a := range attrs {
		res := a.Resource
		if a.Subresource != "" {
			res += "/" + a.Subresource
		}
		k := rule{a.Namespace, a.Group, res, a.Name}
		if _, ok := verbs[k]; !ok {
			order = append(order, k)
		}
		if !slices.Contains(verbs[k], a.Verb) {
			verbs[k] = append(verbs[k], a.Verb)
		}
	}
	return order, verbs
}

// Role renders, as YAML, the RBAC rules this Manager needs: everything the
// preflight checks (the informers' list and watch, the Lease's verbs with
// its name, WithPermissions'). The rules for the pod's namespace make a
// Role named name without a namespace (the manifests' kustomization or
// kubectl -n sets it); those for another namespace a Role there; cluster-
// scope ones (WithAllNamespaces) a ClusterRole named name; documents apart
// by "---". header, if not empty, comes first as comment lines. Call it
// after the informers are made; a program prints it (example-controller
// --print-role) and its manifests keep the output, checked by a test.
func (m *Manager) Role(name, header string) string {
	keys, verbs := rules(m.accessNeeded())
	var namespaces []string // the pod's first, then others, then cluster scope ("")
	for _, k := range keys {
		if !slices.Contains(namespaces, k.namespace) {
			namespaces = append(namespaces, k.namespace)
		}
	}
	slices.SortStableFunc(namespaces, func(a, b string) int {
		rank := func(ns string) int {
			switch ns {
			case m.namespace:
				return 0
			case "":
				return 2
			}
			return 1
		}
		return rank(a) - rank(b)
	})
	var b strings.Builder
	if header != "" {
		for _, line := range strings.Split(strings.TrimSpace(header), "\n") {
			fmt.Fprintln(&b, strings.TrimRight("# "+line, " "))
		}
	}
	for i, ns := range namespaces {
		if i > 0 {
			fmt.Fprintln(&b, "---")
		}
		kind := "Role"
		if ns == "" {
			kind = "ClusterRole"
		}
		fmt.Fprintf(&b, "apiVersion: rbac.authorization.k8s.io/v1\nkind: %s\nmetadata:\n  name: %s\n", kind, name)
		if ns != "" && ns != m.namespace {
			fmt.Fprintf(&b, "  namespace: %s\n", ns)
		}
		fmt.Fprintln(&b, "rules:")
		for _, k := range keys {
			if k.namespace != ns {
				continue
			}
			fmt.Fprintf(&b, "  - apiGroups: %s\n    resources: %s\n", list(k.group), list(k.resource))
			if k.name != "" {
				fmt.Fprintf(&b, "    resourceNames: %s\n", list(k.name))
			}
			fmt.Fprintf(&b, "    verbs: %s\n", list(verbs[k]...))
		}
	}
	return b.String()
}
