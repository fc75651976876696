// SPDX-License-Identifier: Apache-2.0

package clients_test

import (
	"fmt"
	"path/filepath"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/rest"

	"github.com/incluster/incluster/internal/testca"
)

// TestCARotation: the typed clientset and the discovery client share the
// incluster.Client's HTTP client, so they follow a CA file as it does: the
// server switches to a certificate from a new CA, the CA file is updated,
// and the next call of each succeeds.
func TestCARotation(t *testing.T) {
	oldCA, newCA := testca.NewCA(t, "old-ca"), testca.NewCA(t, "new-ca")
	srv := testca.NewServer(t, fakeAPI(map[string]string{
		"/version":                  versionJSON,
		"/api/v1/namespaces/team-a": `{"kind":"Namespace","apiVersion":"v1","metadata":{"name":"team-a"}}`,
	}), oldCA.Leaf(t))
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	testca.WriteFile(t, caFile, oldCA.PEM)
	c, cs, dc := newClients(t, &rest.Config{Host: srv.URL, BearerToken: "t",
		TLSClientConfig: rest.TLSClientConfig{CAFile: caFile}}, "team-a")
	calls := map[string]func() error{
		"clientset": func() error {
			ns, err := cs.CoreV1().Namespaces().Get(t.Context(), "team-a", metav1.GetOptions{})
			if err == nil && ns.Name != "team-a" {
				err = fmt.Errorf("got namespace %q", ns.Name)
			}
			return err
		},
		"discovery": func() error { _, err := dc.ServerVersion(); return err },
	}
	prev := oldCA
	for _, rot := range []struct {
		call string
		ca   *testca.CA
	}{{"clientset", newCA}, {"discovery", testca.NewCA(t, "third-ca")}} { // one rotation each
		name, call := rot.call, calls[rot.call]
		if err := call(); err != nil {
			t.Fatalf("%s before the switch: %v", name, err)
		}
		srv.Switch(rot.ca.Leaf(t))
		utilnet.CloseIdleConnectionsFor(c.HTTPClient().Transport) // no race with the server's close
		testca.WriteFile(t, caFile, testca.Bundle(rot.ca, prev))
		prev = rot.ca
		hs, reqs := srv.Handshakes(), srv.Requests()
		if err := call(); err != nil {
			t.Fatalf("%s after the switch: %v", name, err)
		}
		if n := srv.Requests() - reqs; n != 1 {
			t.Errorf("%s: the server received %d requests, want 1", name, n)
		}
		if n := srv.Handshakes() - hs; n != 2 {
			t.Errorf("%s: %d handshakes after the switch, want 2 (refused, then the retry)", name, n)
		}
	}
}
