// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/rest"

	"github.com/incluster/incluster/pkg/internal/defaults"
	"github.com/incluster/incluster/pkg/internal/hint"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// statusCodecs decode the Status documents of failed requests, and nothing
// else: the helpers speak JSON themselves, so that this package does not
// import client-go's scheme of every API group, which the typed clientset
// needs (see package clients).
var statusCodecs = func() serializer.CodecFactory {
	s := runtime.NewScheme()
	metav1.AddToGroupVersion(s, schema.GroupVersion{Version: "v1"})
	return serializer.NewCodecFactory(s)
}()

// Defaults for the client settings. See the package doc for why QPS is off.
const (
	// DefaultQPS disables client-side rate limiting (client-go: QPS < 0).
	DefaultQPS float32 = -1
	// DefaultRequestTimeout bounds each call of Client's helpers. It is not
	// set on the rest.Config, which would also cut long-running watches.
	DefaultRequestTimeout = defaults.RequestTimeout
)

// Option changes how New builds a Client.
type Option func(*options)

type options struct {
	kubeconfig     *string // nil: not asked for
	proxyURL       string
	userAgent      string
	qps            float32
	burst          int
	requestTimeout time.Duration
}

// WithKubeconfig makes New use a kubeconfig instead of the in-cluster
// configuration, for development outside a cluster. Precedence: path if not
// empty, then $KUBECONFIG, then ~/.kube/config (see KubeconfigConfig). The
// namespace is POD_NAMESPACE if set, else the current context's.
func WithKubeconfig(path string) Option { return func(o *options) { o.kubeconfig = &path } }

// WithProxy makes New talk to a "kubectl proxy" sidecar at proxyURL over
// plain HTTP/1.1 to a loopback address (see ProxyConfig): not one HTTP/2
// connection, but one connection per request in flight, kept alive. The
// namespace still comes from POD_NAMESPACE or the service-account namespace
// file.
func WithProxy(proxyURL string) Option { return func(o *options) { o.proxyURL = proxyURL } }

// WithUserAgent sets the User-Agent of every request, e.g. "my-controller/v1.2.0".
// The default is client-go's, which names the program from os.Args[0].
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// WithRateLimit turns client-side rate limiting on with a token bucket of
// qps requests per second and the given burst (at least 1; client-go's
// defaults are 5 and 10). qps < 0 turns it off, which is the default. New
// refuses qps 0, which client-go would read as its default of 5 QPS.
func WithRateLimit(qps float32, burst int) Option {
	return func(o *options) { o.qps, o.burst = qps, burst }
}

// WithRequestTimeout bounds each call of the Client's helpers (APIVersions,
// ServerVersion, WhoAmI, Can). Zero means no bound beyond the context's.
// The default is DefaultRequestTimeout.
func WithRequestTimeout(d time.Duration) Option { return func(o *options) { o.requestTimeout = d } }

// Client holds one rest.Config, the HTTP client every request of it goes
// through (one transport, one connection pool) and the pod's namespace. Its
// helpers send plain JSON requests; package clients builds client-go's
// typed clientset and discovery client on the same config and connection.
// It is safe for concurrent use.
type Client struct {
	config *rest.Config
	http   *http.Client
	rest   *rest.RESTClient // for the helpers: JSON in, JSON out

	namespace       string
	namespaceSource NamespaceSource
	requestTimeout  time.Duration
}

