// SPDX-License-Identifier: Apache-2.0

package controller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/dynamic"
	authenticationv1client "k8s.io/client-go/kubernetes/typed/authentication/v1"
	authorizationv1client "k8s.io/client-go/kubernetes/typed/authorization/v1"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/events"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/incluster/incluster/pkg/incluster"
)

// Defaults of New's options. The election's are controller-runtime's.
const (
	DefaultLeaseDuration     = 15 * time.Second
	DefaultRenewDeadline     = 10 * time.Second
	DefaultRetryPeriod       = 2 * time.Second
	DefaultShutdownTimeout   = 20 * time.Second
	DefaultProbeAddress      = ":8081"
	DefaultPreflightInterval = 3 * time.Second
)

// Errors Run returns. Both mean: exit the process.
var (
	// ErrWorkStillRunning: the work did not return within the shutdown
	// timeout after its context was cancelled. The lease was not released;
	// it expires after the lease duration. The work may still be running.
	ErrWorkStillRunning = errors.New("the work did not return within the shutdown timeout after its context was cancelled; the lease was not released and expires after the lease duration")
	// ErrLeadershipLost: the lease could not be renewed within the renew
	// deadline or the Lease was taken by another holder, the work was
	// stopped and has returned, and WithExitOnLostLeadership was given.
	ErrLeadershipLost = errors.New("leadership lost: the lease was not renewed within the renew deadline or was taken by another holder; the work was stopped")
)

// Option changes how New builds a Manager.
type Option func(*options)

type options struct {
	identity          string
	leaseDuration     time.Duration
	renewDeadline     time.Duration
	retryPeriod       time.Duration
	shutdownTimeout   time.Duration
	probeAddress      string
	preflightInterval time.Duration
	exitOnLost        bool
	allNamespaces     bool
	transform         cache.TransformFunc
	logger            *slog.Logger
	permissions       []authorizationv1.ResourceAttributes
	accessCheck       AccessCheck
	dynamicClient     dynamic.Interface
	metadataClient    metadata.Interface
	memoryLimitRatio  float64
	metrics           Metrics
	shards            int
	clientShardFilter bool
}

// WithIdentity sets the Lease holder's name instead of Identity's.
func WithIdentity(id string) Option { return func(o *options) { o.identity = id } }

// WithLeaseDuration sets how long standbys wait, after the leader's last
// renewal, before they take the lease (default 15 s). It must be longer
// than the renew deadline.
func WithLeaseDuration(d time.Duration) Option { return func(o *options) { o.leaseDuration = d } }

// WithRenewDeadline sets how long the leader keeps retrying a failed
// renewal before it stops the work (default 10 s). It must be longer than
// 1.2 x the retry period (client-go's JitterFactor).
func WithRenewDeadline(d time.Duration) Option { return func(o *options) { o.renewDeadline = d } }

// WithRetryPeriod sets the time between tries to acquire or renew the lease
// (default 2 s). client-go adds up to 1.2 x this as jitter to a standby's
// waits, so a released lease is taken within 2.2 x this.
func WithRetryPeriod(d time.Duration) Option { return func(o *options) { o.retryPeriod = d } }

// WithShutdownTimeout bounds the whole shutdown, from the cancellation of
// Run's context to Run's return (default 20 s): the work gets all of it but
// the release's reserve (one election request timeout, max(renew deadline /
// 2, 1 s), at most a quarter of the shutdown timeout: 15 s of the default
// 20 s), then the lease is released, the informers and the probe server
// stop. Keep it a few seconds shorter than the pod's
// terminationGracePeriodSeconds, so that the lease is released before the
// kubelet sends SIGKILL.
func WithShutdownTimeout(d time.Duration) Option { return func(o *options) { o.shutdownTimeout = d } }

// WithProbeAddress sets where /healthz, /readyz and /leader are served
// (default ":8081"). "" or "0" serves no probes; Handler still returns them.
func WithProbeAddress(addr string) Option { return func(o *options) { o.probeAddress = addr } }

// WithPreflightInterval sets the time between two rounds of the RBAC
// preflight while a permission is missing (default 3 s).
func WithPreflightInterval(d time.Duration) Option {
	return func(o *options) { o.preflightInterval = d }
}

// WithExitOnLostLeadership makes Run return ErrLeadershipLost, once the work
// has returned, when the lease could not be renewed. By default the replica
// contends again.
func WithExitOnLostLeadership() Option { return func(o *options) { o.exitOnLost = true } }

