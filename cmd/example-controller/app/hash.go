// SPDX-License-Identifier: Apache-2.0

package app

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"log/slog"
	"slices"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/incluster/incluster/pkg/incluster"
)

// The label that selects ConfigMaps, and the annotations written on them.
const (
	SelectLabel      = "incluster.dev/hash"
	Selector         = SelectLabel + "=true"
	HashAnnotation   = "incluster.dev/hash"
	WriterAnnotation = "incluster.dev/writer"
)

// FieldManager names the controller in the ConfigMaps' managedFields.
const FieldManager = "incluster-example-controller"

// writeTimeout bounds one write while the work runs.
const writeTimeout = 10 * time.Second

// ConfigHash returns the hex SHA-256 (64 characters) of cm's data and
// binaryData: for data, then binaryData, the number of entries, then each
// key and value in key order, every string and byte slice preceded by its
// length as a uvarint. The same content gives the same hash whatever the
// order of the maps; no two contents give the same input; a key moved from
// data to binaryData changes the hash. Labels and annotations do not count.
func ConfigHash(cm *corev1.ConfigMap) string {
	h := sha256.New()
	writeSection(h, cm.Data, func(v string) []byte { return []byte(v) })
	writeSection(h, cm.BinaryData, func(v []byte) []byte { return v })
	return hex.EncodeToString(h.Sum(nil))
}

func writeSection[V any](h hash.Hash, m map[string]V, bytes func(V) []byte) {
	var buf []byte
	put := func(b []byte) {
		buf = binary.AppendUvarint(buf[:0], uint64(len(b)))
		h.Write(buf)
		h.Write(b)
	}
	buf = binary.AppendUvarint(buf, uint64(len(m)))
	h.Write(buf)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		put([]byte(k))
		put(bytes(m[k]))
	}
}

// hasher is the work: a workqueue of ConfigMap keys fed by the informer,
// and workers that write the annotations.
type hasher struct {
	cs       kubernetes.Interface
	informer cache.SharedIndexInformer
	lister   corelisters.ConfigMapLister
	// handle adds an event handler for the work's term (the Manager's
	// AddEventHandler: removed when the term ends, panics recovered).
	handle   func(context.Context, cache.SharedInformer, cache.ResourceEventHandler) error
	budget   time.Duration // the Manager's WorkBudget
	identity string
	workers  int
	log      *slog.Logger
}

// Work runs while this replica leads, until ctx is cancelled: it registers
// an event handler on the informer (which replays the cache as adds) and
// works the queue. Once ctx is cancelled it starts no write, and returns
// when the writes in flight have their answer, or are cut off at the work's
// time budget: a leader that lost its lease has that long before a
// successor may write (controller.Manager.WorkBudget).
func (h *hasher) Work(ctx context.Context) error {
	q := workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
		workqueue.TypedRateLimitingQueueConfig[string]{Name: "configmap-hash"})
	enqueue := func(obj any) {
		if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
			q.Add(key)
		}
	}
	if err := h.handle(ctx, h.informer, cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	}); err != nil {
		return err
	}
	// Writes outlive the work's cancellation by at most the budget: cut
	// at once, a write may still land unseen; left unbounded, it may land
	// after a successor's.
	writes, cutWrites := context.WithCancel(context.WithoutCancel(ctx))
	defer cutWrites()
	context.AfterFunc(ctx, func() { time.AfterFunc(h.budget, cutWrites) })
	var wg sync.WaitGroup
	for range h.workers {
		wg.Go(func() {
			for h.next(ctx, writes, q) {
			}
		})
	}
	<-ctx.Done()
	q.ShutDown()
	wg.Wait()
	return nil
}

// next takes one key and syncs it, its write under writes; false once the
// queue is shut down or ctx is cancelled.
func (h *hasher) next(ctx, writes context.Context, q workqueue.TypedRateLimitingInterface[string]) bool {
	key, shutdown := q.Get()
	if shutdown {
		return false
	}
	defer q.Done(key)
	if ctx.Err() != nil {
		return false // no write starts once the work is cancelled
	}
	if err := h.sync(writes, key); err != nil {
		h.log.Warn("sync failed; retrying with backoff", "configmap", key, "err", err)
		q.AddRateLimited(key)
		return true
	}
	q.Forget(key)
	return true
}

// sync writes the annotations on the ConfigMap of key if its hash
// annotation differs from its data's hash. The write ends with ctx, and
// after writeTimeout.
func (h *hasher) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // not a key of ours: drop it
	}
	cm, err := h.lister.ConfigMaps(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil // deleted, or no longer labelled
	}
	if err != nil {
		return err
	}
	sum := ConfigHash(cm)
	if cm.Annotations[HashAnnotation] == sum {
		return nil
	}
	patch, err := json.Marshal(map[string]any{"metadata": map[string]any{
		"resourceVersion": cm.ResourceVersion, // conditional: 409 Conflict if the ConfigMap changed since
		"annotations":     map[string]string{HashAnnotation: sum, WriterAnnotation: h.identity},
	}})
	if err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	_, err = h.cs.CoreV1().ConfigMaps(ns).Patch(wctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
	switch {
	case apierrors.IsNotFound(err):
		return nil
	case apierrors.IsConflict(err):
		return fmt.Errorf("changed since read (409 Conflict): will hash the new version")
	case err != nil:
		return incluster.Explain(err, "patch configmap "+key)
	}
	h.log.Info("hash written", "configmap", key, "hash", sum, "resourceVersion", cm.ResourceVersion)
	return nil
}