// New builds a Client from the in-cluster configuration (rest.InClusterConfig),
// or from a kubeconfig or kubectl proxy if asked to with WithKubeconfig or
// WithProxy. Configuration problems, the namespace included, are returned as
// *ConfigError; errors.Is(err, rest.ErrNotInCluster) tells "not in a pod".
// New sends no request.
func New(opts ...Option) (*Client, error) {
	o := options{qps: DefaultQPS, requestTimeout: DefaultRequestTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.kubeconfig != nil && o.proxyURL != "" {
		return nil, &ConfigError{Source: "incluster.New's options", Reason: "WithKubeconfig and WithProxy exclude each other",
			Fix: "use one: WithKubeconfig outside a cluster, WithProxy with a kubectl proxy sidecar"}
	}
	if o.qps == 0 || math.IsNaN(float64(o.qps)) {
		why := "a QPS of 0 means client-go's default of 5 QPS"
		if o.qps != 0 {
			why = "the QPS is not a number"
		}
		return nil, &ConfigError{Source: "incluster.New's options", Reason: fmt.Sprintf("WithRateLimit(%g, %d): %s", o.qps, o.burst, why),
			Fix: "give the QPS you want, or a QPS < 0 to turn client-side limiting off (the default)"}
	}

	var (
		cfg     *rest.Config
		ns      string
		source  NamespaceSource
		err     error
		kubeNS  string
		kubeCfg = o.kubeconfig != nil
	)
	switch {
	case kubeCfg:
		cfg, kubeNS, err = KubeconfigConfig(*o.kubeconfig)
	case o.proxyURL != "":
		cfg, err = ProxyConfig(o.proxyURL)
	default:
		cfg, err = InClusterConfig()
	}
	if err != nil {
		return nil, err
	}
	if kubeCfg {
		ns, source, err = kubeconfigNamespace(kubeNS)
	} else {
		ns, source, err = serviceaccount.Namespace(serviceAccountDir)
	}
	if err != nil {
		return nil, err
	}

	cfg = rest.CopyConfig(cfg)
	cfg.QPS, cfg.Burst = o.qps, o.burst
	if o.userAgent != "" {
		cfg.UserAgent = o.userAgent
	} else if cfg.UserAgent == "" {
		cfg.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	return newForConfig(cfg, ns, source, o.requestTimeout)
}

// NewForConfig builds a Client from a config the caller made, with the
// namespace given. The config is used as is (QPS, user agent, timeouts).
// Its errors are *ConfigError: an invalid namespace, a config client-go
// cannot build a transport for.
func NewForConfig(cfg *rest.Config, namespace string) (*Client, error) {
	if err := serviceaccount.ValidateNamespace(namespace); err != nil {
		return nil, &ConfigError{Source: "NewForConfig's namespace", Reason: err.(*ConfigError).Reason,
			Fix: "pass the namespace the client works in"}
	}
	return newForConfig(rest.CopyConfig(cfg), namespace, "", DefaultRequestTimeout)
}

func newForConfig(cfg *rest.Config, ns string, source NamespaceSource, timeout time.Duration) (*Client, error) {
	if cfg.QPS > 0 && cfg.Burst <= 0 && cfg.RateLimiter == nil {
		return nil, &ConfigError{Source: "client configuration", Reason: fmt.Sprintf("the burst is %d with a rate limit of %g QPS", cfg.Burst, cfg.QPS),
			Fix: "give WithRateLimit a burst of at least 1, or a QPS < 0 to turn the limit off"}
	}
	// transportCfg differs from cfg only in how the token file is read.
	transportCfg := cfg
	rotating := cfg.BearerTokenFile != ""
	if rotating {
		transportCfg = rest.CopyConfig(cfg)
		useResettableToken(transportCfg)
	}
	// rest.HTTPClientFor, but a CA file is followed when the CA rotates (careload.go).
	httpClient, err := httpClientFor(transportCfg)
	if err != nil {
		return nil, &ConfigError{Source: "client configuration", Reason: err.Error(), Fix: "check the CA bundle and client certificate settings", Err: err}
	}
	if httpClient == http.DefaultClient || httpClient.Transport == nil {
		// A plain-HTTP config without credentials or user agent (a kubectl
		// proxy) gets http.DefaultClient, whose Transport is nil: wrap a
		// client of our own, never the process-wide one.
		httpClient = &http.Client{Transport: http.DefaultTransport, Timeout: httpClient.Timeout}
	}
	if rotating {
		// A token file can be rotated: after a 401, read it again at once (transport.go).
		httpClient.Transport = &retryUnauthorized{next: httpClient.Transport}
	}
	// Concurrent first requests share one TLS connection (transport.go).
	httpClient.Transport = newOneConnection(httpClient.Transport)
	restCfg := rest.CopyConfig(cfg)
	restCfg.NegotiatedSerializer = statusCodecs.WithoutConversion()
	rc, err := rest.UnversionedRESTClientForConfigAndClient(restCfg, httpClient)
	if err != nil {
		return nil, &ConfigError{Source: "client configuration", Reason: err.Error(), Fix: "check QPS/Burst (WithRateLimit)", Err: err}
	}
	return &Client{
		config: cfg, http: httpClient, rest: rc,
		namespace: ns, namespaceSource: source, requestTimeout: timeout,
	}, nil
}

func kubeconfigNamespace(contextNS string) (string, NamespaceSource, error) {
	if _, ok := os.LookupEnv(serviceaccount.PodNamespaceEnv); ok {
		return serviceaccount.Namespace(serviceAccountDir) // validates POD_NAMESPACE
	}
	if contextNS == "" {
		return "", "", &ConfigError{Source: "kubeconfig", Reason: "the current context sets no namespace and " + serviceaccount.PodNamespaceEnv + " is not set",
			Fix: "set one with: kubectl config set-context --current --namespace=NAME"}
	}
	if err := serviceaccount.ValidateNamespace(contextNS); err != nil {
		return "", "", &ConfigError{Source: "kubeconfig", Reason: err.Error(), Fix: "fix the current context's namespace"}
	}
	return contextNS, FromKubeconfig, nil
}

// Config returns a copy of the rest.Config the clients use.
func (c *Client) Config() *rest.Config { return rest.CopyConfig(c.config) }

// HTTPClient returns the HTTP client every client of c shares.
func (c *Client) HTTPClient() *http.Client { return c.http }

// Host returns the API server's URL, e.g. https://10.96.0.1:443.
func (c *Client) Host() string { return c.config.Host }

// Namespace returns the pod's namespace.
func (c *Client) Namespace() string { return c.namespace }

// NamespaceSource says where Namespace came from.
func (c *Client) NamespaceSource() NamespaceSource { return c.namespaceSource }

func (c *Client) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if c.requestTimeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.requestTimeout)
}

