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
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/incluster/incluster/pkg/controller"
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

// writeTimeout bounds one write; the loop's context also ends it
// WorkBudget after the term ended.
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

// The marks that start the generateName of a ConfigMap KeepDataHash has
// reduced: the hash annotation is not (cachedMark) or is (cachedMarkWritten)
// the data's hash. No object from the API server has them: a generateName
// is a DNS name's prefix.
const (
	cachedMark        = "\x00"
	cachedMarkWritten = "\x01"
)

// KeepDataHash is the hash loop's informer transform: it keeps of a
// ConfigMap what the work reads, and nothing else. The work needs the hash
// of the data, not the data, and of the metadata only the name, namespace,
// uid, resourceVersion and whether the hash annotation is the data's hash.
// So the cached copy is the controller's own record: its generateName
// (read by the API server only when it creates an object, so unused in a
// cached copy) holds a mark that says whether the hash is written, then
// the data's hash; data, binaryData, labels, annotations and managedFields
// are dropped. No map is left: a Go map costs about 300 bytes even with one
// entry, 15 MB at 50,000 ConfigMaps (issue 26). A cached object is as big
// before its hash is written as after: writing N hashes grows nothing.
// Idempotent, as a transform must be: an object already reduced passes
// unchanged. Read it with cachedHash.
//
// A transform runs on the informer's copy: nothing else may rely on the
// dropped fields of a cached object (here nothing lists by label: the API
// server selects with Selector).
func KeepDataHash(obj any) (any, error) {
	obj, err := controller.DropManagedFields(obj)
	cm, ok := obj.(*corev1.ConfigMap)
	if err != nil || !ok {
		return obj, err // a tombstone, or not a ConfigMap
	}
	if _, _, reduced := reducedHash(cm); reduced {
		return cm, nil
	}
	sum, mark := ConfigHash(cm), cachedMark
	if cm.Annotations[HashAnnotation] == sum {
		mark = cachedMarkWritten
	}
	cm.GenerateName = mark + sum
	cm.Labels, cm.Annotations, cm.Data, cm.BinaryData = nil, nil, nil, nil
	return cm, nil
}

// reducedHash returns what KeepDataHash kept of cm, if it reduced cm.
func reducedHash(cm *corev1.ConfigMap) (sum string, written, reduced bool) {
	if sum, ok := strings.CutPrefix(cm.GenerateName, cachedMarkWritten); ok {
		return sum, true, true
	}
	sum, ok := strings.CutPrefix(cm.GenerateName, cachedMark)
	return sum, false, ok
}

// cachedHash returns the hash of cm's data and whether cm's hash annotation
// is that hash: what KeepDataHash kept, else computed (an object cached
// whole).
func cachedHash(cm *corev1.ConfigMap) (sum string, written bool) {
	if sum, written, ok := reducedHash(cm); ok {
		return sum, written
	}
	sum = ConfigHash(cm)
	return sum, cm.Annotations[HashAnnotation] == sum
}

// configMapCache reads ConfigMaps from an informer's cache.
type configMapCache interface {
	Get(namespace, name string) (*corev1.ConfigMap, error)
}

// hasher writes the hash annotations; Reconcile is its reconcile loop's
// function (controller.Manager.Loop owns the queue, the event handlers of
// each term, the workers, retries and the work's time budget).
type hasher struct {
	cs       corev1client.ConfigMapsGetter
	cache    configMapCache // the informer's: *controller.Informer[*corev1.ConfigMap]
	identity string
	log      *slog.Logger
}

// Reconcile hashes the ConfigMap req names, if it is still labelled. A
// 409 Conflict (changed since read) is an error: the loop retries, and the
// change's own event queues it too.
func (h *hasher) Reconcile(ctx context.Context, req controller.Request) (controller.Result, error) {
	return controller.Result{}, h.sync(ctx, req.String())
}

// sync writes the annotations on the ConfigMap of key if its hash
// annotation differs from its data's hash. The write ends with ctx, and
// after writeTimeout.
func (h *hasher) sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil // not a key of ours: drop it
	}
	cm, err := h.cache.Get(ns, name)
	if apierrors.IsNotFound(err) {
		return nil // deleted, or no longer labelled
	}
	if err != nil {
		return err
	}
	sum, written := cachedHash(cm)
	if written {
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
	_, err = h.cs.ConfigMaps(ns).Patch(wctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: FieldManager})
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