// WithAllNamespaces makes the informers watch all namespaces instead of the
// pod's. The service account then needs a ClusterRole for them (the
// preflight says which), and the caches hold every namespace's objects.
func WithAllNamespaces() Option { return func(o *options) { o.allNamespaces = true } }

// WithTransform sets the informers' transform instead of DropManagedFields;
// nil keeps objects whole. It must be idempotent: client-go may apply it
// twice to an object of a streamed initial list.
func WithTransform(t cache.TransformFunc) Option {
	return func(o *options) { o.transform = t }
}

// WithLogger sets where the Manager logs (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithPermissions adds access the work needs to the RBAC preflight, e.g.
// {Verb: "patch", Resource: "configmaps"}. An empty Namespace means the pod's
// namespace.
func WithPermissions(attrs ...authorizationv1.ResourceAttributes) Option {
	return func(o *options) { o.permissions = append(o.permissions, attrs...) }
}

// accessFunc answers an access check; namespace "" means cluster scope.
type accessFunc func(context.Context, authorizationv1.ResourceAttributes) (incluster.Decision, error)

// Manager runs a controller's informers, RBAC preflight, probes and leader
// election. Make it with New, get informers with Informer, then call Run once.
type Manager struct {
	cs        Clientset
	namespace string // the pod's: the Lease's, and the informers' unless allNamespaces
	leaseName string
	identity  string
	can       accessFunc
	o         options
	log       *slog.Logger

	clients *clients // dynamic and metadata, made on first use

	mu               sync.Mutex
	started          bool
	informers        []*informerEntry
	loops            []*Loop
	informersRunning sync.WaitGroup
	watched          []authorizationv1.ResourceAttributes // list and watch of each informer

	// The probes' view.
	preflightMissing atomic.Pointer[string] // nil: passed
	synced           atomic.Bool

	*elector                           // the Lease's (unsharded): contend, round, newLock
	shards   *sharder                  // WithShards; nil: one leader runs the work
	leases   cache.SharedIndexInformer // the Lease alone, or the shard group's: newLeaseInformer
	events   events.EventBroadcaster   // EventRecorder's, nil if none
	// memoryProvider reads the container's memory limit (memory.go).
	memoryProvider memlimit.Provider
	panics         atomic.Uint64

	shutdownOnce sync.Once
	shutdownAt   time.Time // when the shutdown must be over
}

// shutdownDeadline returns when the shutdown must be over: the shutdown
// timeout after its first call, made once Run's context is cancelled.
func (m *Manager) shutdownDeadline() time.Time {
	m.shutdownOnce.Do(func() { m.shutdownAt = time.Now().Add(m.o.shutdownTimeout) })
	return m.shutdownAt
}

// New builds a Manager on c's config, HTTP client and namespace, for a Lease
// named leaseName in c.Namespace(). It makes only the clients it needs
// (coordination, authorization, events), not client-go's whole clientset:
// a program that wants that makes it with clients.Kubernetes(c). It sends
// no request.
func New(c *incluster.Client, leaseName string, opts ...Option) (*Manager, error) {
	cs, err := newClientset(c)
	if err != nil {
		return nil, fmt.Errorf("controller: %w", err)
	}
	can := func(ctx context.Context, a authorizationv1.ResourceAttributes) (incluster.Decision, error) {
		if a.Namespace != "" {
			return c.Can(ctx, a)
		}
		return canClusterWide(ctx, cs, a)
	}
	m, err := newManager(cs, c.Namespace(), can, leaseName, opts...)
	if err == nil {
		m.clients.config = c
	}
	return m, err
}

// Clientset is the part of a typed clientset a Manager uses. client-go's
// kubernetes.Interface has it: a real clientset (clients.Kubernetes), or
// the fake one of k8s.io/client-go/kubernetes/fake in a unit test.
type Clientset interface {
	AuthenticationV1() authenticationv1client.AuthenticationV1Interface
	AuthorizationV1() authorizationv1client.AuthorizationV1Interface
	CoordinationV1() coordinationv1client.CoordinationV1Interface
	EventsV1() eventsv1client.EventsV1Interface
}