// APIVersions returns the server's /api document, as curl shows it on the
// docs page, serverAddressByClientCIDRs included. It sends one GET with
// Accept: application/json; the discovery client's ServerGroups asks for
// aggregated discovery instead and drops serverAddressByClientCIDRs.
func (c *Client) APIVersions(ctx context.Context) (*metav1.APIVersions, error) {
	var v metav1.APIVersions
	if err := c.GetJSON(ctx, "/api", &v); err != nil {
		return nil, err
	}
	if v.Kind != "APIVersions" {
		return nil, fmt.Errorf("GET %s/api: the answer is not an APIVersions document (kind %q); is this a Kubernetes API server?", c.config.Host, v.Kind)
	}
	return &v, nil
}

// ServerVersion returns the server's /version document.
func (c *Client) ServerVersion(ctx context.Context) (*version.Info, error) {
	var v version.Info
	if err := c.GetJSON(ctx, "/version", &v); err != nil {
		return nil, err
	}
	if v.GitVersion == "" {
		return nil, fmt.Errorf("GET %s/version: the answer has no gitVersion; is this a Kubernetes API server?", c.config.Host)
	}
	return &v, nil
}

// GetJSON sends a GET for path (e.g. "/api/v1/namespaces/NS/pods") with
// Accept: application/json and decodes the answer into out. Errors say what
// to do, as Explain's. It is the helpers' way to read without client-go's
// typed clientset.
func (c *Client) GetJSON(ctx context.Context, path string, out any) error {
	return c.call(ctx, http.MethodGet, path, nil, out, "GET "+c.config.Host+path)
}

// call sends one JSON request (in, if not nil, as the body) and decodes the
// answer into out. op names the request in errors.
func (c *Client) call(ctx context.Context, verb, path string, in, out any, op string) error {
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	req := c.rest.Verb(verb).AbsPath(path).SetHeader("Accept", "application/json")
	if in != nil {
		body, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
		req = req.SetHeader("Content-Type", "application/json").Body(body)
	}
	res := req.Do(ctx)
	raw, err := res.Raw()
	if err != nil {
		// Keep the server's own message when client-go could not decode its Status.
		var st metav1.Status
		var code int
		res.StatusCode(&code)
		if code >= 400 && json.Unmarshal(raw, &st) == nil && st.Kind == "Status" && st.Message != "" {
			if st.Code == 0 {
				st.Code = int32(code)
			}
			err = &apierrors.StatusError{ErrStatus: st}
		}
		return explain(err, op, hint.ForPath(path))
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: the answer is not JSON (%v); is this a Kubernetes API server, and not a proxy or login page?", op, err)
	}
	return nil
}

// WhoAmI asks the API server who the client is (a SelfSubjectReview, what
// "kubectl auth whoami" does). In a pod: system:serviceaccount:NS:NAME.
func (c *Client) WhoAmI(ctx context.Context) (authenticationv1.UserInfo, error) {
	in := authenticationv1.SelfSubjectReview{TypeMeta: metav1.TypeMeta{APIVersion: "authentication.k8s.io/v1", Kind: "SelfSubjectReview"}}
	var out authenticationv1.SelfSubjectReview
	if err := c.call(ctx, http.MethodPost, "/apis/authentication.k8s.io/v1/selfsubjectreviews", &in, &out, "create SelfSubjectReview"); err != nil {
		return authenticationv1.UserInfo{}, err
	}
	return out.Status.UserInfo, nil
}

// Decision is the answer to an access check.
type Decision struct {
	Allowed bool
	// Reason is the authorizer's explanation, if it gave one.
	Reason string
}

// Can asks the API server whether the client may do what attrs describe (a
// SelfSubjectAccessReview, what "kubectl auth can-i" does). An empty
// attrs.Namespace means the client's namespace. A denial is not an error:
// it is Decision{Allowed: false}.
func (c *Client) Can(ctx context.Context, attrs authorizationv1.ResourceAttributes) (Decision, error) {
	if attrs.Namespace == "" {
		attrs.Namespace = c.namespace
	}
	in := authorizationv1.SelfSubjectAccessReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "authorization.k8s.io/v1", Kind: "SelfSubjectAccessReview"},
		Spec:     authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &attrs},
	}
	var out authorizationv1.SelfSubjectAccessReview
	if err := c.call(ctx, http.MethodPost, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", &in, &out, "create SelfSubjectAccessReview"); err != nil {
		return Decision{}, err
	}
	return Decision{Allowed: out.Status.Allowed, Reason: out.Status.Reason}, nil
}
