// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/incluster/incluster/pkg/incluster"
)

func configMap(ns, name string, labels map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
		Namespace: ns, Name: name, Labels: labels,
		ManagedFields: []metav1.ManagedFieldsEntry{{Manager: "kubectl", Operation: metav1.ManagedFieldsOperationApply}},
	}}
}

// The informers list the pod's namespace only, with the label selector, and
// cache objects without managedFields.
func TestInformerScopeAndTransform(t *testing.T) {
	sel := map[string]string{"incluster.dev/hash": "true"}
	cs := fake.NewClientset(
		configMap(testNS, "labelled", sel),
		configMap(testNS, "plain", nil),
		configMap("other", "labelled", sel),
	)
	m, _ := newTestManager(t, cs, "me")
	gi, err := m.Informer(configMaps, WithLabelSelector("incluster.dev/hash=true"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer func() { cancel(); m.shutdownInformers() }()
	m.startInformers(ctx)
	if !m.waitForSync(ctx) {
		t.Fatal("caches did not sync")
	}
	var keys []string
	for _, o := range gi.Informer().GetStore().List() {
		cm := o.(*corev1.ConfigMap)
		k, _ := cache.MetaNamespaceKeyFunc(cm)
		keys = append(keys, k)
		if cm.ManagedFields != nil {
			t.Errorf("%s: managedFields kept: %v", k, cm.ManagedFields)
		}
	}
	if strings.Join(keys, ",") != testNS+"/labelled" {
		t.Errorf("cached: %q, want only %s/labelled", keys, testNS)
	}

	if _, err := m.Informer(configMaps, WithLabelSelector("a in (")); err == nil {
		t.Error("a bad label selector was accepted")
	}
	if _, err := m.Informer(schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}); err == nil ||
		!strings.Contains(err.Error(), "only built-in resources") {
		t.Errorf("a custom resource: %v", err)
	}
}

func TestInformerAfterRun(t *testing.T) {
	m, _ := newTestManager(t, fake.NewClientset(), "me")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = m.Run(ctx, func(context.Context) error { return nil })
	if _, err := m.Informer(configMaps); err == nil || !strings.Contains(err.Error(), "before Run") {
		t.Errorf("Informer after Run = %v", err)
	}
}

func TestDropManagedFields(t *testing.T) {
	cm := configMap(testNS, "a", nil)
	for range 2 { // idempotent
		out, err := DropManagedFields(cm)
		if err != nil || out.(*corev1.ConfigMap).ManagedFields != nil {
			t.Fatalf("DropManagedFields = %v, %v", out, err)
		}
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "app/a", Obj: configMap(testNS, "a", nil)}
	if out, err := DropManagedFields(tomb); err != nil || out != any(tomb) {
		t.Errorf("a tombstone: %v, %v", out, err)
	}
}

// The clientset asks for protobuf, JSON as the fallback, over the client's
// own HTTP client.
func TestProtobuf(t *testing.T) {
	var mu sync.Mutex
	var accept, userAgent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		accept, userAgent = r.Header.Get("Accept"), r.Header.Get("User-Agent")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"ConfigMapList","apiVersion":"v1","metadata":{"resourceVersion":"1"},"items":[]}`))
	}))
	defer srv.Close()
	c, err := incluster.NewForConfig(&rest.Config{Host: srv.URL, UserAgent: "proto-test"}, testNS)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(c, "lease", WithIdentity("me"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Clientset().CoreV1().ConfigMaps(testNS).List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if accept != "application/vnd.kubernetes.protobuf,application/json" || userAgent != "proto-test" {
		t.Errorf("Accept %q, User-Agent %q", accept, userAgent)
	}
}
