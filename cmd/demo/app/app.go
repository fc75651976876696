// SPDX-License-Identifier: Apache-2.0

package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/incluster/incluster/pkg/direct"
	"github.com/incluster/incluster/pkg/incluster"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// Exit codes of Run; see the package doc.
const (
	ExitOK     = 0
	ExitUsage  = 2
	ExitConfig = 3
	ExitAPI    = 4
)

// The ways to reach the API server, the values of --via.
const (
	ViaClientGo = "client-go"
	ViaREST     = "rest"
	ViaProxy    = "proxy"
)

// UserAgent is sent with every request, so the API server's audit log and
// metrics name the program.
const UserAgent = "incluster-demo"

const usageText = `Usage: demo [flags]

Reaches the Kubernetes API from inside a pod and prints what it found: the
pod's namespace, the server's /api document (APIVersions), the server version,
who the pod is and whether it may list pods in its namespace.

Flags:
  --via=WAY            how to reach the API server (default client-go):
                         client-go  rest.InClusterConfig and client-go
                         rest       net/http only, as the docs page's curl:
                                    GET https://kubernetes.default.svc/api
                         proxy      a "kubectl proxy" sidecar over plain HTTP
  --proxy-url=URL      the sidecar's URL with --via=proxy (default http://127.0.0.1:8001)
  --server=HOST[:PORT] the API server with --via=rest (default kubernetes.default.svc:443)
  --api-versions-only  ask only for the /api document (one GET)
  --read-pods=NS       also list the pods in namespace NS, a read RBAC may refuse
                       (with --via=client-go or proxy)
  --kubeconfig=PATH    outside a cluster: use this kubeconfig (with --via=client-go);
                       --kubeconfig= (empty) means $KUBECONFIG, then ~/.kube/config
  -o, --output=FORMAT  json (one object per report) or text (default text)
  --watch              report every --interval until SIGTERM or SIGINT (JSON Lines with -o json)
  --interval=DURATION  time between reports with --watch (default 10s)
  -h, --help           show this help

Exit codes:
  0  success (with --watch: stopped by SIGTERM or SIGINT)
  2  bad usage (unknown flag or value)
  3  not in a cluster, or configuration unreadable (service variables, token,
     CA, namespace, kubeconfig)
  4  the API server refused a request or could not be reached

The token is never printed, nor its length.
`

// serviceAccountDir is where --via=rest reads the token, CA and namespace;
// tests point it at a temporary directory.
var serviceAccountDir = serviceaccount.DefaultDir

type options struct {
	via        string
	proxyURL   string
	server     string
	readPods   string
	apiOnly    bool
	kubeconfig *string // nil: not given
	output     string
	watch      bool
	interval   time.Duration
}

// Run is the demo program. It returns the exit code; stdout gets reports,
// stderr one line per error.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	opts, code, done := parseFlags(args, stdout, stderr)
	if done {
		return code
	}
	reporter, err := newReporter(opts)
	if err != nil {
		err = withFlagFix(err)
		printErr(stderr, err)
		if opts.output == "json" {
			writeReport(stdout, opts.output, &Report{Time: now(), Via: opts.via, Error: oneLine(err.Error())})
		}
		return exitCode(err)
	}
	if !opts.watch {
		r, err := reporter.report(ctx)
		writeReport(stdout, opts.output, r)
		if err != nil {
			printErr(stderr, err)
			return exitCode(err)
		}
		return ExitOK
	}
	return watch(ctx, reporter, opts, stdout, stderr)
}

// watch reports every opts.interval until ctx ends, then returns ExitOK.
// A failed report is printed and the next one is tried on schedule: the
// interval is the back-off, and client-go adds its own for retries.
func watch(ctx context.Context, rep *reporter, opts options, stdout, stderr io.Writer) int {
	ticker := time.NewTicker(opts.interval)
	defer ticker.Stop()
	for {
		r, err := rep.report(ctx)
		if ctx.Err() != nil {
			return ExitOK // stopped while a report was in flight: not a failure
		}
		writeReport(stdout, opts.output, r)
		if err != nil {
			printErr(stderr, err)
		}
		select {
		case <-ctx.Done():
			return ExitOK
		case <-ticker.C:
		}
	}
}

