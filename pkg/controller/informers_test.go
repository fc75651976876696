// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	metadatafake "k8s.io/client-go/metadata/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
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
// cache objects without managedFields; Get and List read the cache, typed.
func TestInformerScopeAndTransform(t *testing.T) {
	sel := map[string]string{"incluster.dev/hash": "true"}
	cs := fake.NewClientset(
		configMap(testNS, "labelled", sel),
		configMap(testNS, "plain", nil),
		configMap("other", "labelled", sel),
		&corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "s"}, Data: map[string][]byte{"k": []byte("v")}},
	)
	m, _ := newTestManager(t, cs, "me")
	cms, err := NewInformer(m, cs.CoreV1().ConfigMaps, WithLabelSelector("incluster.dev/hash=true"))
	if err != nil {
		t.Fatal(err)
	}
	// Another transform for one informer: the Secrets' values dropped.
	secrets, err := NewInformer(m, cs.CoreV1().Secrets, WithInformerTransform(func(o any) (any, error) {
		if s, ok := o.(*corev1.Secret); ok {
			s.Data = nil
		}
		return o, nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	syncInformers(t, m)
	got, err := cms.List("", nil)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, cm := range got {
		keys = append(keys, cm.Namespace+"/"+cm.Name)
		if cm.ManagedFields != nil {
			t.Errorf("%s/%s: managedFields kept: %v", cm.Namespace, cm.Name, cm.ManagedFields)
		}
	}
	if strings.Join(keys, ",") != testNS+"/labelled" {
		t.Errorf("cached: %q, want only %s/labelled", keys, testNS)
	}
	if cm, err := cms.Get(testNS, "labelled"); err != nil || cm.Name != "labelled" {
		t.Errorf("Get(labelled) = %v, %v", cm, err)
	}
	if _, err := cms.Get(testNS, "plain"); !apierrors.IsNotFound(err) {
		t.Errorf("Get(plain), not selected = %v, want NotFound", err)
	}
	if s, err := secrets.Get(testNS, "s"); err != nil || s.Data != nil {
		t.Errorf("the Secret with its own transform: %v, %v; want no data", s, err)
	}
	if cms.Resource() != corev1.SchemeGroupVersion.WithResource("configmaps") {
		t.Errorf("Resource() = %v", cms.Resource())
	}

	// Both selectors reach the API server, on the informer's list.
	cs2 := fake.NewClientset()
	lists := make(chan k8stesting.ListRestrictions, 10)
	cs2.PrependReactor("list", "secrets", func(a k8stesting.Action) (bool, runtime.Object, error) {
		lists <- a.(k8stesting.ListAction).GetListRestrictions()
		return false, nil, nil
	})
	m2, _ := newTestManager(t, cs2, "me")
	if _, err := NewInformer(m2, cs2.CoreV1().Secrets, WithLabelSelector("a=b"), WithFieldSelector("type=kubernetes.io/tls")); err != nil {
		t.Fatal(err)
	}
	syncInformers(t, m2)
	if r := within(t, lists, "the Secrets' list"); r.Labels.String() != "a=b" || r.Fields.String() != "type=kubernetes.io/tls" {
		t.Errorf("the list asked labels %q, fields %q; want a=b and type=kubernetes.io/tls", r.Labels, r.Fields)
	}

	if _, err := NewInformer(m, cs.CoreV1().ConfigMaps, WithLabelSelector("a in (")); err == nil {
		t.Error("a bad label selector was accepted")
	}
	if _, err := NewInformer(m, cs.CoreV1().ConfigMaps, WithFieldSelector("a in (")); err == nil {
		t.Error("a bad field selector was accepted")
	}
}

// syncInformers starts m's informers until the test ends and waits until
// they have synced.
func syncInformers(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(func() { cancel(); m.shutdownInformers() })
	m.startInformers(ctx)
	if !m.waitForSync(ctx) {
		t.Fatal("caches did not sync")
	}
}

var widgets = schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}

func widget(ns, name string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("example.com/v1")
	u.SetKind("Widget")
	u.SetNamespace(ns)
	u.SetName(name)
	u.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "kubectl"}})
	_ = unstructured.SetNestedField(u.Object, "blue", "spec", "color")
	return u
}

