// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/incluster/incluster/pkg/serviceaccount"
)

// ConfigError is the error type for an unusable configuration: it names the
// file or variable at fault and says what to do. Programs can tell it apart
// from API errors with errors.As.
type ConfigError = serviceaccount.ConfigError

// NamespaceSource says where the namespace came from.
type NamespaceSource = serviceaccount.NamespaceSource

// Where a namespace can come from.
const (
	FromEnv        = serviceaccount.FromEnv
	FromFile       = serviceaccount.FromFile
	FromKubeconfig = serviceaccount.FromKubeconfig
)

// Test seams: the service-account directory our checks read, and the
// function that builds the config (rest.InClusterConfig reads fixed paths).
var (
	serviceAccountDir   = serviceaccount.DefaultDir
	loadInClusterConfig = rest.InClusterConfig
)

// InClusterConfig returns rest.InClusterConfig's config after checking what
// it needs: both service variables set and valid (IPv6 hosts included), a
// non-empty token file and a CA bundle that parses. rest.InClusterConfig
// alone accepts an empty token and, with a broken CA, only logs and goes on
// to fail later with "certificate signed by unknown authority".
//
// Errors are *ConfigError values; errors.Is(err, rest.ErrNotInCluster) holds
// when the service variables are not set. When neither is set, the error's
// Fix names WithKubeconfig and KubeconfigConfig.
func InClusterConfig() (*rest.Config, error) {
	if _, err := serviceaccount.Host(); err != nil {
		var ce *ConfigError
		if errors.As(err, &ce) && errors.Is(err, serviceaccount.ErrNotInPod) {
			ce.Err = errors.Join(ce.Err, rest.ErrNotInCluster)
			if errors.Is(err, serviceaccount.ErrServiceEnvUnset) {
				ce.Fix = fixNotInPod
			}
		}
		return nil, err
	}
	if _, err := serviceaccount.Token(serviceAccountDir); err != nil {
		return nil, err
	}
	caPath, _, err := serviceaccount.CAPath(serviceAccountDir)
	if err != nil {
		return nil, err
	}
	cfg, err := loadInClusterConfig()
	if err != nil {
		return nil, &ConfigError{Source: serviceAccountDir, Reason: "rest.InClusterConfig failed: " + err.Error(),
			Fix: "check the service-account mount", Err: err}
	}
	if cfg.TLSClientConfig.CAFile == "" && len(cfg.TLSClientConfig.CAData) == 0 {
		return nil, &ConfigError{Source: caPath, Reason: "rest.InClusterConfig could not load the CA bundle",
			Fix: "mount the cluster's CA bundle (the kube-root-ca.crt ConfigMap) there"}
	}
	return cfg, nil
}

// fixNotInPod is the Fix of InClusterConfig's and New's error when neither
// service variable is set (serviceaccount.ErrServiceEnvUnset): what a
// program's author can do. A program with flags of its own replaces it with
// words naming them (cmd/demo and cmd/example-controller do).
const fixNotInPod = "run it in a pod, or, to run outside a cluster, pass incluster.WithKubeconfig(path) to incluster.New or call incluster.KubeconfigConfig(path) " + fixKubeconfigPath

// fixKubeconfigPath ends the Fix of the errors that a kubeconfig path can
// fix. KubeconfigConfig's errors do not name WithKubeconfig: the path may
// come from a program's flag, and the program's user reads them too.
const fixKubeconfigPath = "(an empty path means $KUBECONFIG, then ~/.kube/config)"

// KubeconfigConfig loads a kubeconfig for use outside a cluster. Precedence:
// path if not empty; else the files in $KUBECONFIG (merged, as kubectl does);
// else ~/.kube/config. It uses the current context and never falls back to
// the in-cluster config. It also returns the current context's namespace,
// which is empty if the context sets none.
func KubeconfigConfig(path string) (*rest.Config, string, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	source := "~/.kube/config"
	switch {
	case path != "":
		rules = &clientcmd.ClientConfigLoadingRules{ExplicitPath: path}
		source = path
	case os.Getenv(clientcmd.RecommendedConfigPathEnvVar) != "":
		source = "$" + clientcmd.RecommendedConfigPathEnvVar + " (" + os.Getenv(clientcmd.RecommendedConfigPathEnvVar) + ")"
	default:
		if home, err := os.UserHomeDir(); err == nil {
			source = filepath.Join(home, ".kube", "config")
		}
	}
	raw, err := rules.Load()
	if err != nil {
		return nil, "", &ConfigError{Source: source, Reason: "cannot load the kubeconfig: " + err.Error(),
			Fix: "pass the path of a readable kubeconfig " + fixKubeconfigPath, Err: err}
	}
	if raw == nil || len(raw.Contexts) == 0 {
		return nil, "", &ConfigError{Source: source, Reason: "no kubeconfig with a context found",
			Fix: "pass the path of a kubeconfig with a context " + fixKubeconfigPath + ", or create one (kind create cluster, make cluster-up)"}
	}
	ctx, ok := raw.Contexts[raw.CurrentContext]
	if raw.CurrentContext == "" || !ok {
		return nil, "", &ConfigError{Source: source, Reason: fmt.Sprintf("the current context %q does not exist", raw.CurrentContext),
			Fix: "choose one with: kubectl config use-context NAME"}
	}
	cfg, err := clientcmd.NewDefaultClientConfig(*raw, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, "", &ConfigError{Source: source, Reason: "the kubeconfig is invalid: " + err.Error(),
			Fix: "check it with: kubectl config view", Err: err}
	}
	return cfg, contextNamespace(ctx), nil
}

func contextNamespace(ctx *clientcmdapi.Context) string {
	if ctx == nil {
		return ""
	}
	return ctx.Namespace
}

// ProxyConfig returns a config for a "kubectl proxy" sidecar at proxyURL,
// e.g. http://127.0.0.1:8001. The proxy adds the pod's credentials, so the
// config carries none. Because the traffic is plain HTTP, the host must be a
// loopback address or "localhost": a sidecar shares the pod's network
// namespace, and plain HTTP must not leave it.
func ProxyConfig(proxyURL string) (*rest.Config, error) {
	u, err := url.Parse(proxyURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, &ConfigError{Source: proxyURL, Reason: "not an http:// URL of a kubectl proxy",
			Fix: "use the sidecar's address, e.g. http://127.0.0.1:8001 for kubectl proxy --port=8001"}
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && u.Path != "/") {
		// A password here would also end up in every error message.
		return nil, &ConfigError{Source: u.Redacted(), Reason: "a kubectl proxy URL has no user, password, path, query or fragment",
			Fix: "use http://HOST:PORT only, e.g. http://127.0.0.1:8001"}
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return nil, &ConfigError{Source: proxyURL, Reason: "the port is not 1-65535", Fix: "use kubectl proxy's --port, e.g. http://127.0.0.1:8001"}
		}
	}
	if !isLoopback(u.Hostname()) {
		return nil, &ConfigError{Source: proxyURL, Reason: "the proxy host is not a loopback address; plain HTTP with a proxy's credentials must not leave the pod",
			Fix: "run kubectl proxy as a sidecar and use http://127.0.0.1:PORT"}
	}
	return &rest.Config{Host: strings.TrimSuffix(u.String(), "/")}, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(strings.TrimSuffix(host, "."), "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