func parseFlags(args []string, stdout, stderr io.Writer) (opts options, code int, done bool) {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&opts.via, "via", ViaClientGo, "")
	fs.StringVar(&opts.proxyURL, "proxy-url", "http://127.0.0.1:8001", "")
	fs.StringVar(&opts.server, "server", "", "")
	fs.StringVar(&opts.readPods, "read-pods", "", "")
	fs.BoolVar(&opts.apiOnly, "api-versions-only", false, "")
	fs.Func("kubeconfig", "", func(s string) error { opts.kubeconfig = &s; return nil })
	fs.StringVar(&opts.output, "output", "text", "")
	fs.StringVar(&opts.output, "o", "text", "")
	fs.BoolVar(&opts.watch, "watch", false, "")
	fs.DurationVar(&opts.interval, "interval", 10*time.Second, "")
	usage := func(format string, a ...any) (options, int, bool) {
		fmt.Fprintf(stderr, "demo: "+format+"; see demo --help\n", a...)
		return opts, ExitUsage, true
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usageText)
			return opts, ExitOK, true
		}
		return usage("%s", oneLine(err.Error()))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case fs.NArg() > 0:
		return usage("unexpected argument %q", fs.Arg(0))
	case opts.via != ViaClientGo && opts.via != ViaREST && opts.via != ViaProxy:
		return usage("--via=%q: want client-go, rest or proxy", opts.via)
	case opts.output != "json" && opts.output != "text":
		return usage("-o %q: want json or text", opts.output)
	case opts.interval <= 0:
		return usage("--interval=%s: want a positive duration such as 10s", opts.interval)
	case opts.kubeconfig != nil && opts.via != ViaClientGo:
		return usage("--kubeconfig works with --via=client-go only")
	case set["proxy-url"] && opts.via != ViaProxy:
		return usage("--proxy-url works with --via=proxy only")
	case set["read-pods"] && opts.via == ViaREST:
		return usage("--read-pods works with --via=client-go or proxy only")
	case set["read-pods"] && serviceaccount.ValidateNamespace(opts.readPods) != nil:
		return usage("--read-pods=%q: not a namespace name", opts.readPods)
	case opts.apiOnly && set["read-pods"]:
		return usage("--api-versions-only and --read-pods exclude each other")
	case set["server"] && opts.via != ViaREST:
		return usage("--server works with --via=rest only")
	}
	if opts.via == ViaProxy {
		if _, err := url.Parse(opts.proxyURL); err != nil {
			return usage("--proxy-url=%q is not a URL", opts.proxyURL)
		}
	}
	return opts, ExitOK, false
}

// exitCode maps an error to ExitConfig or ExitAPI.
func exitCode(err error) int {
	var ce *serviceaccount.ConfigError
	if errors.As(err, &ce) {
		return ExitConfig
	}
	return ExitAPI
}

// fixNotInPod replaces the library's advice outside a pod (what a program's
// author can do: incluster.WithKubeconfig) with the demo's flag.
const fixNotInPod = "run it in a pod, or, outside a cluster, use a kubeconfig: --kubeconfig=PATH, or --kubeconfig= for $KUBECONFIG, then ~/.kube/config"

// withFlagFix gives the error of "neither service variable is set" the
// demo's fix (in place: the error is new from incluster.New); other errors
// are returned as they are.
func withFlagFix(err error) error {
	var ce *serviceaccount.ConfigError
	if errors.Is(err, serviceaccount.ErrServiceEnvUnset) && errors.As(err, &ce) {
		ce.Fix = fixNotInPod
	}
	return err
}

func printErr(w io.Writer, err error) {
	// errors.Join separates with newlines: one line per error.
	for _, line := range strings.Split(err.Error(), "\n") {
		if line != "" {
			fmt.Fprintf(w, "demo: %s\n", line)
		}
	}
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }

// newReporter builds the client for opts.via. It sends no request.
func newReporter(opts options) (*reporter, error) {
	switch opts.via {
	case ViaREST:
		c, err := direct.New(direct.Options{Host: opts.server, Dir: serviceAccountDir, UserAgent: UserAgent})
		if err != nil {
			return nil, err
		}
		ns, src, err := serviceaccount.Namespace(serviceAccountDir)
		if err != nil {
			return nil, err
		}
		return &reporter{via: opts.via, apiOnly: opts.apiOnly, server: c, namespace: ns, namespaceSource: string(src), host: c.URL()}, nil
	default:
		o := []incluster.Option{incluster.WithUserAgent(UserAgent)}
		if opts.kubeconfig != nil {
			o = append(o, incluster.WithKubeconfig(*opts.kubeconfig))
		}
		if opts.via == ViaProxy {
			o = append(o, incluster.WithProxy(opts.proxyURL))
		}
		c, err := incluster.New(o...)
		if err != nil {
			return nil, err
		}
		return &reporter{via: opts.via, apiOnly: opts.apiOnly, server: c, client: c, readPods: opts.readPods, namespace: c.Namespace(),
			namespaceSource: string(c.NamespaceSource()), host: c.Host()}, nil
	}
}
