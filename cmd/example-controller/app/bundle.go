// SPDX-License-Identifier: Apache-2.0

package app

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/events"

	"github.com/incluster/incluster/pkg/controller"
)

// The Bundle custom resource (deploy/crd/bundles.yaml): with --bundles, for
// each Bundle the controller keeps a ConfigMap of the same name, owned by
// the Bundle, whose data is the Bundle's spec.data, and writes the Bundle's
// status: observedGeneration, configMap, and a Ready condition. A ConfigMap
// deleted or edited by hand is put back (Owns). It reads Bundles through a
// dynamic informer (no generated code) and records an Event on each Bundle
// when it syncs a new generation.
var BundleResource = schema.GroupVersionResource{Group: "example.incluster.dev", Version: "v1alpha1", Resource: "bundles"}

// BundleKind is the Bundle's group and kind, the owner of its ConfigMap.
var BundleKind = schema.GroupKind{Group: BundleResource.Group, Kind: "Bundle"}

// BundleLabel, on a Bundle's ConfigMap, names the Bundle; the controller
// watches only ConfigMaps with it.
const BundleLabel = "example.incluster.dev/bundle"

// ConditionReady is the type of the Bundle's condition; its reasons:
// ReasonSynced (True), ReasonInvalid and ReasonApplyFailed (False).
const (
	ConditionReady    = "Ready"
	ReasonSynced      = "Synced"
	ReasonInvalid     = "InvalidSpec"
	ReasonApplyFailed = "ApplyFailed"
)

// bundlePermissions are the Bundle loop's writes: the ConfigMaps
// (server-side apply is a patch; the API server also asks for create when
// the ConfigMap does not exist yet) and the Bundles' status (update).
var bundlePermissions = controller.WithPermissions(
	authorizationv1.ResourceAttributes{Verb: "patch", Resource: "configmaps"},
	authorizationv1.ResourceAttributes{Verb: "create", Resource: "configmaps"},
	authorizationv1.ResourceAttributes{Verb: "update", Group: BundleResource.Group, Resource: "bundles", Subresource: "status"},
)

// bundles reconciles Bundles.
type bundles struct {
	bundles    *controller.Informer[*unstructured.Unstructured]
	configMaps corev1client.ConfigMapsGetter
	status     dynamic.NamespaceableResourceInterface // the Bundles' status subresource
	events     events.EventRecorder
}

// bundleLoop makes the informers and the loop of Bundles.
func bundleLoop(m *controller.Manager, core corev1client.ConfigMapsGetter, dyn dynamic.Interface, workers int) (*controller.Loop, error) {
	bs, err := m.DynamicInformer(BundleResource)
	if err != nil {
		return nil, err
	}
	cms, err := controller.NewInformer(m, core.ConfigMaps, controller.WithLabelSelector(BundleLabel))
	if err != nil {
		return nil, err
	}
	b := &bundles{bundles: bs, configMaps: core, status: dyn.Resource(BundleResource), events: m.EventRecorder(UserAgent)}
	return m.Loop("bundles", bs, b.Reconcile, controller.Owns(cms, BundleKind), controller.Workers(workers)), nil
}

