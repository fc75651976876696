// SPDX-License-Identifier: Apache-2.0

package direct_test

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"time"

	"github.com/incluster/incluster/pkg/direct"
	"github.com/incluster/incluster/pkg/serviceaccount"
)

// The docs page's curl, in Go: in a pod, GET /api with the mounted token and
// CA. (Not run: it needs a pod.)
func Example() {
	host, err := direct.HostFromEnv() // e.g. 10.96.0.1:443 or [fd00::1]:443
	if err != nil {
		log.Fatal(err)
	}
	c, err := direct.New(direct.Options{Host: host})
	if err != nil {
		log.Fatal(err) // a *serviceaccount.ConfigError naming the file at fault
	}
	v, err := c.APIVersions(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.URL(), v.Versions)
}

// The zero Options mean https://kubernetes.default.svc:443 with the
// credentials in serviceaccount.DefaultDir. (Not run: it needs a pod.)
func ExampleNew() {
	c, err := direct.New(direct.Options{Timeout: 5 * time.Second, UserAgent: "my-probe/1.0"})
	var ce *serviceaccount.ConfigError
	if errors.As(err, &ce) {
		log.Fatalf("%s is unusable: %s (%s)", ce.Source, ce.Reason, ce.Fix)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(c.URL())
}

// A self-contained run against a local HTTPS server standing in for the API
// server, with a service-account directory that trusts its certificate.
func ExampleClient_APIVersions() {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer example-token" {
			http.Error(w, `{"kind":"Status","message":"Unauthorized","code":401}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"kind":"APIVersions","versions":["v1"],"serverAddressByClientCIDRs":[{"clientCIDR":"0.0.0.0/0","serverAddress":"10.0.0.1:6443"}]}`)
	}))
	defer srv.Close()

	dir, err := os.MkdirTemp("", "serviceaccount")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(filepath.Join(dir, serviceaccount.CAFile), ca, 0o600); err != nil {
		log.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, serviceaccount.TokenFile), []byte("example-token\n"), 0o600); err != nil {
		log.Fatal(err)
	}

	c, err := direct.New(direct.Options{Host: srv.Listener.Addr().String(), Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	v, err := c.APIVersions(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(v.Kind, v.Versions, v.ServerAddressByClientCIDRs[0].ServerAddress)
	// Output:
	// APIVersions [v1] 10.0.0.1:6443
}

// (Not run: it needs a pod.)
func ExampleClient_ServerVersion() {
	c, err := direct.New(direct.Options{})
	if err != nil {
		log.Fatal(err)
	}
	info, err := c.ServerVersion(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(info.GitVersion)
}

// Get decodes any JSON document; a non-2xx answer is a *StatusError.
// (Not run: it needs a pod.)
func ExampleClient_Get() {
	c, err := direct.New(direct.Options{})
	if err != nil {
		log.Fatal(err)
	}
	var groups struct {
		Groups []struct {
			Name string `json:"name"`
		} `json:"groups"`
	}
	err = c.Get(context.Background(), "/apis", &groups)
	var se *direct.StatusError
	if errors.As(err, &se) && se.Code == http.StatusForbidden {
		log.Fatal("the service account may not list API groups: ", err)
	}
	if err != nil {
		log.Fatal(err)
	}
	for _, g := range groups.Groups {
		fmt.Println(g.Name)
	}
}

// A StatusError carries the code and the server's message, and its text says
// what to do about the common codes.
func ExampleStatusError() {
	err := error(&direct.StatusError{
		URL:     "https://10.96.0.1:443/api",
		Code:    http.StatusForbidden,
		Message: `forbidden: User "system:serviceaccount:default:default" cannot get path "/api"`,
	})
	var se *direct.StatusError
	if errors.As(err, &se) {
		fmt.Println(se.Code)
	}
	fmt.Println(err)
	// Output:
	// 403
	// GET https://10.96.0.1:443/api: 403 Forbidden: forbidden: User "system:serviceaccount:default:default" cannot get path "/api" (the service account lacks RBAC permission for this non-resource URL: grant it with a ClusterRole (nonResourceURLs) and ClusterRoleBinding; a Role and RoleBinding cannot)
}

// HostFromEnv reads the kubelet's KUBERNETES_SERVICE_HOST/_PORT; an IPv6 address
// comes back in brackets. (Not run: it reads the environment.)
func ExampleHostFromEnv() {
	host, err := direct.HostFromEnv()
	if errors.Is(err, serviceaccount.ErrNotInPod) {
		fmt.Println("not in a pod")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(host) // e.g. [fd00::1]:443
}
