// SPDX-License-Identifier: Apache-2.0

package hint

import (
	"strings"
	"testing"
)

func TestForPath(t *testing.T) {
	for path, want := range map[string]Request{
		"/api":                     {Scope: NonResource},
		"/api/v1":                  {Scope: NonResource},
		"/apis":                    {Scope: NonResource},
		"/apis/apps/v1":            {Scope: NonResource},
		"/version":                 {Scope: NonResource},
		"/healthz/etcd":            {Scope: NonResource},
		"/openapi/v3":              {Scope: NonResource},
		"":                         {Scope: NonResource},
		"/api/v1/nodes":            {Scope: Cluster},
		"/api/v1/pods":             {Scope: Cluster}, // every namespace
		"/api/v1/namespaces":       {Scope: Cluster},
		"/api/v1/watch/namespaces": {Scope: Cluster},
		"/apis/authentication.k8s.io/v1/selfsubjectreviews":      {Scope: Cluster},
		"/apis/authorization.k8s.io/v1/selfsubjectaccessreviews": {Scope: Cluster},
		"/api/v1/namespaces/team-a/pods":                         {Scope: Namespaced, Namespace: "team-a"},
		"/api/v1/namespaces/team-a/pods?limit=1":                 {Scope: Namespaced, Namespace: "team-a"},
		"/api/v1/namespaces/team-a":                              {Scope: Namespaced, Namespace: "team-a"}, // as RBAC sees it
		"/api/v1/watch/namespaces/team-a/pods":                   {Scope: Namespaced, Namespace: "team-a"},
		"/apis/apps/v1/namespaces/team-a/deployments/web/scale":  {Scope: Namespaced, Namespace: "team-a"},
		"api/v1/namespaces/team-a/configmaps/":                   {Scope: Namespaced, Namespace: "team-a"},
	} {
		if got := ForPath(path); got != want {
			t.Errorf("ForPath(%q) = %+v, want %+v", path, got, want)
		}
	}
}

// TestForbidden pins the 403 hints: a Role can grant only what is in its
// namespace.
func TestForbidden(t *testing.T) {
	for _, tt := range []struct {
		req  Request
		want string
	}{
		{Request{Scope: NonResource}, "the service account lacks RBAC permission for this non-resource URL: grant it with a ClusterRole (nonResourceURLs) and ClusterRoleBinding; a Role and RoleBinding cannot"},
		{Request{Scope: Cluster}, "the service account lacks RBAC permission for this cluster-scoped request: grant it with a ClusterRole and ClusterRoleBinding; a Role and RoleBinding cannot"},
		{Request{Scope: Namespaced, Namespace: "team-a"}, "the service account lacks RBAC permission in namespace team-a: grant it with a Role and RoleBinding in team-a (see deploy/)"},
		{Request{}, "the service account lacks RBAC permission for this: grant it with a Role and RoleBinding in the namespace, or with a ClusterRole and ClusterRoleBinding for a cluster-scoped resource or a non-resource URL (see deploy/)"},
	} {
		if got := Status(403, tt.req); got != tt.want {
			t.Errorf("Status(403, %+v) =\n%q, want\n%q", tt.req, got, tt.want)
		}
	}
}

func TestStatus(t *testing.T) {
	for code, want := range map[int]string{
		401: "token is expired, revoked",
		404: "does not serve this path",
		429: "API Priority and Fairness",
		500: "retry later, and check its logs",
		503: "retry later, and check its logs",
		200: "",
		302: "",
		409: "",
	} {
		got := Status(code, Request{Scope: Cluster})
		if (want == "") != (got == "") || !strings.Contains(got, want) {
			t.Errorf("Status(%d) = %q, want it to contain %q", code, got, want)
		}
	}
}
