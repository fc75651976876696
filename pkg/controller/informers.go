// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"fmt"

	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"

	"github.com/incluster/incluster/pkg/incluster"
)

// protobufAccept asks for protobuf and takes JSON where the server has no
// protobuf for a type.
const protobufAccept = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON

// newClientset builds the typed clientset on c's config and HTTP client (as
// package clients does), speaking protobuf. In client-go v0.37.2 the
// generated clients of built-in types already ask for protobuf when the
// config names no content type (gentype.PrefersProtobuf); setting it here
// keeps it so whatever the config says, and sends request bodies in
// protobuf too.
func newClientset(c *incluster.Client) (*kubernetes.Clientset, error) {
	cfg := c.Config()
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = protobufAccept
	return kubernetes.NewForConfigAndClient(cfg, c.HTTPClient())
}

// DropManagedFields is the informers' default transform: it removes
// metadata.managedFields, often the largest part of a cached object and
// seldom read by a controller. It changes the object in place, which
// client-go allows for transforms, and is idempotent. Objects without
// metadata (tombstones) pass unchanged.
//
// client-go v0.37.2 applies an informer's transform to the objects of a
// streamed initial list (WatchListClient, on by default) as they arrive
// (kubernetes #131799), so the memory is saved during the initial sync too.
func DropManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil && a.GetManagedFields() != nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

// InformerOption changes one informer of Manager.Informer.
type InformerOption func(*informerOptions)

type informerOptions struct{ selector string }

// WithLabelSelector makes the informer list and watch only the objects
// whose labels match selector, e.g. "incluster.dev/hash=true": the API
// server filters, and the cache holds only those.
func WithLabelSelector(selector string) InformerOption {
	return func(o *informerOptions) { o.selector = selector }
}

// Informer returns the shared informer of a built-in resource, e.g.
// corev1.SchemeGroupVersion.WithResource("configmaps"), in the pod's
// namespace (all namespaces with WithAllNamespaces), and adds list and
// watch on it to the RBAC preflight. Call it before Run, which starts the
// informers; add event handlers in the work (they get the cache's objects as
// adds) and remove them when it returns. Informers with the same label
// selector share one client-go SharedInformerFactory.
//
// Custom resources are not served by client-go's typed informers: use
// k8s.io/client-go/dynamic/dynamicinformer with Clientset's config.
func (m *Manager) Informer(gvr schema.GroupVersionResource, opts ...InformerOption) (informers.GenericInformer, error) {
	var io informerOptions
	for _, opt := range opts {
		opt(&io)
	}
	if _, err := labels.Parse(io.selector); err != nil {
		return nil, fmt.Errorf("informer for %s: label selector %q: %w", gvr.String(), io.selector, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return nil, fmt.Errorf("informer for %s: Informer must be called before Run", gvr.String())
	}
	f, ok := m.factories[io.selector]
	if !ok {
		fo := []informers.SharedInformerOption{informers.WithNamespace(m.informerNamespace())}
		if m.o.transform != nil {
			fo = append(fo, informers.WithTransform(m.o.transform))
		}
		if sel := io.selector; sel != "" {
			fo = append(fo, informers.WithTweakListOptions(func(lo *metav1.ListOptions) { lo.LabelSelector = sel }))
		}
		f = informers.NewSharedInformerFactoryWithOptions(m.cs, 0, fo...)
		m.factories[io.selector] = f
	}
	gi, err := f.ForResource(gvr)
	if err != nil {
		return nil, fmt.Errorf("informer for %s: %w (only built-in resources have typed informers)", gvr.String(), err)
	}
	gi.Informer() // registers it with the factory, so that Run starts it
	for _, verb := range []string{"list", "watch"} {
		m.watched = append(m.watched, authorizationv1.ResourceAttributes{
			Namespace: m.informerNamespace(), Verb: verb, Group: gvr.Group, Resource: gvr.Resource,
		})
	}
	return gi, nil
}

func (m *Manager) informerNamespace() string {
	if m.o.allNamespaces {
		return metav1.NamespaceAll
	}
	return m.namespace
}

// startInformers starts every informer, and the Lease's; they stop when ctx
// is cancelled.
func (m *Manager) startInformers(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.factories {
		f.StartWithContext(ctx)
	}
	m.leases.StartWithContext(ctx)
}

// waitForSync waits until every informer has synced, the Lease's too (a
// standby is Ready only once it would see a release at once); false if ctx
// ended first.
func (m *Manager) waitForSync(ctx context.Context) bool {
	m.mu.Lock()
	fs := make([]informers.SharedInformerFactory, 0, len(m.factories)+1)
	for _, f := range m.factories {
		fs = append(fs, f)
	}
	fs = append(fs, m.leases)
	m.mu.Unlock()
	for _, f := range fs {
		if res := f.WaitForCacheSyncWithContext(ctx); res.Err != nil {
			return false
		}
	}
	return ctx.Err() == nil
}

// shutdownInformers waits for the informers' goroutines, once their
// context is cancelled.
func (m *Manager) shutdownInformers() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.factories {
		f.Shutdown()
	}
	m.leases.Shutdown()
}

// canClusterWide is an access check at cluster scope, which Client.Can does
// not ask (an empty namespace means the client's there).
func canClusterWide(ctx context.Context, cs kubernetes.Interface, a authorizationv1.ResourceAttributes) (incluster.Decision, error) {
	ssar := &authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &a}}
	out, err := cs.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, ssar, metav1.CreateOptions{})
	if err != nil {
		return incluster.Decision{}, incluster.Explain(err, "create SelfSubjectAccessReview")
	}
	if out == nil {
		return incluster.Decision{}, errors.New("create SelfSubjectAccessReview: empty answer")
	}
	return incluster.Decision{Allowed: out.Status.Allowed, Reason: out.Status.Reason}, nil
}
