// SPDX-License-Identifier: Apache-2.0

package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/dynamic"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/incluster/incluster/pkg/controller"
	"github.com/incluster/incluster/pkg/incluster"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// Exit codes of Run; see the package doc.
const (
	ExitOK         = 0
	ExitForced     = controller.ExitForced // by controller.SignalContext, not by Run
	ExitUsage      = 2
	ExitConfig     = 3
	ExitFailed     = 4
	ExitStillBusy  = 5
	DefaultLease   = "incluster-example-controller"
	defaultWorkers = 2
)

// UserAgent is sent with every request.
const UserAgent = "incluster-example-controller"

const usageText = `Usage: example-controller [flags]

In its namespace, for every ConfigMap labelled incluster.dev/hash=true, writes
the annotations incluster.dev/hash (SHA-256 of data and binaryData, hex) and
incluster.dev/writer (the writing replica's identity). With --bundles, also
keeps a ConfigMap for every Bundle (bundles.example.incluster.dev, the CRD of
deploy/crd) and writes the Bundle's status. Replicas elect a leader with a
Lease; only the leader writes.

Flags:
  --lease-name=NAME          the Lease in the pod's namespace (default incluster-example-controller)
  --probe-address=ADDR       /healthz, /readyz and /leader (default :8081; "" or 0: none)
  --shutdown-timeout=D       how long to wait for the work to stop on SIGTERM before
                             exiting without releasing the lease (default 20s; keep it
                             below the pod's terminationGracePeriodSeconds)
  --lease-duration=D         (default 15s) must be longer than --renew-deadline, whole seconds
  --renew-deadline=D         (default 10s) must be longer than 1.2 x --retry-period
  --retry-period=D           (default 2s)
  --exit-on-lost-lease       exit 4 when the lease is lost, instead of contending again
  --metrics-bind-address=ADDR  /metrics, HTTPS (default :8443; 0: none)
  --metrics-secure           serve /metrics over HTTPS only to a token that may get
                             /metrics (TokenReview, SubjectAccessReview); default
                             true; --metrics-secure=false: plain HTTP to anyone, for
                             development only
  --metrics-cert-path=DIR    serve DIR's tls.crt and tls.key, reloaded when they change
                             (default: a self-signed certificate made at start)
  --workers=N                concurrent writers on the leader, per loop (default 2)
  --shards=N                 split the work into N shards (a power of two, at most 256)
                             spread over the replicas, each shard held through a Lease
                             of its own, so every replica writes (default 0: one leader
                             does all the work); the Role then needs
                             deploy/controller-sharded's rules
  --shard-filter=WHO         with --shards: who keeps each shard's objects apart: auto
                             (the API server, where it applies shardSelector: the
                             ShardedListAndWatch feature gate; else this replica) or
                             client (always this replica: it receives every object)
  --bundles                  also reconcile Bundles (needs the CRD: deploy/bundles)
  --kubeconfig=PATH          outside a cluster: use this kubeconfig; --kubeconfig= (empty)
                             means $KUBECONFIG, then ~/.kube/config
  --log-format=FORMAT        text or json, on stderr (default text)
  --print-role               print the Role and ClusterRole this controller needs (for
                             --lease-name, --bundles, --shards and the --metrics flags) as YAML
                             on stdout, and exit
  -h, --help                 show this help

Environment: POD_NAME and POD_NAMESPACE from the downward API (the identity is
POD_NAME, else the hostname, plus "_" and 5 random characters).

Exit codes:
  0  stopped by SIGTERM or SIGINT, the lease released
  1  a second SIGTERM or SIGINT: at once, the lease not released
  2  bad usage
  3  not in a cluster, configuration unreadable, the probe or metrics address in
     use, or --metrics-cert-path unreadable
  4  stopped on an error: the lease lost or taken with --exit-on-lost-lease, or the
     work failed (a recovered panic too)
  5  the work did not stop within --shutdown-timeout: the lease not released
`

// RoleName is the Role of deploy/controller (--print-role).
const RoleName = "incluster-example-controller"

