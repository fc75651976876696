// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"testing"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/client-go/kubernetes/fake"
)

// Role renders every access the preflight checks: a Role for the pod's
// namespace, one for another namespace, a ClusterRole for cluster scope.
func TestRole(t *testing.T) {
	m, _ := newTestManager(t, fake.NewClientset(), "a", WithAllNamespaces(), WithPermissions(
		authorizationv1.ResourceAttributes{Verb: "create", Group: "events.k8s.io", Resource: "events"},
		authorizationv1.ResourceAttributes{Namespace: "other", Verb: "get", Resource: "secrets", Name: "s"},
		authorizationv1.ResourceAttributes{Verb: "update", Group: "example.dev", Resource: "widgets", Subresource: "status"},
	))
	if _, err := NewInformer(m, m.fake().CoreV1().ConfigMaps); err != nil {
		t.Fatal(err)
	}
	want := `# Made by a test.
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: r
rules:
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    resourceNames: ["test-lease"]
    verbs: ["get", "update", "list", "watch"]
  - apiGroups: ["coordination.k8s.io"]
    resources: ["leases"]
    verbs: ["create"]
  - apiGroups: ["events.k8s.io"]
    resources: ["events"]
    verbs: ["create"]
  - apiGroups: ["example.dev"]
    resources: ["widgets/status"]
    verbs: ["update"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: r
  namespace: other
rules:
  - apiGroups: [""]
    resources: ["secrets"]
    resourceNames: ["s"]
    verbs: ["get"]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: r
rules:
  - apiGroups: [""]
    resources: ["configmaps"]
    verbs: ["list", "watch"]
`
	if got := m.Role("r", "Made by a test."); got != want {
		t.Errorf("Role =\n%s\nwant\n%s", got, want)
	}
}