// A custom resource, dynamic and metadata-only, and a cluster-scoped
// resource: each caches what it should, and adds list and watch at the
// right scope to the preflight.
func TestDynamicAndMetadataInformers(t *testing.T) {
	objs := []runtime.Object{widget(testNS, "w1"), widget("other", "w2")}
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(), map[schema.GroupVersionResource]string{widgets: "WidgetList"}, objs...)
	ms := runtime.NewScheme()
	_ = metav1.AddMetaToScheme(ms)
	md := metadatafake.NewSimpleMetadataClient(ms, &metav1.PartialObjectMetadata{
		TypeMeta:   metav1.TypeMeta{APIVersion: "example.com/v1", Kind: "Widget"},
		ObjectMeta: metav1.ObjectMeta{Namespace: testNS, Name: "w1", Labels: map[string]string{"a": "b"}},
	})
	cs := fake.NewClientset(&corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}})
	m, _ := newTestManager(t, cs, "me", WithDynamicClient(dyn), WithMetadataClient(md))
	ws, err := m.DynamicInformer(widgets)
	if err != nil {
		t.Fatal(err)
	}
	all, err := m.DynamicInformer(widgets, WithClusterScope())
	if err != nil {
		t.Fatal(err)
	}
	meta, err := m.MetadataInformer(widgets)
	if err != nil {
		t.Fatal(err)
	}
	nodes, err := NewClusterInformer(m, cs.CoreV1().Nodes)
	if err != nil {
		t.Fatal(err)
	}
	syncInformers(t, m)

	w, err := ws.Get(testNS, "w1")
	if err != nil {
		t.Fatal(err)
	}
	if c, _, _ := unstructured.NestedString(w.Object, "spec", "color"); c != "blue" || w.GetManagedFields() != nil {
		t.Errorf("w1: color %q, managedFields %v; want blue and none", c, w.GetManagedFields())
	}
	if l, _ := ws.List("", nil); len(l) != 1 {
		t.Errorf("the namespaced dynamic informer cached %d widgets, want 1 (its namespace's)", len(l))
	}
	if l, _ := all.List("", nil); len(l) != 2 {
		t.Errorf("the cluster-wide dynamic informer cached %d widgets, want 2", len(l))
	}
	if p, err := meta.Get(testNS, "w1"); err != nil || p.Labels["a"] != "b" {
		t.Errorf("metadata of w1 = %v, %v", p, err)
	}
	if n, err := nodes.Get("", "n1"); err != nil || n.Name != "n1" {
		t.Errorf("node n1 = %v, %v", n, err)
	}

	var got []string
	for _, a := range m.accessNeeded() {
		if a.Verb == "list" {
			got = append(got, a.Namespace+" "+a.Group+" "+a.Resource)
		}
	}
	want := []string{"app example.com widgets", " example.com widgets", "  nodes", "app coordination.k8s.io leases"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("list checks %q, want %q", got, want)
	}

	bare, _ := newTestManager(t, cs, "me")
	if _, err := bare.DynamicInformer(widgets); err == nil || !strings.Contains(err.Error(), "WithDynamicClient") {
		t.Errorf("DynamicInformer without a dynamic client = %v, want the option named", err)
	}
	if _, err := bare.MetadataInformer(widgets); err == nil || !strings.Contains(err.Error(), "WithMetadataClient") {
		t.Errorf("MetadataInformer without a metadata client = %v, want the option named", err)
	}
}

// gadget is a typed custom resource outside client-go's scheme.
type gadget struct{ unstructured.Unstructured }

type gadgetClient struct{}

func (gadgetClient) Get(context.Context, string, metav1.GetOptions) (*gadget, error) {
	return nil, errors.New("unused")
}

func (gadgetClient) List(context.Context, metav1.ListOptions) (*unstructured.UnstructuredList, error) {
	return &unstructured.UnstructuredList{}, nil
}

func (gadgetClient) Watch(context.Context, metav1.ListOptions) (watch.Interface, error) {
	return watch.NewFake(), nil
}

// A typed client of a type outside the scheme needs WithResource.
func TestInformerResource(t *testing.T) {
	m, _ := newTestManager(t, fake.NewClientset(), "me")
	client := func(string) gadgetClient { return gadgetClient{} }
	if _, err := NewInformer(m, client); err == nil || !strings.Contains(err.Error(), "WithResource") {
		t.Errorf("a type outside the scheme = %v, want WithResource named", err)
	}
	gvr := schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "gadgets"}
	inf, err := NewInformer(m, client, WithResource(gvr))
	if err != nil || inf.Resource() != gvr {
		t.Fatalf("WithResource: %v, %v", inf, err)
	}
}

// New makes the dynamic client on first use, over the client's connection.
func TestDynamicInformerWithNew(t *testing.T) {
	paths := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case paths <- r.URL.Path:
		default:
		}
		http.Error(w, "no", http.StatusNotFound)
	}))
	defer srv.Close()
	c, err := incluster.NewForConfig(&rest.Config{Host: srv.URL}, testNS)
	if err != nil {
		t.Fatal(err)
	}
	m, err := New(c, "lease", WithIdentity("me"))
	if err != nil {
		t.Fatal(err)
	}
	ws, err := m.DynamicInformer(widgets)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go ws.RunWithContext(ctx)
	if p := <-paths; p != "/apis/example.com/v1/namespaces/app/widgets" {
		t.Errorf("the dynamic informer asked %s", p)
	}
}

func TestInformerAfterRun(t *testing.T) {
	m, _ := newTestManager(t, fake.NewClientset(), "me")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_ = m.Run(ctx, func(context.Context) error { return nil })
	if _, err := NewInformer(m, m.fake().CoreV1().ConfigMaps); err == nil || !strings.Contains(err.Error(), "before Run") {
		t.Errorf("NewInformer after Run = %v", err)
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

// The Manager's clients ask for protobuf, JSON as the fallback, over the client's
// own HTTP client.
func TestProtobuf(t *testing.T) {
	var mu sync.Mutex
	var accept, userAgent string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		accept, userAgent = r.Header.Get("Accept"), r.Header.Get("User-Agent")
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"kind":"LeaseList","apiVersion":"coordination.k8s.io/v1","metadata":{"resourceVersion":"1"},"items":[]}`))
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
	if _, err := m.cs.CoordinationV1().Leases(testNS).List(t.Context(), metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if accept != "application/vnd.kubernetes.protobuf,application/json" || userAgent != "proto-test" {
		t.Errorf("Accept %q, User-Agent %q", accept, userAgent)
	}
}