// permissions are the writes the work makes, beyond its informers' list
// and watch: the preflight checks them, --print-role prints them.
func permissions(opts options) controller.Option {
	if opts.bundles {
		return bundlePermissions // patch configmaps too
	}
	return controller.WithPermissions(authorizationv1.ResourceAttributes{Verb: "patch", Resource: "configmaps"})
}

// informer is the hash loop's informer: the labelled ConfigMaps, cached
// with the hash of their data in place of the data, and of the metadata
// only what the work reads (KeepDataHash).
func informer(m *controller.Manager, core corev1client.ConfigMapsGetter) (*controller.Informer[*corev1.ConfigMap], error) {
	return controller.NewInformer(m, core.ConfigMaps, controller.WithLabelSelector(Selector),
		controller.WithInformerTransform(KeepDataHash))
}

// work registers the informers and loops with m, on c's connection, and
// returns them as the work: the hash loop, and with --bundles the Bundle
// loop beside it.
func work(m *controller.Manager, c *incluster.Client, opts options, log *slog.Logger) (controller.Work, error) {
	// The core group's typed client alone: the whole clientset
	// (clients.Kubernetes) would link every group's client.
	core, err := corev1client.NewForConfigAndClient(c.Config(), c.HTTPClient())
	if err != nil {
		return nil, err
	}
	configMaps, err := informer(m, core)
	if err != nil {
		return nil, err
	}
	h := &hasher{cs: core, cache: configMaps, identity: m.Identity(), log: log}
	loops := []*controller.Loop{m.Loop("configmap-hash", configMaps, h.Reconcile, controller.Workers(opts.workers))}
	if opts.bundles {
		dyn, err := dynamic.NewForConfigAndClient(c.Config(), c.HTTPClient())
		if err != nil {
			return nil, err
		}
		l, err := bundleLoop(m, core, dyn, opts.workers)
		if err != nil {
			return nil, err
		}
		loops = append(loops, l)
	}
	return controller.Loops(loops...), nil
}

// roleHeader is the comment --print-role puts above the Role and ClusterRole.
func roleHeader(opts options) string {
	if opts.shards > 0 && !opts.bundles {
		return `Generated by: example-controller --shards=` + strconv.Itoa(opts.shards) + ` --print-role (a test keeps this file equal to it).
Least privilege for the sharded controller: as deploy/controller's Role, but
  leases: get, create, update, delete, list and watch on every Lease of the
    namespace: each replica writes a Lease per shard it holds
    ("<lease name>-shard-<i>") and its member Lease
    ("<lease name>-member-<hash>", deleted when it stops), and watches them
    all (a label selector); their names are not known in advance, so no
    resourceNames.
  configmaps: list and watch for its informer, patch to write the annotations.
ClusterRole (bound by metrics-auth.yaml): create tokenreviews and
subjectaccessreviews, for the /metrics filter.`
	}
	if !opts.bundles {
		return `Generated by: example-controller --print-role (a test keeps this file equal to it).
Least privilege: what the controller checks at start (SelfSubjectAccessReviews;
while one is missing it stays not Ready and logs the rule to add here); a Role
in its namespace, and a ClusterRole for the /metrics filter only.
  configmaps: list and watch for its informer, patch to write the annotations
    (no get: it reads from its cache; no update: it sends a merge patch).
  leases: create the Lease the first time (RBAC cannot restrict create by
    name), then get, update, list and watch that one Lease only (standbys
    watch it, with a field selector on its name, to take it at once when
    the leader gives it back). Its name is --lease-name (deployment.yaml).
No events: the leader election records none.
ClusterRole (bound by metrics-auth.yaml): create tokenreviews and
subjectaccessreviews, to check a scraper's token and that it may get /metrics
(--metrics-secure, the default; none with --metrics-secure=false).`
	}
	return `Generated by: example-controller --bundles --print-role (a test keeps this file equal to it).
Least privilege: what the controller checks at start (SelfSubjectAccessReviews;
while one is missing it stays not Ready and logs the rule to add here); a Role
in its namespace, and a ClusterRole for the /metrics filter only.
  configmaps: list and watch for its two informers (hashed ConfigMaps, and
    the Bundles' own), patch to write the hash annotations and to apply the
    Bundles' ConfigMaps (server-side apply), create for an apply that
    creates one.
  bundles: list and watch; bundles/status: update (the Ready condition).
  events (events.k8s.io): create and patch, for the Events on Bundles.
  leases: create the Lease the first time (RBAC cannot restrict create by
    name), then get, update, list and watch that one Lease only. Its name is
    --lease-name (deployment.yaml).
ClusterRole (bound by metrics-auth.yaml): create tokenreviews and
subjectaccessreviews, to check a scraper's token and that it may get /metrics
(--metrics-secure, the default; none with --metrics-secure=false).`
}

