// SPDX-License-Identifier: Apache-2.0

package incluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/incluster/incluster/pkg/internal/hint"
)

// explain wraps an error from a request with what was being done and what to
// do about it. req says what the request was about (hint.ForPath), which
// decides the 403 hint. The result wraps err, so apierrors.IsForbidden and
// friends, and errors.Is(err, context.DeadlineExceeded), still work.
//
// Errors are told apart by their types, never by their text. client-go
// gives no type to an answer it cannot decode (a typed client given HTML
// says "serializer for text/html doesn't exist", an *errors.errorString;
// TestExplainNotJSON), so such errors get no hint; the helpers decode
// their answers themselves and say when one is not JSON.
func explain(err error, op string, req hint.Request) error {
	msg := ""
	var (
		unknownCA x509.UnknownAuthorityError // the x509 errors are values
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
		verify    *tls.CertificateVerificationError
		ne        net.Error
	)
	switch {
	case apierrors.IsUnauthorized(err):
		msg = hint.Status(http.StatusUnauthorized, req)
	case apierrors.IsForbidden(err):
		msg = hint.Status(http.StatusForbidden, req)
	case apierrors.IsTooManyRequests(err):
		msg = hint.Status(http.StatusTooManyRequests, req)
	case apierrors.IsNotFound(err):
		msg = hint.Status(http.StatusNotFound, req)
	case apierrors.IsInternalError(err), apierrors.IsServiceUnavailable(err):
		msg = hint.Status(http.StatusInternalServerError, req)
	case errors.Is(err, context.Canceled):
	case errors.Is(err, context.DeadlineExceeded) || apierrors.IsTimeout(err) || apierrors.IsServerTimeout(err) || (errors.As(err, &ne) && ne.Timeout()):
		msg = "the API server did not answer in time: check that it runs and that no NetworkPolicy blocks egress to it"
	case errors.As(err, &hostname):
		msg = "the server's certificate is not for this host name: use a name or address of the API server that its certificate lists (kubernetes.default.svc, or KUBERNETES_SERVICE_HOST)"
	case errors.As(err, &invalid):
		msg = "the server's certificate is not valid (expired, not yet valid, or not for serving): check the API server's certificate and this machine's clock"
	case errors.As(err, &unknownCA), errors.As(err, &verify):
		msg = "the server's certificate is not signed by the configured CA: mount this cluster's CA bundle (ca.crt), or check the host"
	case isConnError(err):
		msg = "cannot reach the API server: check the host, port and cluster DNS, and NetworkPolicies that restrict egress"
	}
	var status apierrors.APIStatus
	if errors.As(err, &status) && status.Status().Code != 0 {
		code := fmt.Sprintf("HTTP %d", status.Status().Code)
		if msg == "" {
			msg = code
		} else {
			msg = code + ": " + msg
		}
	}
	if msg == "" {
		return fmt.Errorf("%s: %w", op, err)
	}
	return fmt.Errorf("%s: %w (%s)", op, err, msg)
}

func isConnError(err error) bool {
	var oe *net.OpError
	var de *net.DNSError
	return errors.As(err, &oe) || errors.As(err, &de)
}

// Explain wraps err, an error of a client-go call, with op (what was being
// done, e.g. "list pods in kube-system") and, for the usual failures (401,
// 403, 404, 429, 5xx, timeouts, TLS and connection errors), the HTTP status
// and what to do about it. Explain does not know what the call asked for,
// so its 403 hint names both grants: a Role and RoleBinding for a namespace,
// a ClusterRole and ClusterRoleBinding for cluster-scoped resources and
// non-resource URLs. The result wraps err: apierrors.IsForbidden and
// errors.Is keep working. Client's own helpers already do this.
func Explain(err error, op string) error {
	if err == nil {
		return nil
	}
	return explain(err, op, hint.Request{})
}
