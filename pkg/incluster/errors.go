package incluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// explain wraps an error from a request with what was being done and what to
// do about it. The result wraps err, so apierrors.IsForbidden and friends,
// and errors.Is(err, context.DeadlineExceeded), still work.
func explain(err error, op string) error {
	hint := ""
	var cv *tls.CertificateVerificationError
	var ne net.Error
	switch {
	case apierrors.IsUnauthorized(err):
		hint = "the API server rejected the credentials: the service-account token is expired, revoked or for another cluster; check the token mount (or the kubeconfig's user)"
	case apierrors.IsForbidden(err):
		hint = "the service account lacks RBAC permission for this: grant it with a Role and RoleBinding (see deploy/)"
	case apierrors.IsTooManyRequests(err):
		hint = "the API server is shedding load (API Priority and Fairness): retry later"
	case apierrors.IsNotFound(err):
		hint = "the API server does not serve this path: check the host and the server version"
	case apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err):
		hint = "the API server failed: retry later, and check its logs"
	case errors.Is(err, context.Canceled):
	case errors.Is(err, context.DeadlineExceeded) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || (errors.As(err, &ne) && ne.Timeout()):
		hint = "the API server did not answer in time: check that it runs and that no NetworkPolicy blocks egress to it"
	case errors.As(err, &cv) || strings.Contains(err.Error(), "x509:"):
		hint = "the server's certificate is not signed by the configured CA: mount this cluster's CA bundle (ca.crt), or check the host"
	case strings.Contains(err.Error(), "serializer for"):
		hint = "the answer is not JSON: is the host a Kubernetes API server, and not a proxy or login page?"
	case isConnError(err):
		hint = "cannot reach the API server: check the host, port and cluster DNS, and NetworkPolicies that restrict egress"
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Code != 0 {
		code := fmt.Sprintf("HTTP %d", status.Status().Code)
		if hint == "" {
			hint = code
		} else {
			hint = code + ": " + hint
		}
	}
	if hint == "" {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w (%s)", op, err, hint)
}

func isConnError(err error) bool {
	var oe *net.OpError
	var de *net.DNSError
	return errors.As(err, &oe) || errors.As(err, &de)
}

// Explain wraps err, an error of a client-go call, with op (what was being
// done, e.g. "list pods in kube-system") and, for the usual failures (401,
// 403, 404, 429, 5xx, timeouts, TLS and connection errors), the HTTP status
// and what to do about it. The result wraps err: apierrors.IsForbidden and
// errors.Is keep working. Client's own helpers already do this.
func Explain(err error, op string) error {
	if err == nil {
		return nil
	}
	return explain(err, op)
}
