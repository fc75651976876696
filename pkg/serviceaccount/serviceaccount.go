// SPDX-License-Identifier: Apache-2.0

package serviceaccount

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/util/validation"
)

// DefaultDir is where the kubelet mounts the service-account token, CA bundle
// and namespace in every container that has automountServiceAccountToken on.
const DefaultDir = "/var/run/secrets/kubernetes.io/serviceaccount"

// File names inside the service-account directory.
const (
	TokenFile     = "token"
	CAFile        = "ca.crt"
	NamespaceFile = "namespace"
)

// Environment variables the kubelet sets for the kubernetes Service, and the
// downward-API variable that, when set, names the pod's namespace.
const (
	HostEnv         = "KUBERNETES_SERVICE_HOST"
	PortEnv         = "KUBERNETES_SERVICE_PORT"
	PodNamespaceEnv = "POD_NAMESPACE"
)

// ErrNotInPod is the cause of a *ConfigError when a service variable is not
// set: the program is not running in a Kubernetes pod.
var ErrNotInPod = errors.New("not running in a Kubernetes pod")

// ErrServiceEnvUnset is the cause when neither service variable is set, the
// usual case outside a pod (not one set without the other); errors.Is(err,
// ErrNotInPod) holds for it too. The error's Fix is "run it in a pod":
// callers that offer another way, such as a kubeconfig, replace it.
var ErrServiceEnvUnset = fmt.Errorf("%s and %s are not set: %w", HostEnv, PortEnv, ErrNotInPod)

// ConfigError says what part of the in-pod configuration is unusable (Source:
// a file path or variable name), why, and what to do about it (Fix).
// Callers map it to "configuration" failures, as opposed to API failures.
// ParseCA and ValidateNamespace check values, not files: their errors have
// no Source (and no Fix); callers that know where the value came from
// return a ConfigError that names it.
type ConfigError struct {
	Source string // file path or environment variable at fault; "" if not known
	Reason string // what is wrong with it
	Fix    string // what the user should do
	Err    error  // underlying cause, if any; never contains a token
}

// Error is "Source: Reason; Fix", without the parts that are empty.
func (e *ConfigError) Error() string {
	msg := e.Reason
	if e.Source != "" {
		msg = e.Source + ": " + msg
	}
	if e.Fix != "" {
		msg += "; " + e.Fix
	}
	return msg
}

func (e *ConfigError) Unwrap() error { return e.Err }

const fixMount = "mount the service-account token (automountServiceAccountToken: true on the Pod or its ServiceAccount, or a projected serviceAccountToken volume)"

// Host returns the API server's in-cluster address as host:port (IPv6 hosts
// in brackets), from KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT.
func Host() (string, error) {
	return hostFrom(os.Getenv(HostEnv), os.Getenv(PortEnv))
}

func hostFrom(host, port string) (string, error) {
	switch {
	case host == "" && port == "":
		return "", &ConfigError{Source: HostEnv + " and " + PortEnv,
			Reason: "not set, so this is not running in a Kubernetes pod",
			Fix:    "run it in a pod",
			Err:    ErrServiceEnvUnset}
	case host == "":
		return "", &ConfigError{Source: HostEnv, Reason: "not set while " + PortEnv + " is",
			Fix: "set both (the kubelet does in every pod) or neither", Err: ErrNotInPod}
	case port == "":
		return "", &ConfigError{Source: PortEnv, Reason: "not set while " + HostEnv + " is",
			Fix: "set both (the kubelet does in every pod) or neither", Err: ErrNotInPod}
	}
	if net.ParseIP(host) == nil && len(validation.IsDNS1123Subdomain(host)) > 0 {
		return "", &ConfigError{Source: HostEnv, Reason: fmt.Sprintf("%q is neither an IP address nor a DNS name", host),
			Fix: "unset it to let the kubelet set it, or set it to the API server's address"}
	}
	// Digits only: Atoi also takes "+443", which a URL cannot carry.
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strings.Trim(port, "0123456789") != "" {
		return "", &ConfigError{Source: PortEnv, Reason: fmt.Sprintf("%q is not a port number (1-65535)", port),
			Fix: "unset it to let the kubelet set it, or set it to the API server's port"}
	}
	return net.JoinHostPort(host, port), nil
}

// Token reads the service-account token from dir (DefaultDir if empty). It
// checks that the file exists and is not empty; it never puts the token, or
// its length, in an error.
func Token(dir string) (string, error) {
	path := filepath.Join(orDefault(dir), TokenFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", &ConfigError{Source: path, Reason: "no service-account token is mounted", Fix: fixMount, Err: err}
	case err != nil:
		return "", &ConfigError{Source: path, Reason: "cannot read the service-account token: " + errText(err),
			Fix: "make the file readable by the container's user (fsGroup, or defaultMode of a projected volume)", Err: err}
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", &ConfigError{Source: path, Reason: "the service-account token file is empty", Fix: fixMount}
	}
	if strings.ContainsAny(tok, " \t\r\n") || !isPrintableASCII(tok) {
		return "", &ConfigError{Source: path, Reason: "the service-account token file does not hold a token (it contains whitespace or non-printable bytes)", Fix: fixMount}
	}
	return tok, nil
}

