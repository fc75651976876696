// SPDX-License-Identifier: Apache-2.0

package clients_test

import (
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/incluster/incluster/pkg/clients"
	"github.com/incluster/incluster/pkg/incluster"
)

// TestSharedConnection: the typed clientset, the discovery client and the
// helpers of incluster.Client share one http.Client, so concurrent calls of
// all of them use one TLS connection.
func TestSharedConnection(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(fakeAPI(map[string]string{
		"/api":                       `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"10.0.0.1:6443"}]}`,
		"/version":                   versionJSON,
		"/api/v1/namespaces/ns/pods": `{"kind":"PodList","apiVersion":"v1","items":[{"metadata":{"name":"a"}}]}`,
	}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()

	c, cs, dc := newClients(t, &rest.Config{Host: srv.URL, BearerToken: "t",
		TLSClientConfig: rest.TLSClientConfig{CAData: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})}}, "ns")
	for name, rc := range map[string]rest.Interface{"discovery": dc.RESTClient(), "core/v1": cs.CoreV1().RESTClient(), "apps/v1": cs.AppsV1().RESTClient()} {
		if r, ok := rc.(*rest.RESTClient); !ok || r.Client != c.HTTPClient() {
			t.Errorf("%s does not use the incluster.Client's http.Client", name)
		}
	}
	calls := []func() error{
		func() error { _, err := c.APIVersions(t.Context()); return err },
		func() error { _, err := dc.ServerVersion(); return err },
		func() error { _, err := cs.CoreV1().Pods("ns").List(t.Context(), metav1.ListOptions{}); return err },
	}
	var wg sync.WaitGroup
	errs := make([]error, len(calls))
	for i, f := range calls {
		wg.Go(func() { errs[i] = f() })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// versionJSON is what the fake API server answers at /version.
const versionJSON = `{"major":"1","minor":"37","gitVersion":"v1.37.2"}`

// fakeAPI answers a request for a path in bodies with its JSON body, and
// any other with 404 Not Found.
func fakeAPI(bodies map[string]string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, ok := bodies[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, body)
	})
}

// newClients returns an incluster.Client on cfg in namespace ns, and the
// typed clientset and the discovery client made from it.
func newClients(t *testing.T, cfg *rest.Config, ns string) (*incluster.Client, *kubernetes.Clientset, *discovery.DiscoveryClient) {
	t.Helper()
	c, err := incluster.NewForConfig(cfg, ns)
	if err != nil {
		t.Fatal(err)
	}
	cs, err := clients.Kubernetes(c)
	if err != nil {
		t.Fatal(err)
	}
	dc, err := clients.Discovery(c)
	if err != nil {
		t.Fatal(err)
	}
	return c, cs, dc
}