type options struct {
	leaseName       string
	probeAddress    string
	shutdownTimeout time.Duration
	leaseDuration   time.Duration
	renewDeadline   time.Duration
	retryPeriod     time.Duration
	exitOnLost      bool
	workers         int
	kubeconfig      *string
	logFormat       string
	printRole       bool
	bundles         bool
	metricsAddress  string
	metricsSecure   bool
	metricsCertPath string
	shards          int
	shardFilter     string
}

// Run is the example controller. It returns the exit code once ctx is
// cancelled and the controller has stopped, or on an error; logs go to
// stderr (log/slog), usage errors too; stdout gets --help only.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, code, done := parseFlags(args, stdout, stderr)
	if done {
		return code
	}
	var handler slog.Handler = slog.NewTextHandler(stderr, nil)
	if opts.logFormat == "json" {
		handler = slog.NewJSONHandler(stderr, nil)
	}
	log := slog.New(handler)

	if opts.printRole {
		// The Manager knows every permission it needs; it sends nothing here.
		c, err := incluster.NewForConfig(&rest.Config{Host: "https://unused.invalid"}, "default")
		if err == nil {
			var m *controller.Manager
			if m, err = controller.New(c, opts.leaseName, controller.WithIdentity("print-role"), permissions(opts), withMetrics(opts), controller.WithShards(opts.shards)); err == nil {
				if _, err = work(m, c, opts, log); err == nil {
					fmt.Fprint(stdout, m.Role(RoleName, roleHeader(opts)))
					return ExitOK
				}
			}
		}
		fmt.Fprintf(stderr, "example-controller: %v; see example-controller --help\n", err)
		return ExitUsage
	}

	clientOpts := []incluster.Option{incluster.WithUserAgent(UserAgent)}
	if opts.kubeconfig != nil {
		clientOpts = append(clientOpts, incluster.WithKubeconfig(*opts.kubeconfig))
	}
	c, err := incluster.New(clientOpts...)
	if err != nil {
		log.Error("cannot configure the client", "err", withFlagFix(err))
		return ExitConfig
	}
	id, err := controller.Identity()
	if err != nil {
		log.Error("no identity", "err", err)
		return ExitConfig
	}
	mopts := []controller.Option{
		controller.WithIdentity(id),
		controller.WithProbeAddress(opts.probeAddress),
		controller.WithShutdownTimeout(opts.shutdownTimeout),
		controller.WithLeaseDuration(opts.leaseDuration),
		controller.WithRenewDeadline(opts.renewDeadline),
		controller.WithRetryPeriod(opts.retryPeriod),
		controller.WithLogger(log),
		permissions(opts),
		withMetrics(opts),
		controller.WithShards(opts.shards),
	}
	if opts.shardFilter == "client" {
		mopts = append(mopts, controller.WithClientShardFilter())
	}
	if opts.exitOnLost {
		mopts = append(mopts, controller.WithExitOnLostLeadership())
	}
	m, err := controller.New(c, opts.leaseName, mopts...)
	if err != nil {
		fmt.Fprintf(stderr, "example-controller: %v; see example-controller --help\n", err)
		return ExitUsage
	}
	w, err := work(m, c, opts, log)
	if err != nil {
		log.Error("cannot set up the work", "err", err)
		return ExitFailed
	}
	klog.SetSlogLogger(log) // client-go's own logs (election, informers) in the same stream

	err = m.Run(ctx, w)
	var opErr *net.OpError
	switch {
	case err == nil:
		log.Info("stopped", "cause", fmt.Sprint(context.Cause(ctx)))
		return ExitOK
	case errors.Is(err, controller.ErrWorkStillRunning):
		log.Error("stopped without releasing the lease", "err", err)
		return ExitStillBusy
	case errors.As(err, &opErr), isCertificateError(err):
		log.Error("cannot serve the probes or the metrics", "err", err)
		return ExitConfig
	default:
		log.Error("stopped on an error", "err", err)
		return ExitFailed
	}
}

