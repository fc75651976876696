// SPDX-License-Identifier: Apache-2.0

package e2e

import (
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	rbacv1 "k8s.io/api/rbac/v1"
)

// TestServiceAccountCannotReadSecrets: with the RBAC of deploy/base, the
// demo's ServiceAccount may read pods in its namespace and nothing else: a
// real token of it is refused Secrets, in its namespace and in kube-system.
func TestServiceAccountCannotReadSecrets(t *testing.T) {
	t.Parallel()
	h := newHostPod(t, "secrets")
	ctx := t.Context()
	var role rbacv1.Role
	var binding rbacv1.RoleBinding
	load(t, "role.yaml", &role)
	load(t, "rolebinding.yaml", &binding)
	create(t, ctx, func() error {
		_, err := client.RbacV1().Roles(h.ns).Create(ctx, &role, metav1.CreateOptions{})
		return err
	})
	create(t, ctx, func() error {
		_, err := client.RbacV1().RoleBindings(h.ns).Create(ctx, &binding, metav1.CreateOptions{})
		return err
	})
	cfg := &rest.Config{Host: restConfig.Host, BearerToken: h.token("anchor"),
		TLSClientConfig: rest.TLSClientConfig{CAData: []byte(h.ca)}}
	sa, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// What the Role allows works with this token, so the refusals below are RBAC's.
	if _, err := sa.CoreV1().Pods(h.ns).List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("listing pods in %s with the ServiceAccount's token: %v", h.ns, err)
	}
	for _, ns := range []string{h.ns, "kube-system"} {
		_, err := sa.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("listing Secrets in %s: err = %v, want Forbidden", ns, err)
		}
		_, err = sa.CoreV1().Secrets(ns).Get(ctx, "anchor", metav1.GetOptions{})
		if !apierrors.IsForbidden(err) {
			t.Errorf("getting a Secret in %s: err = %v, want Forbidden", ns, err)
		}
	}
}