// CAPath returns the path of the CA bundle in dir (DefaultDir if empty) after
// checking that it holds at least one PEM certificate, and the parsed pool.
func CAPath(dir string) (string, *x509.CertPool, error) {
	path := filepath.Join(orDefault(dir), CAFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", nil, &ConfigError{Source: path, Reason: "no cluster CA bundle is mounted",
			Fix: "mount it with the token (automountServiceAccountToken: true), or put the kube-root-ca.crt ConfigMap in the projected volume that holds the token", Err: err}
	case err != nil:
		return "", nil, &ConfigError{Source: path, Reason: "cannot read the cluster CA bundle: " + errText(err),
			Fix: "make the file readable by the container's user", Err: err}
	}
	pool, err := ParseCA(b)
	if err != nil {
		return "", nil, &ConfigError{Source: path, Reason: err.(*ConfigError).Reason,
			Fix: "mount the cluster's CA bundle (the kube-root-ca.crt ConfigMap) there", Err: err}
	}
	return path, pool, nil
}

// ParseCA parses a PEM bundle and returns a pool with every certificate in
// it. It fails if the bundle holds no certificate or a certificate is broken,
// with a *ConfigError without Source (ParseCA does not know where the bundle
// came from; CAPath's errors name the file).
func ParseCA(pemBytes []byte) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	n := 0
	for rest := pemBytes; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, &ConfigError{Reason: "the CA bundle holds a broken certificate: " + err.Error(), Err: err}
		}
		pool.AddCert(cert)
		n++
	}
	if n == 0 {
		return nil, &ConfigError{Reason: "the CA bundle holds no PEM certificate"}
	}
	return pool, nil
}

// NamespaceSource says where a namespace came from.
type NamespaceSource string

// The places a namespace can come from, in the order they are tried in a pod.
const (
	FromEnv        NamespaceSource = "POD_NAMESPACE"
	FromFile       NamespaceSource = "serviceaccount-file"
	FromKubeconfig NamespaceSource = "kubeconfig"
)

// Namespace returns the pod's namespace: POD_NAMESPACE if it is set (the
// downward API's metadata.namespace), else the namespace file in dir
// (DefaultDir if empty), whitespace trimmed. The value must be a DNS-1123
// label. It never falls back to "default".
func Namespace(dir string) (string, NamespaceSource, error) {
	if ns, ok := os.LookupEnv(PodNamespaceEnv); ok {
		if err := ValidateNamespace(ns); err != nil {
			return "", "", &ConfigError{Source: PodNamespaceEnv, Reason: err.(*ConfigError).Reason,
				Fix: "set it from the downward API (valueFrom.fieldRef.fieldPath: metadata.namespace) or unset it"}
		}
		return ns, FromEnv, nil
	}
	path := filepath.Join(orDefault(dir), NamespaceFile)
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return "", "", &ConfigError{Source: path, Reason: "no namespace file is mounted and " + PodNamespaceEnv + " is not set",
			Fix: "set " + PodNamespaceEnv + " from the downward API (fieldRef metadata.namespace), or " + fixMount, Err: err}
	case err != nil:
		return "", "", &ConfigError{Source: path, Reason: "cannot read the namespace file: " + errText(err),
			Fix: "make it readable, or set " + PodNamespaceEnv + " from the downward API", Err: err}
	}
	ns := strings.TrimSpace(string(b))
	if err := ValidateNamespace(ns); err != nil {
		return "", "", &ConfigError{Source: path, Reason: err.(*ConfigError).Reason,
			Fix: "set " + PodNamespaceEnv + " from the downward API (fieldRef metadata.namespace)"}
	}
	return ns, FromFile, nil
}

// ValidateNamespace checks that ns is a valid namespace name (a DNS-1123
// label). Its error is a *ConfigError without Source: callers that know
// where ns came from name it.
func ValidateNamespace(ns string) error {
	if ns == "" {
		return &ConfigError{Reason: "the namespace is empty"}
	}
	if errs := validation.IsDNS1123Label(ns); len(errs) > 0 {
		return &ConfigError{Reason: fmt.Sprintf("%q is not a valid namespace name: %s", truncate(ns, 70), strings.Join(errs, "; "))}
	}
	return nil
}

func orDefault(dir string) string {
	if dir == "" {
		return DefaultDir
	}
	return dir
}

// errText is the OS error without the path it repeats.
func errText(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
