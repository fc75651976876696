// SPDX-License-Identifier: Apache-2.0

package serviceaccount_test

import (
	"errors"
	"fmt"
	"io/fs"
	"log"
	"os"

	"github.com/incluster/incluster/pkg/serviceaccount"
)

// In a pod, read everything the kubelet mounts and sets. (Not run: it needs
// a pod.)
func Example() {
	host, err := serviceaccount.Host()
	if err != nil {
		log.Fatal(err) // e.g. "KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT: not set, ..."
	}
	if _, err := serviceaccount.Token(""); err != nil { // "" means DefaultDir
		log.Fatal(err)
	}
	caPath, _, err := serviceaccount.CAPath("")
	if err != nil {
		log.Fatal(err)
	}
	ns, from, err := serviceaccount.Namespace("")
	if err != nil {
		log.Fatal(err)
	}
	// Never print the token itself.
	fmt.Printf("API server %s, CA %s, namespace %s (from %s)\n", host, caPath, ns, from)
}

// Host joins the kubelet's variables into host:port, with IPv6 addresses in
// brackets. (Not run: it reads the environment.)
func ExampleHost() {
	host, err := serviceaccount.Host()
	if errors.Is(err, serviceaccount.ErrNotInPod) {
		fmt.Println("not in a pod: use a kubeconfig")
		return
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("https://" + host) // e.g. https://10.96.0.1:443 or https://[fd00::1]:443
}

// Token returns the trimmed token; the caller sends it as a bearer token.
// (Not run: it needs a pod.)
func ExampleToken() {
	token, err := serviceaccount.Token(serviceaccount.DefaultDir)
	if err != nil {
		log.Fatal(err) // names the file and says how to mount it, never the token
	}
	_ = "Bearer " + token // the Authorization header's value
}

// Namespace prefers POD_NAMESPACE (set from the downward API) to the file.
// (Not run: it needs a pod.)
func ExampleNamespace() {
	ns, from, err := serviceaccount.Namespace("")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("namespace %s from %s\n", ns, from)
}

func ExampleValidateNamespace() {
	for _, ns := range []string{"kube-system", "", "Bad_NS"} {
		fmt.Printf("%q: %v\n", ns, serviceaccount.ValidateNamespace(ns))
	}
	// Output:
	// "kube-system": <nil>
	// "": the namespace is empty
	// "Bad_NS": "Bad_NS" is not a valid namespace name: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')
}

func ExampleParseCA() {
	_, err := serviceaccount.ParseCA([]byte("not a certificate"))
	fmt.Println(err)
	// Output:
	// the CA bundle holds no PEM certificate
}

// Every error is a *ConfigError that names the file or variable at fault and
// says what to do; errors.Is reaches the cause.
func ExampleConfigError() {
	dir, err := os.MkdirTemp("", "sa")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	_, err = serviceaccount.Token(dir) // an empty directory: no token
	var ce *serviceaccount.ConfigError
	if errors.As(err, &ce) {
		fmt.Println("reason:", ce.Reason)
		fmt.Println("fix:", ce.Fix)
		fmt.Println("missing:", errors.Is(err, fs.ErrNotExist))
	}
	// Output:
	// reason: no service-account token is mounted
	// fix: mount the service-account token (automountServiceAccountToken: true on the Pod or its ServiceAccount, or a projected serviceAccountToken volume)
	// missing: true
}
