// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/listers"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"github.com/incluster/incluster/pkg/incluster"
)

// This file owns the informers: typed ones over a typed client (built-in
// resources, or a custom resource's generated client), dynamic ones
// (unstructured) and metadata-only ones for any resource. Each is
// registered with the Manager, so it joins the RBAC preflight (list and
// watch), readiness (/readyz waits until it has synced) and Run (started
// before the election, stopped after the release). They are client-go's
// shared informers, made one by one: a program links only the clients it
// names, not client-go's informer factory, which links every typed
// informer of every built-in group.

// protobufAccept asks for protobuf and takes JSON where the server has no
// protobuf for a type.
const protobufAccept = runtime.ContentTypeProtobuf + "," + runtime.ContentTypeJSON

// clientset holds the group clients a Manager made by New uses, on the
// client's config and HTTP client (as package clients does), speaking
// protobuf. In client-go v0.37.2 the generated clients of built-in types
// already ask for protobuf when the config names no content type
// (gentype.PrefersProtobuf); setting it here keeps it so whatever the
// config says, and sends request bodies in protobuf too.
type clientset struct {
	authentication *authenticationv1client.AuthenticationV1Client
	authorization  *authorizationv1client.AuthorizationV1Client
	coordination   *coordinationv1client.CoordinationV1Client
	events         *eventsv1client.EventsV1Client
}

func (c *clientset) AuthenticationV1() authenticationv1client.AuthenticationV1Interface {
	return c.authentication
}

func (c *clientset) AuthorizationV1() authorizationv1client.AuthorizationV1Interface {
	return c.authorization
}

func (c *clientset) CoordinationV1() coordinationv1client.CoordinationV1Interface {
	return c.coordination
}

func (c *clientset) EventsV1() eventsv1client.EventsV1Interface { return c.events }