// NewForClientset builds a Manager on cs, for a Lease named leaseName in
// namespace: a program that makes its own clientset, or a unit test with
// client-go's fake clientset (k8s.io/client-go/kubernetes/fake), which
// needs WithAccessCheck(AllowAll) and WithProbeAddress("0") too. The RBAC
// preflight asks cs SelfSubjectAccessReviews. DynamicInformer and
// MetadataInformer need WithDynamicClient and WithMetadataClient. It sends
// no request.
func NewForClientset(cs Clientset, namespace, leaseName string, opts ...Option) (*Manager, error) {
	can := func(ctx context.Context, a authorizationv1.ResourceAttributes) (incluster.Decision, error) {
		return canClusterWide(ctx, cs, a)
	}
	return newManager(cs, namespace, can, leaseName, opts...)
}

// AccessCheck answers whether this program may do what a is about, for the
// RBAC preflight (WithAccessCheck).
type AccessCheck func(ctx context.Context, a authorizationv1.ResourceAttributes) (allowed bool, err error)

// AllowAll is an AccessCheck that allows everything: for unit tests.
func AllowAll(context.Context, authorizationv1.ResourceAttributes) (bool, error) { return true, nil }

// WithDynamicClient gives DynamicInformer its client: for NewForClientset
// (New makes one), e.g. k8s.io/client-go/dynamic/fake's in a unit test.
func WithDynamicClient(c dynamic.Interface) Option { return func(o *options) { o.dynamicClient = c } }

// WithMetadataClient gives MetadataInformer its client: for NewForClientset
// (New makes one), e.g. k8s.io/client-go/metadata/fake's in a unit test.
func WithMetadataClient(c metadata.Interface) Option {
	return func(o *options) { o.metadataClient = c }
}

// clients holds the dynamic and metadata clients, made on first use from
// New's client (so that a program that uses neither does not pay for them)
// or given as options.
type clients struct {
	mu     sync.Mutex
	config *incluster.Client // New's; nil for NewForClientset
	dyn    dynamic.Interface
	meta   metadata.Interface
}

func (c *clients) dynamicClient() (dynamic.Interface, error) {
	return lazyClient(&c.mu, &c.dyn, c.config, "dynamic", "WithDynamicClient",
		func(cfg *rest.Config, hc *http.Client) (dynamic.Interface, error) {
			return dynamic.NewForConfigAndClient(cfg, hc)
		})
}

func (c *clients) metadataClient() (metadata.Interface, error) {
	return lazyClient(&c.mu, &c.meta, c.config, "metadata", "WithMetadataClient",
		func(cfg *rest.Config, hc *http.Client) (metadata.Interface, error) {
			return metadata.NewForConfigAndClient(cfg, hc)
		})
}

// lazyClient returns *have, made on first use from New's client (config)
// when it was not given; option names the Option that gives one.
func lazyClient[T comparable](mu *sync.Mutex, have *T, config *incluster.Client, what, option string, newClient func(*rest.Config, *http.Client) (T, error)) (T, error) {
	mu.Lock()
	defer mu.Unlock()
	var none T
	if *have == none && config != nil {
		c, err := newClient(config.Config(), config.HTTPClient())
		if err != nil {
			return none, err
		}
		*have = c
	}
	if *have == none {
		return none, fmt.Errorf("no %s client: New makes one; with NewForClientset pass %s", what, option)
	}
	return *have, nil
}

// WithAccessCheck makes the RBAC preflight ask check instead of the API
// server (SelfSubjectAccessReviews). A fake clientset allows nothing: give
// AllowAll in unit tests.
func WithAccessCheck(check AccessCheck) Option { return func(o *options) { o.accessCheck = check } }

func newManager(cs Clientset, namespace string, can accessFunc, leaseName string, opts ...Option) (*Manager, error) {
	o := options{
		leaseDuration:     DefaultLeaseDuration,
		renewDeadline:     DefaultRenewDeadline,
		retryPeriod:       DefaultRetryPeriod,
		shutdownTimeout:   DefaultShutdownTimeout,
		probeAddress:      DefaultProbeAddress,
		preflightInterval: DefaultPreflightInterval,
		transform:         DropManagedFields,
		memoryLimitRatio:  DefaultMemoryLimitRatio,
		metrics:           noMetrics{},
	}
	for _, opt := range opts {
		opt(&o)
	}
	if o.metrics == nil {
		o.metrics = noMetrics{}
	}
	if err := validate(namespace, leaseName, o); err != nil {
		return nil, err
	}
	if o.identity == "" {
		id, err := Identity()
		if err != nil {
			return nil, err
		}
		o.identity = id
	}
	if o.logger == nil {
		o.logger = slog.Default()
	}
	if check := o.accessCheck; check != nil {
		can = func(ctx context.Context, a authorizationv1.ResourceAttributes) (incluster.Decision, error) {
			allowed, err := check(ctx, a)
			return incluster.Decision{Allowed: allowed}, err
		}
	}
	m := &Manager{
		cs: cs, namespace: namespace, leaseName: leaseName, identity: o.identity, can: can, o: o,
		log:     o.logger.With("lease", namespace+"/"+leaseName, "identity", o.identity),
		clients: &clients{dyn: o.dynamicClient, meta: o.metadataClient},
	}
	m.elector = m.newElector(leaseName, m.log)
	if o.shards > 0 {
		m.shards = newSharder(m, o.shards)
	}
	m.leases = m.newLeaseInformer()
	m.memoryProvider = memlimit.FromCgroup
	return m, nil
}