// bundleStatus is a Bundle's status.
type bundleStatus struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	ConfigMap          string             `json:"configMap,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

// Reconcile applies the Bundle's ConfigMap and writes its status. A Bundle
// that is gone needs nothing: the garbage collector deletes its ConfigMap.
func (b *bundles) Reconcile(ctx context.Context, req controller.Request) (controller.Result, error) {
	obj, err := b.bundles.Get(req.Namespace, req.Name)
	if apierrors.IsNotFound(err) {
		return controller.Result{}, nil
	}
	if err != nil {
		return controller.Result{}, err
	}
	var status bundleStatus
	if raw, ok := obj.Object["status"].(map[string]any); ok {
		_ = runtime.DefaultUnstructuredConverter.FromUnstructured(raw, &status) // a malformed status is rewritten
	}
	want := status
	want.ObservedGeneration = obj.GetGeneration()
	ready := metav1.Condition{Type: ConditionReady, Status: metav1.ConditionTrue, ObservedGeneration: obj.GetGeneration(), Reason: ReasonSynced}
	data, found, err := unstructured.NestedStringMap(obj.Object, "spec", "data")
	var applyErr error
	switch {
	case err != nil || !found:
		ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReasonInvalid, fmt.Sprintf("spec.data: want a map of strings (%v)", err)
	default:
		applyErr = b.applyConfigMap(ctx, obj, data)
		if applyErr != nil {
			ready.Status, ready.Reason, ready.Message = metav1.ConditionFalse, ReasonApplyFailed, applyErr.Error()
		} else {
			want.ConfigMap = obj.GetName()
			keys := fmt.Sprintf("%d keys", len(data))
			if len(data) == 1 {
				keys = "1 key"
			}
			ready.Message = fmt.Sprintf("ConfigMap %s holds spec.data (%s)", obj.GetName(), keys)
		}
	}
	want.Conditions = slices.Clone(status.Conditions)
	meta.SetStatusCondition(&want.Conditions, ready) // keeps lastTransitionTime unless the status changes
	if err := b.writeStatus(ctx, obj, status, want); err != nil {
		return controller.Result{}, err
	}
	if applyErr != nil {
		return controller.Result{}, applyErr // retried with backoff
	}
	return controller.Result{}, nil
}

// applyConfigMap makes the Bundle's ConfigMap hold data and only that
// (server-side apply, this controller's field manager), owned by the Bundle.
func (b *bundles) applyConfigMap(ctx context.Context, obj *unstructured.Unstructured, data map[string]string) error {
	cm := corev1ac.ConfigMap(obj.GetName(), obj.GetNamespace()).
		WithLabels(map[string]string{BundleLabel: obj.GetName()}).
		WithData(data).
		WithOwnerReferences(metav1ac.OwnerReference().WithAPIVersion(obj.GetAPIVersion()).WithKind(obj.GetKind()).
			WithName(obj.GetName()).WithUID(obj.GetUID()).WithController(true).WithBlockOwnerDeletion(true))
	_, err := b.configMaps.ConfigMaps(obj.GetNamespace()).Apply(ctx, cm, metav1.ApplyOptions{FieldManager: FieldManager, Force: true})
	if err != nil {
		return fmt.Errorf("apply ConfigMap %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	return nil
}

// writeStatus updates the Bundle's status if it differs from want, and
// records an Event when a new generation is synced. The update carries the
// cached resourceVersion: a 409 means the Bundle changed, and its new
// version is queued anyway.
func (b *bundles) writeStatus(ctx context.Context, obj *unstructured.Unstructured, have, want bundleStatus) error {
	if statusEqual(have, want) {
		return nil
	}
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&want)
	if err != nil {
		return err
	}
	upd := obj.DeepCopy()
	upd.Object["status"] = raw
	if _, err := b.status.Namespace(obj.GetNamespace()).UpdateStatus(ctx, upd, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		return fmt.Errorf("update the status of Bundle %s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
	}
	if c := meta.FindStatusCondition(want.Conditions, ConditionReady); c != nil && have.ObservedGeneration != want.ObservedGeneration {
		kind := corev1.EventTypeNormal
		if c.Status != metav1.ConditionTrue {
			kind = corev1.EventTypeWarning
		}
		b.events.Eventf(obj, nil, kind, c.Reason, "Sync", "generation %d: %s", want.ObservedGeneration, c.Message)
	}
	return nil
}

func statusEqual(a, b bundleStatus) bool {
	if a.ObservedGeneration != b.ObservedGeneration || a.ConfigMap != b.ConfigMap || len(a.Conditions) != len(b.Conditions) {
		return false
	}
	key := func(c metav1.Condition) string {
		return strings.Join([]string{c.Type, string(c.Status), fmt.Sprint(c.ObservedGeneration), c.Reason, c.Message, c.LastTransitionTime.UTC().String()}, "\x00")
	}
	ka := map[string]bool{}
	for _, c := range a.Conditions {
		ka[key(c)] = true
	}
	kb := map[string]bool{}
	for _, c := range b.Conditions {
		kb[key(c)] = true
	}
	return maps.Equal(ka, kb)
}