func newClientset(c *incluster.Client) (*clientset, error) {
	cfg := c.Config()
	cfg.ContentType = runtime.ContentTypeProtobuf
	cfg.AcceptContentTypes = protobufAccept
	var cs clientset
	var err error
	if cs.authentication, err = authenticationv1client.NewForConfigAndClient(cfg, c.HTTPClient()); err != nil {
		return nil, err
	}
	if cs.authorization, err = authorizationv1client.NewForConfigAndClient(cfg, c.HTTPClient()); err != nil {
		return nil, err
	}
	if cs.coordination, err = coordinationv1client.NewForConfigAndClient(cfg, c.HTTPClient()); err != nil {
		return nil, err
	}
	if cs.events, err = eventsv1client.NewForConfigAndClient(cfg, c.HTTPClient()); err != nil {
		return nil, err
	}
	return &cs, nil
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

// Object is what an informer caches: an API object with metadata, by
// pointer (e.g. *corev1.Secret).
type Object interface {
	comparable
	runtime.Object
	metav1.Object
}

// Informer is a shared informer of one resource and its cache, typed: T is
// e.g. *corev1.Secret, *unstructured.Unstructured (DynamicInformer) or
// *metav1.PartialObjectMetadata (MetadataInformer). Pass it to Manager.Loop
// and Owns; read the cache with Get and List. Make it with NewInformer,
// NewClusterInformer, Manager.DynamicInformer or Manager.MetadataInformer,
// before Run. Add event handlers with Manager.AddEventHandler (for the
// term, panics recovered), not on the informer directly.
//
// Sharded (WithShards), the informer of a Loop's primary objects is one
// informer per shard held, each caching only its shard (shards.go): read it
// with Get and List, which look in every shard held here.
type Informer[T Object] struct {
	cache.TypedSharedIndexInformer[T]
	gvr    schema.GroupVersionResource
	lister listers.ResourceIndexer[T]
	entry  *informerEntry
}

// Get returns the object named name in namespace ("" for a cluster-scoped
// resource) from the cache, or an error that apierrors.IsNotFound
// recognises. The object is shared with the cache: copy it (DeepCopy)
// before changing it.
func (i *Informer[T]) Get(namespace, name string) (T, error) {
	subs, sharded := i.entry.shardInformers()
	if !sharded {
		return listers.NewNamespaced(i.lister, namespace).Get(name)
	}
	for _, sub := range subs {
		if o, err := listers.NewNamespaced(listers.New[T](sub.GetIndexer(), i.gvr.GroupResource()), namespace).Get(name); err == nil {
			return o, nil
		}
	}
	var zero T
	return zero, apierrors.NewNotFound(i.gvr.GroupResource(), name)
}

// List returns the cached objects in namespace ("" for all, or a
// cluster-scoped resource) whose labels match selector (nil: all). The
// objects are shared with the cache.
func (i *Informer[T]) List(namespace string, selector labels.Selector) ([]T, error) {
	if selector == nil {
		selector = labels.Everything()
	}
	subs, sharded := i.entry.shardInformers()
	if !sharded {
		return listers.NewNamespaced(i.lister, namespace).List(selector)
	}
	var out []T
	for _, sub := range subs {
		l, err := listers.NewNamespaced(listers.New[T](sub.GetIndexer(), i.gvr.GroupResource()), namespace).List(selector)
		if err != nil {
			return nil, err
		}
		out = append(out, l...)
	}
	return out, nil
}

// informerEntry returns the Manager's record of the informer.
func (i *Informer[T]) informerEntry() *informerEntry { return i.entry }

// Resource returns the resource the informer lists and watches.
func (i *Informer[T]) Resource() schema.GroupVersionResource { return i.gvr }

// Client is what NewInformer needs of the typed client of one resource in
// one namespace: client-go's generated clients (cs.CoreV1().Secrets(ns)),
// a fake clientset's, or those generated for a custom resource. Get only
// tells the object's type.
type Client[T, L runtime.Object] interface {
	Get(ctx context.Context, name string, opts metav1.GetOptions) (T, error)
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// InformerOption changes one informer.
type InformerOption func(*informerOptions)

type informerOptions struct {
	labels, fields string
	transform      cache.TransformFunc
	transformSet   bool
	gvr            schema.GroupVersionResource
	clusterScope   bool
}

// WithLabelSelector makes the informer list and watch only the objects
// whose labels match selector, e.g. "incluster.dev/hash=true": the API
// server filters, and the cache holds only those.
func WithLabelSelector(selector string) InformerOption {
	return func(o *informerOptions) { o.labels = selector }
}

// WithFieldSelector makes the informer list and watch only the objects
// whose fields match selector, e.g. "type=kubernetes.io/tls" for Secrets
// (the fields each resource supports are the API server's to say).
func WithFieldSelector(selector string) InformerOption {
	return func(o *informerOptions) { o.fields = selector }
}

// WithInformerTransform replaces the Manager's transform (WithTransform,
// default DropManagedFields) for this informer: e.g. one that also drops a
// Secret's values, for a controller that reads only their keys; nil keeps
// the objects whole. Like WithTransform's, it must be idempotent.
func WithInformerTransform(t cache.TransformFunc) InformerOption {
	return func(o *informerOptions) { o.transform, o.transformSet = t, true }
}

// WithResource names the resource a typed informer lists, for the RBAC
// preflight and Role: needed for a typed client of a custom resource whose
// type is not in client-go's scheme (k8s.io/client-go/kubernetes/scheme),
// unless the type is added to it.
func WithResource(gvr schema.GroupVersionResource) InformerOption {
	return func(o *informerOptions) { o.gvr = gvr }
}

// WithClusterScope is for DynamicInformer and MetadataInformer of a
// cluster-scoped resource (nodes, namespaces, a CRD of scope Cluster):
// the informer watches it cluster-wide, and the preflight asks at cluster
// scope.
func WithClusterScope() InformerOption {
	return func(o *informerOptions) { o.clusterScope = true }
}

// NewInformer makes an informer of a namespaced resource over its typed
// client, in the pod's namespace (all namespaces with WithAllNamespaces):
//
//	cs, err := clients.Kubernetes(c) // or a fake clientset in a test
//	secrets, err := controller.NewInformer(m, cs.CoreV1().Secrets)
//
// gives an *Informer[*corev1.Secret]. List and watch of the resource join
// the RBAC preflight. Call it before Run.
func NewInformer[T Object, L runtime.Object, C Client[T, L]](m *Manager, client func(namespace string) C, opts ...InformerOption) (*Informer[T], error) {
	ns := m.informerNamespace()
	return newTypedInformer[T](m, ns, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return client(ns).List(ctx, o)
	}, func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		return client(ns).Watch(ctx, o)
	}, opts)
}