// validate checks the options the way client-go's NewLeaderElector does, and
// says what to change.
func validate(namespace, leaseName string, o options) error {
	var problems []string
	if errs := validation.IsDNS1123Subdomain(leaseName); len(errs) > 0 {
		problems = append(problems, fmt.Sprintf("lease name %q: %s", leaseName, strings.Join(errs, "; ")))
	}
	if namespace == "" {
		problems = append(problems, "no namespace: the Lease lives in the client's namespace (POD_NAMESPACE or the service-account namespace file)")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"lease duration", o.leaseDuration}, {"renew deadline", o.renewDeadline}, {"retry period", o.retryPeriod}, {"shutdown timeout", o.shutdownTimeout}, {"preflight interval", o.preflightInterval}} {
		if d.v <= 0 {
			problems = append(problems, fmt.Sprintf("the %s is %s: want a positive duration", d.name, d.v))
		}
	}
	if o.leaseDuration > 0 && o.renewDeadline > 0 && o.leaseDuration <= o.renewDeadline {
		problems = append(problems, fmt.Sprintf("the lease duration (%s) must be longer than the renew deadline (%s)", o.leaseDuration, o.renewDeadline))
	}
	if o.retryPeriod > 0 && o.renewDeadline > 0 && o.renewDeadline <= time.Duration(leaderelection.JitterFactor*float64(o.retryPeriod)) {
		problems = append(problems, fmt.Sprintf("the renew deadline (%s) must be longer than %g x the retry period (%s)", o.renewDeadline, leaderelection.JitterFactor, o.retryPeriod))
	}
	if o.leaseDuration > o.renewDeadline && o.renewDeadline > 0 && o.retryPeriod > 0 && workBudget(o) <= 0 {
		problems = append(problems, fmt.Sprintf("the lease duration (%s) must exceed the renew deadline (%s) by more than half the retry period (%s): the difference is the work's time budget after a lost renewal (WorkBudget)", o.leaseDuration, o.renewDeadline, o.retryPeriod))
	}
	if math.IsNaN(o.memoryLimitRatio) || o.memoryLimitRatio < 0 || o.memoryLimitRatio > 1 {
		problems = append(problems, fmt.Sprintf("the memory limit ratio is %g: want 0 (off) to 1", o.memoryLimitRatio))
	}
	if o.shards < 0 || o.shards > MaxShards || o.shards&(o.shards-1) != 0 {
		problems = append(problems, fmt.Sprintf("%d shards: want a power of two from 1 to %d (WithShards), or 0 for none", o.shards, MaxShards))
	}
	if o.shards > 0 {
		if errs := validation.IsDNS1123Subdomain(fmt.Sprintf("%s-shard-%d", leaseName, o.shards-1)); len(errs) > 0 {
			problems = append(problems, fmt.Sprintf("lease name %q is too long for its shards' Leases (\"-shard-N\" and \"-member-XXXXXXXX\" are added)", leaseName))
		}
	}
	if o.leaseDuration > 0 && o.leaseDuration%time.Second != 0 {
		problems = append(problems, fmt.Sprintf("the lease duration (%s) must be whole seconds: the Lease stores seconds", o.leaseDuration))
	}
	if len(problems) > 0 {
		return fmt.Errorf("controller options: %s", strings.Join(problems, "; "))
	}
	return nil
}

// Identity returns the name this Manager holds the Lease under.
func (m *Manager) Identity() string { return m.identity }

// Namespace returns the pod's namespace: the Lease's, and the informers'
// unless WithAllNamespaces.
func (m *Manager) Namespace() string { return m.namespace }

// LeaseName returns the Lease's name.
func (m *Manager) LeaseName() string { return m.leaseName }