// fixNotInPod replaces the library's advice outside a pod (what a program's
// author can do: incluster.WithKubeconfig) with the controller's flag.
const fixNotInPod = "run it in a pod, or, outside a cluster, use a kubeconfig: --kubeconfig=PATH, or --kubeconfig= for $KUBECONFIG, then ~/.kube/config"

// withFlagFix gives the error of "neither service variable is set" the
// controller's fix (in place: the error is new from incluster.New); other
// errors are returned as they are.
func withFlagFix(err error) error {
	var ce *incluster.ConfigError
	if errors.Is(err, serviceaccount.ErrServiceEnvUnset) && errors.As(err, &ce) {
		ce.Fix = fixNotInPod
	}
	return err
}

func parseFlags(args []string, stdout, stderr io.Writer) (opts options, code int, done bool) {
	fs := flag.NewFlagSet("example-controller", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&opts.leaseName, "lease-name", DefaultLease, "")
	fs.StringVar(&opts.probeAddress, "probe-address", controller.DefaultProbeAddress, "")
	fs.DurationVar(&opts.shutdownTimeout, "shutdown-timeout", controller.DefaultShutdownTimeout, "")
	fs.DurationVar(&opts.leaseDuration, "lease-duration", controller.DefaultLeaseDuration, "")
	fs.DurationVar(&opts.renewDeadline, "renew-deadline", controller.DefaultRenewDeadline, "")
	fs.DurationVar(&opts.retryPeriod, "retry-period", controller.DefaultRetryPeriod, "")
	fs.BoolVar(&opts.exitOnLost, "exit-on-lost-lease", false, "")
	fs.IntVar(&opts.workers, "workers", defaultWorkers, "")
	fs.Func("kubeconfig", "", func(s string) error { opts.kubeconfig = &s; return nil })
	fs.StringVar(&opts.logFormat, "log-format", "text", "")
	fs.BoolVar(&opts.printRole, "print-role", false, "")
	fs.BoolVar(&opts.bundles, "bundles", false, "")
	fs.StringVar(&opts.metricsAddress, "metrics-bind-address", ":8443", "")
	fs.BoolVar(&opts.metricsSecure, "metrics-secure", true, "")
	fs.StringVar(&opts.metricsCertPath, "metrics-cert-path", "", "")
	fs.IntVar(&opts.shards, "shards", 0, "")
	fs.StringVar(&opts.shardFilter, "shard-filter", "auto", "")
	usage := func(format string, a ...any) (options, int, bool) {
		fmt.Fprintf(stderr, "example-controller: "+format+"; see example-controller --help\n", a...)
		return opts, ExitUsage, true
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageText)
			return opts, ExitOK, true
		}
		return usage("%s", err.Error())
	}
	switch {
	case fs.NArg() > 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case opts.workers < 1:
		return usage("--workers=%d: want at least 1", opts.workers)
	case opts.shards < 0 || opts.shards > controller.MaxShards || opts.shards&(opts.shards-1) != 0:
		return usage("--shards=%d: want a power of two from 1 to %d, or 0 for none", opts.shards, controller.MaxShards)
	case opts.shardFilter != "auto" && opts.shardFilter != "client":
		return usage("--shard-filter=%q: want auto or client", opts.shardFilter)
	case opts.logFormat != "text" && opts.logFormat != "json":
		return usage("--log-format=%q: want text or json", opts.logFormat)
	}
	return opts, ExitOK, false
}
