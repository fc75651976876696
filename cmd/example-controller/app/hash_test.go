// SPDX-License-Identifier: Apache-2.0

package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/rest"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/cache"

	"github.com/incluster/incluster/pkg/controller"
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
	return &hasher{cs: cs.CoreV1(), cache: indexCache{idx}, identity: "pod-a_x2k4q",
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// indexCache reads ConfigMaps from an indexer the test fills.
type indexCache struct{ idx cache.Indexer }

func (c indexCache) Get(namespace, name string) (*corev1.ConfigMap, error) {
	o, ok, err := c.idx.GetByKey(namespace + "/" + name)
	if err != nil || !ok {
		return nil, apierrors.NewNotFound(corev1.Resource("configmaps"), name)
	}
	return o.(*corev1.ConfigMap), nil
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

// runController runs the example controller as Run wires it (a Manager, the
// labelled ConfigMaps' informer, the hash loop), without a cluster: the
// Manager on a fake clientset holding objs, its writes to writes. Short
// election timings: WorkBudget is 675 ms. cancel shuts it down.
func runController(t *testing.T, cs *fake.Clientset, writes kubernetes.Interface) (m *controller.Manager, cancel context.CancelFunc, done <-chan error) {
	t.Helper()
	if writes == nil {
		writes = cs
	}
	m, err := controller.NewForClientset(cs, "app", DefaultLease,
		controller.WithAccessCheck(controller.AllowAll), controller.WithProbeAddress("0"), controller.WithIdentity("pod-a_x2k4q"),
		controller.WithLeaseDuration(time.Second), controller.WithRenewDeadline(300*time.Millisecond), controller.WithRetryPeriod(50*time.Millisecond),
		controller.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	cms, err := informer(m, cs.CoreV1())
	if err != nil {
		t.Fatal(err)
	}
	h := &hasher{cs: writes.CoreV1(), cache: cms, identity: m.Identity(),
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(t.Context())
	out, finished := make(chan error, 1), make(chan struct{})
	go func() {
		defer close(finished)
		out <- m.Run(ctx, m.Loop("configmap-hash", cms, h.Reconcile).Work)
	}()
	t.Cleanup(func() { cancel(); <-finished })
	return m, cancel, out
}

// The controller writes the hash of a labelled ConfigMap, and stops
// cleanly (Run returns nil).
func TestController(t *testing.T) {
	cm := labelled("c", "", map[string]string{"k": "v"}, nil)
	cs := fake.NewClientset(cm)
	_, cancel, done := runController(t, cs, nil)
	var got *corev1.ConfigMap
	for range 2000 {
		var err error
		got, err = cs.CoreV1().ConfigMaps("app").Get(t.Context(), "c", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if got.Annotations[HashAnnotation] != "" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got.Annotations[HashAnnotation] != ConfigHash(cm) || got.Annotations[WriterAnnotation] != "pod-a_x2k4q" {
		t.Errorf("annotations = %v", got.Annotations)
	}
	cancel()
	if err := wait(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// patchServer is an API server whose ConfigMap patches wait: each one
// reports its start on started, then is answered 200 once release is
// closed, or reports on cut when the client gives it up first.
type patchServer struct {
	started chan string
	release chan struct{}
	cut     chan time.Time
}

func newPatchServer(t *testing.T) (*patchServer, kubernetes.Interface) {
	ps := &patchServer{started: make(chan string, 10), release: make(chan struct{}), cut: make(chan time.Time, 10)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPatch {
			http.Error(w, "only patches here", http.StatusMethodNotAllowed)
			return
		}
		_, _ = io.Copy(io.Discard, r.Body) // then the server sees the client go away
		name := path.Base(r.URL.Path)
		ps.started <- name
		select {
		case <-ps.release:
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprintf(w, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"namespace":"app","name":%q}}`, name)
		case <-r.Context().Done():
			ps.cut <- time.Now()
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { // unblock a handler a failed test left waiting, before Close waits for it
		select {
		case <-ps.release:
		default:
			close(ps.release)
		}
	})
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return ps, cs
}

func wait[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(20 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}

// On shutdown the controller starts no write, and Run returns only after
// the write in flight has its answer: the write is not cut off with the
// work (it could still land, unseen), and the ConfigMap queued behind it
// (one worker) is not written.
func TestShutdownStopsWriting(t *testing.T) {
	ps, cs := newPatchServer(t)
	_, cancel, done := runController(t, fake.NewClientset(
		labelled("a", "1", map[string]string{"k": "a"}, nil), labelled("b", "1", map[string]string{"k": "b"}, nil)), cs)
	first := wait(t, ps.started, "the first write")
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) while the write to %s had no answer", err, first)
	case at := <-ps.cut:
		t.Fatalf("the write in flight was cut off at %s, when the work was cancelled", at.Format(time.StampMilli))
	case <-time.After(300 * time.Millisecond):
	}
	close(ps.release)
	if err := wait(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v", err)
	}
	select {
	case name := <-ps.started:
		t.Errorf("a write to %s started after the work was cancelled", name)
	default:
	}
}

// No write is in flight once the work's time budget after its
// cancellation is spent: a write still unanswered is cut off then, and Run
// returns.
func TestWriteBudget(t *testing.T) {
	ps, cs := newPatchServer(t)
	m, cancel, done := runController(t, fake.NewClientset(labelled("a", "1", map[string]string{"k": "a"}, nil)), cs)
	budget := m.WorkBudget()
	wait(t, ps.started, "the write")
	cancel()
	cancelled := time.Now()
	cutAt := wait(t, ps.cut, "the write to be cut off")
	if err := wait(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v", err)
	}
	returned := time.Since(cancelled)
	after := cutAt.Sub(cancelled)
	t.Logf("write cut off %s after the cancellation, Run returned after %s (budget %s)", after.Round(time.Millisecond), returned.Round(time.Millisecond), budget)
	if after < budget-50*time.Millisecond || returned > budget+time.Second {
		t.Errorf("write cut off %s and Run returned %s after the cancellation; want both at the budget (%s)", after, returned, budget)
	}
}

// KeepDataHash keeps the hash of the data in place of the data, once: a
// second application changes nothing, and the hash loop writes the hash of
// the data the cache no longer holds.
func TestKeepDataHash(t *testing.T) {
	cm := labelled("c", "", map[string]string{"k": "v"}, nil)
	cm.BinaryData = map[string][]byte{"b": {1, 2}}
	cm.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	want := ConfigHash(cm)
	dataHash := func(cm *corev1.ConfigMap) string { sum, _ := cachedHash(cm); return sum }
	hashWritten := func(cm *corev1.ConfigMap) bool { _, written := cachedHash(cm); return written }
	obj, err := KeepDataHash(cm.DeepCopy())
	if err != nil {
		t.Fatal(err)
	}
	got := obj.(*corev1.ConfigMap)
	if got.Data != nil || got.BinaryData != nil || got.ManagedFields != nil {
		t.Errorf("data %v, binaryData %v, managedFields %v kept", got.Data, got.BinaryData, got.ManagedFields)
	}
	if dataHash(got) != want || got.Labels != nil {
		t.Errorf("dataHash = %q, want %q; labels %v (want none)", dataHash(got), want, got.Labels)
	}
	// Of the annotations only whether the hash is written stays, and no map
	// is left (about 300 bytes each).
	for _, written := range []string{"", want, "stale"} {
		in := cm.DeepCopy()
		in.Annotations = map[string]string{WriterAnnotation: "someone", "other": "x"}
		if written != "" {
			in.Annotations[HashAnnotation] = written
		}
		out, _ := KeepDataHash(in)
		o := out.(*corev1.ConfigMap)
		if o.Annotations != nil || hashWritten(o) != (written == want) || dataHash(o) != want {
			t.Errorf("written %q: annotations %v, hashWritten %v, dataHash %q; want no map, %v and the data's hash", written, o.Annotations, hashWritten(o), dataHash(o), written == want)
		}
	}
	again, _ := KeepDataHash(got.DeepCopy())
	if dataHash(again.(*corev1.ConfigMap)) != want {
		t.Errorf("applied twice: dataHash = %q, want %q (not idempotent)", dataHash(again.(*corev1.ConfigMap)), want)
	}
	tomb := cache.DeletedFinalStateUnknown{Key: "app/c", Obj: cm}
	if out, err := KeepDataHash(tomb); err != nil || out != any(tomb) {
		t.Errorf("a tombstone: %v, %v; want it unchanged", out, err)
	}
	for _, mark := range []string{cachedMark, cachedMarkWritten} {
		if len(validation.IsDNS1123Subdomain(mark+"x")) == 0 {
			t.Errorf("%q starts a valid generateName: an object from the API server could carry it", mark)
		}
	}
	// An object cached whole (no transform) reads the same.
	whole := cm.DeepCopy()
	whole.Annotations = map[string]string{HashAnnotation: want}
	if dataHash(whole) != want || !hashWritten(whole) {
		t.Errorf("cached whole: dataHash %q, hashWritten %v; want %q, true", dataHash(whole), hashWritten(whole), want)
	}
}