// NewClusterInformer makes an informer of a cluster-scoped resource over
// its typed client, e.g. controller.NewClusterInformer(m,
// cs.CoreV1().Nodes). The preflight asks list and watch at
// cluster scope: the Role printed by Manager.Role has them in a
// ClusterRole.
func NewClusterInformer[T Object, L runtime.Object, C Client[T, L]](m *Manager, client func() C, opts ...InformerOption) (*Informer[T], error) {
	return newTypedInformer[T](m, metav1.NamespaceAll, func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
		return client().List(ctx, o)
	}, func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
		return client().Watch(ctx, o)
	}, append(opts, WithClusterScope()))
}

func newTypedInformer[T Object](m *Manager, ns string, list cache.ListWithContextFunc, watchFn cache.WatchFuncWithContext, opts []InformerOption) (*Informer[T], error) {
	example, err := newObject[T]()
	if err != nil {
		return nil, err
	}
	io := applyInformerOptions(opts)
	if io.gvr.Empty() {
		gvks, _, err := scheme.Scheme.ObjectKinds(example)
		if err != nil || len(gvks) == 0 {
			return nil, fmt.Errorf("informer of %T: the type is not in client-go's scheme (k8s.io/client-go/kubernetes/scheme): pass WithResource with its group, version and resource, or add the type to that scheme", example)
		}
		io.gvr, _ = meta.UnsafeGuessKindToResource(gvks[0])
	}
	e, err := m.addInformer(io, ns, example, &cache.ListWatch{ListWithContextFunc: list, WatchFuncWithContext: watchFn}, m.cs)
	if err != nil {
		return nil, err
	}
	return newInformer[T](e, io.gvr), nil
}

// DynamicInformer makes an informer of any resource, a custom resource
// above all, whose objects are *unstructured.Unstructured, over a dynamic
// client: New's, or the one given with WithDynamicClient. It is
// namespaced like NewInformer's, or cluster-wide with WithClusterScope.
func (m *Manager) DynamicInformer(gvr schema.GroupVersionResource, opts ...InformerOption) (*Informer[*unstructured.Unstructured], error) {
	dc, err := m.clients.dynamicClient()
	if err != nil {
		return nil, fmt.Errorf("dynamic informer for %s: %w", gvr.String(), err)
	}
	return resourceInformer[*unstructured.Unstructured](m, gvr, opts, dc, func(ns string) dynamic.ResourceInterface {
		if ns == "" {
			return dc.Resource(gvr)
		}
		return dc.Resource(gvr).Namespace(ns)
	})
}

// MetadataInformer makes an informer that caches only the metadata of the
// objects of any resource (*metav1.PartialObjectMetadata: names, labels,
// annotations, ownerReferences, resourceVersion), over a metadata client:
// New's, or the one given with WithMetadataClient. For a controller that
// needs to know which objects exist, not what they hold: a fraction of the
// memory. Namespaced like NewInformer's, or cluster-wide with
// WithClusterScope.
func (m *Manager) MetadataInformer(gvr schema.GroupVersionResource, opts ...InformerOption) (*Informer[*metav1.PartialObjectMetadata], error) {
	mc, err := m.clients.metadataClient()
	if err != nil {
		return nil, fmt.Errorf("metadata informer for %s: %w", gvr.String(), err)
	}
	return resourceInformer[*metav1.PartialObjectMetadata](m, gvr, opts, mc, func(ns string) metadata.ResourceInterface {
		if ns == "" {
			return mc.Resource(gvr)
		}
		return mc.Resource(gvr).Namespace(ns)
	})
}

