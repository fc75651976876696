// SPDX-License-Identifier: Apache-2.0

package app

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	corelisters "k8s.io/client-go/listers/core/v1"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"
)

func TestConfigHash(t *testing.T) {
	cm := func(data map[string]string, bin map[string][]byte) *corev1.ConfigMap {
		return &corev1.ConfigMap{Data: data, BinaryData: bin}
	}
	base := ConfigHash(cm(map[string]string{"a": "1", "b": "2"}, nil))
	if len(base) != 64 {
		t.Fatalf("ConfigHash = %q, want 64 hex characters", base)
	}
	same := []*corev1.ConfigMap{
		cm(map[string]string{"b": "2", "a": "1"}, nil),
		cm(map[string]string{"a": "1", "b": "2"}, map[string][]byte{}),
		{ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{HashAnnotation: "x"}}, Data: map[string]string{"a": "1", "b": "2"}},
	}
	for i, c := range same {
		if got := ConfigHash(c); got != base {
			t.Errorf("same content #%d: %s, want %s", i, got, base)
		}
	}
	different := []*corev1.ConfigMap{
		cm(map[string]string{"a": "1", "b": "3"}, nil),
		cm(map[string]string{"a": "12"}, nil),                                // not "a"+"1"+"2" run together
		cm(map[string]string{"a": "1"}, map[string][]byte{"b": []byte("2")}), // moved to binaryData
		cm(nil, nil),
	}
	seen := map[string]bool{base: true}
	for i, c := range different {
		h := ConfigHash(c)
		if seen[h] {
			t.Errorf("different content #%d has a hash already seen: %s", i, h)
		}
		seen[h] = true
	}
	if ConfigHash(cm(nil, nil)) != ConfigHash(cm(map[string]string{}, map[string][]byte{})) {
		t.Error("nil and empty maps hash differently")
	}
}

func newTestHasher(cs *fake.Clientset, objs ...*corev1.ConfigMap) *hasher {
	idx := cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	for _, o := range objs {
		_ = idx.Add(o)
	}
	return &hasher{cs: cs, lister: corelisters.NewConfigMapLister(idx), identity: "pod-a_x2k4q", workers: 1,
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func labelled(name, rv string, data map[string]string, annotations map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "app", Name: name, ResourceVersion: rv,
			Labels: map[string]string{SelectLabel: "true"}, Annotations: annotations},
		Data: data,
	}
}

func patches(cs *fake.Clientset) []k8stesting.PatchAction {
	var out []k8stesting.PatchAction
	for _, a := range cs.Actions() {
		if p, ok := a.(k8stesting.PatchAction); ok {
			out = append(out, p)
		}
	}
	return out
}

func TestSync(t *testing.T) {
	data := map[string]string{"k": "v"}
	sum := ConfigHash(&corev1.ConfigMap{Data: data})

	t.Run("writes both annotations, conditionally", func(t *testing.T) {
		cm := labelled("c", "7", data, map[string]string{"other": "kept", HashAnnotation: "stale"})
		cs := fake.NewClientset(cm)
		if err := newTestHasher(cs, cm).sync(t.Context(), "app/c"); err != nil {
			t.Fatal(err)
		}
		ps := patches(cs)
		if len(ps) != 1 || ps[0].GetPatchType() != types.MergePatchType {
			t.Fatalf("patches: %v", ps)
		}
		var got struct {
			Metadata struct {
				ResourceVersion string            `json:"resourceVersion"`
				Annotations     map[string]string `json:"annotations"`
			} `json:"metadata"`
		}
		if err := json.Unmarshal(ps[0].GetPatch(), &got); err != nil {
			t.Fatal(err)
		}
		if got.Metadata.ResourceVersion != "7" || len(got.Metadata.Annotations) != 2 ||
			got.Metadata.Annotations[HashAnnotation] != sum || got.Metadata.Annotations[WriterAnnotation] != "pod-a_x2k4q" {
			t.Errorf("patch = %s", ps[0].GetPatch())
		}
	})
	t.Run("hash already there: no write", func(t *testing.T) {
		cm := labelled("c", "7", data, map[string]string{HashAnnotation: sum, WriterAnnotation: "another-pod_abcde"})
		cs := fake.NewClientset(cm)
		if err := newTestHasher(cs, cm).sync(t.Context(), "app/c"); err != nil || len(patches(cs)) != 0 {
			t.Errorf("sync = %v, patches %v", err, patches(cs))
		}
	})
	t.Run("gone from the cache: nothing", func(t *testing.T) {
		cs := fake.NewClientset()
		if err := newTestHasher(cs).sync(t.Context(), "app/c"); err != nil || len(cs.Actions()) != 0 {
			t.Errorf("sync = %v, actions %v", err, cs.Actions())
		}
	})
	t.Run("changed since read: conflict, retried", func(t *testing.T) {
		cm := labelled("c", "7", data, nil)
		cs := fake.NewClientset(cm)
		cs.PrependReactor("patch", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
			return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "configmaps"}, "c", errors.New("rv"))
		})
		if err := newTestHasher(cs, cm).sync(t.Context(), "app/c"); err == nil || !strings.Contains(err.Error(), "409 Conflict") {
			t.Errorf("sync = %v, want a conflict", err)
		}
	})
}

// The work writes the hash of a labelled ConfigMap found in the informer's
// cache, and returns once its context is cancelled.
func TestWork(t *testing.T) {
	cm := labelled("c", "", map[string]string{"k": "v"}, nil)
	cs := fake.NewClientset(cm)
	patched := make(chan struct{}, 10)
	cs.PrependReactor("patch", "configmaps", func(k8stesting.Action) (bool, runtime.Object, error) {
		patched <- struct{}{}
		return false, nil, nil
	})
	f := informers.NewSharedInformerFactory(cs, 0)
	inf := f.Core().V1().ConfigMaps()
	h := newTestHasher(cs)
	h.informer, h.lister = inf.Informer(), inf.Lister()
	ctx, cancel := context.WithCancel(t.Context())
	defer f.Shutdown()
	f.Start(ctx.Done())
	f.WaitForCacheSync(ctx.Done())

	workCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.Work(workCtx) }()
	select {
	case <-patched:
	case <-time.After(20 * time.Second):
		t.Fatal("no patch")
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Work = %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Work did not return")
	}
	cancel()
	got, err := cs.CoreV1().ConfigMaps("app").Get(t.Context(), "c", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Annotations[HashAnnotation] != ConfigHash(cm) || got.Annotations[WriterAnnotation] != "pod-a_x2k4q" {
		t.Errorf("annotations = %v", got.Annotations)
	}
}
