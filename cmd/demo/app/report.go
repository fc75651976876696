// SPDX-License-Identifier: Apache-2.0

package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	"github.com/incluster/incluster/pkg/incluster"
)

// Report is what the demo found, printed as one JSON object with -o json.
// A field is omitted when its step did not run or failed; Error then says why.
type Report struct {
	Time            time.Time           `json:"time"`
	Via             string              `json:"via"`
	Namespace       string              `json:"namespace,omitempty"`
	NamespaceSource string              `json:"namespaceSource,omitempty"`
	Host            string              `json:"host,omitempty"`
	APIVersions     *metav1.APIVersions `json:"apiVersions,omitempty"`
	ServerVersion   string              `json:"serverVersion,omitempty"`
	User            *User               `json:"user,omitempty"`
	CanListPods     *bool               `json:"canListPods,omitempty"`
	// Pods is the result of --read-pods.
	Pods *Pods `json:"pods,omitempty"`
	// Error lists the failed steps, "; "-separated, e.g. "whoami: ...".
	Error string `json:"error,omitempty"`
}

// Pods says how many pods a list in Namespace returned.
type Pods struct {
	Namespace string `json:"namespace"`
	Count     int    `json:"count"`
}

// User is who the API server says the client is.
type User struct {
	Username string   `json:"username"`
	Groups   []string `json:"groups,omitempty"`
}

// server is what both ways of asking have in common: *incluster.Client
// (client-go, also through a proxy) and *direct.Client (net/http).
type server interface {
	APIVersions(context.Context) (*metav1.APIVersions, error)
	ServerVersion(context.Context) (*version.Info, error)
}

// reporter asks one API server the report's questions. client is nil with
// --via=rest, which asks only what server can.
type reporter struct {
	via             string
	server          server
	client          *incluster.Client
	readPods        string // namespace to list pods in; empty: none
	apiOnly         bool   // only the /api document
	namespace       string
	namespaceSource string
	host            string
}

// report sends the report's requests concurrently (over one HTTP/2
// connection; with --via=proxy, HTTP/1.1 to the sidecar) and returns the report and the joined errors of failed steps.
func (r *reporter) report(ctx context.Context) (*Report, error) {
	rep := &Report{Time: now(), Via: r.via,
		Namespace: r.namespace, NamespaceSource: r.namespaceSource, Host: r.host}
	// One slot per step, in the order errors are printed, whatever order
	// the steps finish in.
	const (
		apiVersions = iota
		serverVersion
		whoami
		canListPods
		readPods
		steps
	)
	var wg sync.WaitGroup
	errs := make([]error, steps)
	step := func(i int, name string, f func() error) {
		wg.Go(func() {
			if err := f(); err != nil {
				errs[i] = fmt.Errorf("%s: %w", name, err)
			}
		})
	}
	step(apiVersions, "apiVersions", func() (err error) { rep.APIVersions, err = r.server.APIVersions(ctx); return err })
	if !r.apiOnly {
		step(serverVersion, "serverVersion", func() error {
			v, err := r.server.ServerVersion(ctx)
			if err == nil {
				rep.ServerVersion = v.GitVersion
			}
			return err
		})
	}
	if c := r.client; c != nil && !r.apiOnly {
		step(whoami, "whoami", func() error {
			u, err := c.WhoAmI(ctx)
			if err == nil {
				rep.User = &User{Username: u.Username, Groups: u.Groups}
			}
			return err
		})
		step(canListPods, "canListPods", func() error {
			ok, err := mayListPods(ctx, c)
			if err == nil {
				rep.CanListPods = &ok
			}
			return err
		})
		if r.readPods != "" {
			step(readPods, "readPods", func() error {
				var list struct {
					Items []json.RawMessage `json:"items"`
				}
				if err := c.GetJSON(ctx, "/api/v1/namespaces/"+r.readPods+"/pods", &list); err != nil {
					return fmt.Errorf("list pods in namespace %s: %w", r.readPods, err)
				}
				rep.Pods = &Pods{Namespace: r.readPods, Count: len(list.Items)}
				return nil
			})
		}
	}
	wg.Wait()
	err := errors.Join(errs...) // nil if every step succeeded
	if err != nil {
		rep.Error = oneLine(err.Error())
	}
	return rep, err
}

// mayListPods is the demo's question: may the pod list the pods of its own
// namespace? A SelfSubjectAccessReview ("kubectl auth can-i list pods").
func mayListPods(ctx context.Context, c *incluster.Client) (bool, error) {
	d, err := c.Can(ctx, authorizationv1.ResourceAttributes{Namespace: c.Namespace(), Verb: "list", Resource: "pods"})
	return d.Allowed, err
}

func now() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// writeReport prints r as one JSON line (json) or as aligned lines (text).
func writeReport(w io.Writer, format string, r *Report) {
	if format == "json" {
		b, _ := json.Marshal(r) // a Report always marshals
		fmt.Fprintf(w, "%s\n", b)
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	line("via", r.Via)
	line("host", r.Host)
	if r.Namespace != "" {
		line("namespace", fmt.Sprintf("%s (from %s)", r.Namespace, r.NamespaceSource))
	}
	if u := r.User; u != nil {
		line("user", u.Username)
		line("groups", strings.Join(u.Groups, ", "))
	}
	line("server version", r.ServerVersion)
	if v := r.APIVersions; v != nil {
		line("api versions", strings.Join(v.Versions, ", "))
		var addrs []string
		for _, a := range v.ServerAddressByClientCIDRs {
			addrs = append(addrs, a.ClientCIDR+" -> "+a.ServerAddress)
		}
		line("server addresses", strings.Join(addrs, ", "))
	}
	if r.CanListPods != nil {
		line("can list pods", map[bool]string{true: "yes", false: "no"}[*r.CanListPods])
	}
	if p := r.Pods; p != nil {
		line("pods in "+p.Namespace, fmt.Sprint(p.Count))
	}
	tw.Flush()
	if r.Error != "" {
		fmt.Fprintln(w, "errors: see stderr")
	}
	fmt.Fprintln(w)
}