// listWatcher is a dynamic or metadata client of one resource.
type listWatcher[L runtime.Object] interface {
	List(ctx context.Context, opts metav1.ListOptions) (L, error)
	Watch(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error)
}

// resourceInformer makes the informer of DynamicInformer and
// MetadataInformer over client(namespace) (namespace "": all), client
// being the dynamic or metadata client semantics.
func resourceInformer[T Object, L runtime.Object, C listWatcher[L]](m *Manager, gvr schema.GroupVersionResource, opts []InformerOption, semantics any, client func(namespace string) C) (*Informer[T], error) {
	io := applyInformerOptions(opts)
	io.gvr = gvr
	ns := m.scopeNamespace(io)
	c := client(ns)
	example, err := newObject[T]()
	if err != nil {
		return nil, err
	}
	e, err := m.addInformer(io, ns, example, &cache.ListWatch{
		ListWithContextFunc:  func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) { return c.List(ctx, o) },
		WatchFuncWithContext: c.Watch,
	}, semantics)
	if err != nil {
		return nil, err
	}
	return newInformer[T](e, gvr), nil
}

// newObject returns a new T, T being a pointer type such as *corev1.Secret.
func newObject[T Object]() (runtime.Object, error) {
	var zero T
	rt := reflect.TypeOf(zero)
	if rt == nil || rt.Kind() != reflect.Pointer {
		return nil, fmt.Errorf("informer: the client's objects are %v, want a pointer type such as *corev1.Secret", rt)
	}
	o, _ := reflect.New(rt.Elem()).Interface().(runtime.Object)
	return o, nil
}

func newInformer[T Object](e *informerEntry, gvr schema.GroupVersionResource) *Informer[T] {
	return &Informer[T]{
		TypedSharedIndexInformer: cache.NewTypedSharedIndexInformer[T](e.inf),
		gvr:                      gvr,
		lister:                   listers.New[T](e.inf.GetIndexer(), gvr.GroupResource()),
		entry:                    e,
	}
}

func applyInformerOptions(opts []InformerOption) informerOptions {
	var io informerOptions
	for _, opt := range opts {
		opt(&io)
	}
	return io
}

func (m *Manager) scopeNamespace(io informerOptions) string {
	if io.clusterScope {
		return metav1.NamespaceAll
	}
	return m.informerNamespace()
}

func (m *Manager) informerNamespace() string {
	if m.o.allNamespaces {
		return metav1.NamespaceAll
	}
	return m.namespace
}

// informerEntry is an informer a Manager made, and what it takes to make it
// again for one shard (shards.go).
type informerEntry struct {
	inf       cache.SharedIndexInformer
	lw        *cache.ListWatch // the selectors applied
	example   runtime.Object
	semantics any
	transform cache.TransformFunc
	what      string // the resource, for messages

	mu      sync.Mutex
	sharded bool                              // per shard: Run set it; inf is not started
	server  bool                              // the API server filters by shard (shardSelector)
	subs    map[int]cache.SharedIndexInformer // the shards held, when sharded
}

// newInformer makes a shared informer over lw.
func (e *informerEntry) newInformer(lw cache.ListerWatcher) (cache.SharedIndexInformer, error) {
	inf := cache.NewSharedIndexInformerWithOptions(lw, e.example,
		cache.SharedIndexInformerOptions{
			Indexers:          cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
			ObjectDescription: e.what,
		})
	if e.transform != nil {
		if err := inf.SetTransform(e.transform); err != nil {
			return nil, fmt.Errorf("informer for %s: %w", e.what, err)
		}
	}
	return inf, nil
}

