// SPDX-License-Identifier: Apache-2.0

package incluster_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/rest"

	"github.com/incluster/incluster/pkg/incluster"
)

// A program in a pod builds its client from the service-account mount and
// asks who it is. (Package clients adds client-go's typed clientset.)
func ExampleNew() {
	c, err := incluster.New(incluster.WithUserAgent("my-controller/v1.2.0"))
	var ce *incluster.ConfigError
	switch {
	case errors.Is(err, rest.ErrNotInCluster):
		log.Fatalf("not in a pod: %v", err) // names KUBERNETES_SERVICE_HOST and suggests WithKubeconfig
	case errors.As(err, &ce):
		log.Fatalf("bad configuration: %s is at fault: %v", ce.Source, err)
	case err != nil:
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	user, err := c.WhoAmI(ctx)
	if err != nil {
		log.Fatal(err) // says what to do, e.g. which RBAC is missing
	}
	fmt.Printf("%s in namespace %s (from %s)\n", user.Username, c.Namespace(), c.NamespaceSource())
}

// Outside a cluster, for development: a kubeconfig instead of the pod's
// service account. An empty path means $KUBECONFIG, then ~/.kube/config.
func ExampleNew_kubeconfig() {
	c, err := incluster.New(incluster.WithKubeconfig(""), incluster.WithRateLimit(20, 40))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("API server:", c.Host(), "namespace:", c.Namespace())
}

// A config built by the caller, here from a kubeconfig with a longer
// per-request timeout, and the namespace given explicitly.
func ExampleNewForConfig() {
	cfg, ns, err := incluster.KubeconfigConfig("/path/to/kubeconfig")
	if err != nil {
		log.Fatal(err)
	}
	if ns == "" {
		ns = "team-a"
	}
	cfg.Timeout = 30 * time.Second
	c, err := incluster.NewForConfig(cfg, ns)
	if err != nil {
		log.Fatal(err)
	}
	v, err := c.ServerVersion(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("server version:", v.GitVersion)
}

// The /api document as curl shows it, serverAddressByClientCIDRs included.
func ExampleClient_APIVersions() {
	c, err := incluster.New()
	if err != nil {
		log.Fatal(err)
	}
	v, err := c.APIVersions(context.Background())
	if err != nil {
		log.Fatal(err) // e.g. "... (HTTP 401: the API server rejected the credentials: ...)"
	}
	fmt.Println("versions:", v.Versions)
	for _, a := range v.ServerAddressByClientCIDRs {
		fmt.Printf("clients in %s use %s\n", a.ClientCIDR, a.ServerAddress)
	}
}

// Whether the pod may read Secrets in its namespace, as "kubectl auth
// can-i get secrets" asks. A denial is an answer, not an error.
func ExampleClient_Can() {
	c, err := incluster.New()
	if err != nil {
		log.Fatal(err)
	}
	d, err := c.Can(context.Background(), authorizationv1.ResourceAttributes{Verb: "get", Resource: "secrets"})
	if err != nil {
		log.Fatal(err)
	}
	if !d.Allowed {
		fmt.Printf("may not get secrets in %s: %s\n", c.Namespace(), d.Reason)
	}
}

// Who the pod is, as "kubectl auth whoami" shows it.
func ExampleClient_WhoAmI() {
	c, err := incluster.New()
	if err != nil {
		log.Fatal(err)
	}
	u, err := c.WhoAmI(context.Background())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(u.Username) // system:serviceaccount:NAMESPACE:NAME
}

// A "kubectl proxy" sidecar serves plain HTTP, so only loopback addresses
// are accepted.
func ExampleProxyConfig() {
	cfg, err := incluster.ProxyConfig("http://127.0.0.1:8001/")
	fmt.Println(cfg.Host, err)

	_, err = incluster.ProxyConfig("http://10.0.0.5:8001")
	fmt.Println(err)
	// Output:
	// http://127.0.0.1:8001 <nil>
	// http://10.0.0.5:8001: the proxy host is not a loopback address; plain HTTP with a proxy's credentials must not leave the pod; run kubectl proxy as a sidecar and use http://127.0.0.1:PORT
}

// Explain adds the status code and what to do to an error of the caller's
// own client-go call; apierrors' predicates keep working. It does not know
// what the call asked for, so a 403 names both ways to grant it.
func ExampleExplain() {
	var err error = apierrors.NewForbidden(schema.GroupResource{Resource: "secrets"}, "db", errors.New("RBAC: access denied"))
	err = incluster.Explain(err, "get secret db")
	fmt.Println(err)
	fmt.Println(apierrors.IsForbidden(err))
	// Output:
	// get secret db: secrets "db" is forbidden: RBAC: access denied (HTTP 403: the service account lacks RBAC permission for this: grant it with a Role and RoleBinding in the namespace, or with a ClusterRole and ClusterRoleBinding for a cluster-scoped resource or a non-resource URL (see deploy/))
	// true
}
