// SPDX-License-Identifier: Apache-2.0

package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	dynamicfake "k8s.io/client-go/dynamic/fake"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/incluster/incluster/pkg/controller"
)

func bundle(name string, generation int64, data map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{"spec": map[string]any{"data": data}}}
	u.SetAPIVersion(BundleResource.GroupVersion().String())
	u.SetKind(BundleKind.Kind)
	u.SetNamespace("app")
	u.SetName(name)
	u.SetUID(types.UID("uid-" + name))
	u.SetGeneration(generation)
	return u
}

// eventually polls cond every 10 ms for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 5 s", what)
		}
	}
}

// withResourceVersions gives the dynamic fake the API server's optimistic
// concurrency for resource: each update (of the object or its status) sets
// a new resourceVersion, and one that carries another than the stored
// object's is a 409 Conflict. Without it an update of a stale copy (a
// status written from a cache a step behind) silently reverts a newer spec,
// which the API server never lets happen.
func withResourceVersions(dyn *dynamicfake.FakeDynamicClient, resource schema.GroupVersionResource) {
	var rv atomic.Int64
	dyn.PrependReactor("update", resource.Resource, func(a k8stesting.Action) (bool, runtime.Object, error) {
		u, ok := a.(k8stesting.UpdateAction).GetObject().(*unstructured.Unstructured)
		if !ok {
			return false, nil, nil
		}
		cur, err := dyn.Tracker().Get(resource, u.GetNamespace(), u.GetName())
		if err != nil {
			return false, nil, nil // the tracker answers
		}
		if have := cur.(metav1.Object).GetResourceVersion(); u.GetResourceVersion() != have {
			return true, nil, apierrors.NewConflict(resource.GroupResource(), u.GetName(), errors.New("the object has been modified"))
		}
		u.SetResourceVersion(strconv.FormatInt(rv.Add(1), 10))
		return false, nil, nil // the tracker stores it
	})
}

// The Bundle loop on fakes: a Bundle gets its ConfigMap, owned by it, and a
// Ready status for its generation and an Event; a new generation is
// followed; the ConfigMap deleted by hand comes back.
func TestBundles(t *testing.T) {
	cs := fake.NewClientset()
	dyn := dynamicfake.NewSimpleDynamicClientWithCustomListKinds(runtime.NewScheme(),
		map[schema.GroupVersionResource]string{BundleResource: "BundleList"}, bundle("b1", 1, map[string]any{"a": "1"}))
	withResourceVersions(dyn, BundleResource)
	m, err := controller.NewForClientset(cs, "app", DefaultLease,
		controller.WithAccessCheck(controller.AllowAll), controller.WithProbeAddress("0"), controller.WithIdentity("pod-a"),
		controller.WithDynamicClient(dyn), controller.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	loop, err := bundleLoop(m, cs.CoreV1(), dyn, 1)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx, loop.Work) }()
	defer func() { cancel(); <-done }()

	bundles := dyn.Resource(BundleResource).Namespace("app")
	configMap := func() *corev1.ConfigMap {
		cm, _ := cs.CoreV1().ConfigMaps("app").Get(ctx, "b1", metav1.GetOptions{})
		return cm
	}
	status := func() (gen int64, ready *metav1.Condition) {
		u, err := bundles.Get(ctx, "b1", metav1.GetOptions{})
		if err != nil {
			return 0, nil
		}
		var s bundleStatus
		raw, _ := u.Object["status"].(map[string]any)
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &s)
		return s.ObservedGeneration, meta.FindStatusCondition(s.Conditions, ConditionReady)
	}
	readyFor := func(gen int64) func() bool {
		return func() bool {
			g, c := status()
			return g == gen && c != nil && c.Status == metav1.ConditionTrue && c.Reason == ReasonSynced && c.ObservedGeneration == gen
		}
	}

	eventually(t, "the Bundle's ConfigMap", func() bool { cm := configMap(); return cm != nil && cm.Data["a"] == "1" })
	cm := configMap()
	if ref := metav1.GetControllerOf(cm); ref == nil || ref.Kind != "Bundle" || ref.UID != "uid-b1" || cm.Labels[BundleLabel] != "b1" {
		t.Errorf("ConfigMap b1: owner %+v, labels %v; want the Bundle as controller and the label", ref, cm.Labels)
	}
	eventually(t, "Ready for generation 1", readyFor(1))
	eventually(t, "an Event on the Bundle", func() bool {
		evs, _ := cs.EventsV1().Events("app").List(ctx, metav1.ListOptions{})
		for _, e := range evs.Items {
			if e.Regarding.Name == "b1" && e.Regarding.Kind == "Bundle" && e.Reason == ReasonSynced {
				return true
			}
		}
		return false
	})

	// A new generation (the fake does not count them: the test does).
	cur, err := bundles.Get(ctx, "b1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = unstructured.SetNestedStringMap(cur.Object, map[string]string{"a": "2", "b": "3"}, "spec", "data")
	cur.SetGeneration(2)
	if _, err := bundles.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Ready for generation 2", readyFor(2))
	if cm := configMap(); cm.Data["a"] != "2" || cm.Data["b"] != "3" {
		t.Errorf("ConfigMap data after the change: %v", cm.Data)
	}

	// The ConfigMap deleted by hand is put back.
	if err := cs.CoreV1().ConfigMaps("app").Delete(ctx, "b1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the ConfigMap back after its deletion", func() bool { cm := configMap(); return cm != nil && cm.Data["a"] == "2" })

	// An invalid spec: Ready False, the ConfigMap left as it was.
	if err := bundles.Delete(ctx, "b1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	bad := bundle("bad", 1, nil)
	bad.Object["spec"] = map[string]any{"data": "not a map"}
	if _, err := bundles.Create(ctx, bad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "Ready False for an invalid spec", func() bool {
		u, err := bundles.Get(ctx, "bad", metav1.GetOptions{})
		if err != nil {
			return false
		}
		c, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
		return len(c) == 1 && c[0].(map[string]any)["reason"] == ReasonInvalid && c[0].(map[string]any)["status"] == "False"
	})
	if _, err := cs.CoreV1().ConfigMaps("app").Get(ctx, "bad", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("a ConfigMap for an invalid Bundle: %v", err)
	}
}