// shardInformers returns the informers of the shards held here, and
// whether the entry is sharded at all.
func (e *informerEntry) shardInformers() ([]cache.SharedIndexInformer, bool) {
	if e == nil {
		return nil, false
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.sharded {
		return nil, false
	}
	out := make([]cache.SharedIndexInformer, 0, len(e.subs))
	for _, s := range e.subs {
		out = append(out, s)
	}
	return out, true
}

// addInformer makes the shared informer over lw, registers it to be started
// by Run and waited for by readiness, and adds list and watch of its
// resource to the preflight. semantics is the client lw calls: a fake
// client says it cannot stream lists (client-go's WatchList).
func (m *Manager) addInformer(io informerOptions, ns string, example runtime.Object, lw *cache.ListWatch, semantics any) (*informerEntry, error) {
	what := io.gvr.GroupResource().String() // configmaps, bundles.example.incluster.dev
	if _, err := labels.Parse(io.labels); err != nil {
		return nil, fmt.Errorf("informer for %s: label selector %q: %w", what, io.labels, err)
	}
	if _, err := fields.ParseSelector(io.fields); err != nil {
		return nil, fmt.Errorf("informer for %s: field selector %q: %w", what, io.fields, err)
	}
	tweak := func(o *metav1.ListOptions) {
		if io.labels != "" {
			o.LabelSelector = io.labels
		}
		if io.fields != "" {
			o.FieldSelector = io.fields
		}
	}
	list, watchFn := lw.ListWithContextFunc, lw.WatchFuncWithContext
	lw = &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			tweak(&o)
			return list(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			tweak(&o)
			return watchFn(ctx, o)
		},
	}
	e := &informerEntry{lw: lw, example: example, semantics: semantics, transform: m.o.transform, what: what}
	if io.transformSet {
		e.transform = io.transform
	}
	inf, err := e.newInformer(cache.ToListWatcherWithWatchListSemantics(lw, semantics))
	if err != nil {
		return nil, err
	}
	e.inf = inf
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.started {
		return nil, fmt.Errorf("informer for %s: make informers before Run", what)
	}
	m.informers = append(m.informers, e)
	for _, verb := range []string{"list", "watch"} {
		m.watched = append(m.watched, authorizationv1.ResourceAttributes{
			Namespace: ns, Verb: verb, Group: io.gvr.Group, Resource: io.gvr.Resource,
		})
	}
	return e, nil
}

// managerInformers returns the informers Run starts and waits for: the
// Lease's and every one made, but those sharded (each shard's are started
// with the shard).
func (m *Manager) managerInformers() []cache.SharedIndexInformer {
	out := []cache.SharedIndexInformer{m.leases}
	for _, e := range m.informers {
		if _, sharded := e.shardInformers(); !sharded {
			out = append(out, e.inf)
		}
	}
	return out
}

// startInformers starts every informer, the Lease's too; they stop when ctx
// is cancelled.
func (m *Manager) startInformers(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, inf := range m.managerInformers() {
		m.informersRunning.Go(func() { inf.RunWithContext(ctx) })
	}
}

// waitForSync waits until every informer has synced, the Lease's too (a
// standby is Ready only once it would see a release at once); false if ctx
// ended first.
func (m *Manager) waitForSync(ctx context.Context) bool {
	m.mu.Lock()
	var synced []cache.InformerSynced
	for _, inf := range m.managerInformers() {
		synced = append(synced, inf.HasSynced)
	}
	m.mu.Unlock()
	return cache.WaitForCacheSync(ctx.Done(), synced...) && ctx.Err() == nil
}

// shutdownInformers waits for the informers' goroutines, once their
// context is cancelled.
func (m *Manager) shutdownInformers() { m.informersRunning.Wait() }

// canClusterWide is an access check at cluster scope, which Client.Can does
// not ask (an empty namespace means the client's there).
func canClusterWide(ctx context.Context, cs Clientset, a authorizationv1.ResourceAttributes) (incluster.Decision, error) {
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
