// SPDX-License-Identifier: Apache-2.0

// Package hint says what to do about an HTTP status the API server
// answered, in one table for package incluster (client-go) and package
// direct (net/http), so that both say the same.
//
// What to do about a 403 depends on what was refused: a Role and RoleBinding
// grant requests in their own namespace only; a cluster-scoped request (a
// cluster-scoped resource such as SelfSubjectReview, or a resource across
// all namespaces) and a non-resource URL (/api, /version) take a
// ClusterRole and ClusterRoleBinding. ForPath tells them apart by the
// request's path, as the API server does.
package hint

import (
	"net/http"
	"strings"
)

// Scope is what a request is about, as RBAC sees it.
type Scope int

const (
	// Unknown: the request is not known (Explain of a caller's error).
	Unknown Scope = iota
	// NonResource: a path that is no API resource, such as /api or /version.
	NonResource
	// Cluster: a cluster-scoped resource, or a resource in every namespace.
	Cluster
	// Namespaced: a resource in one namespace.
	Namespaced
)

// Request is what the hints need to know of a request.
type Request struct {
	Scope     Scope
	Namespace string // with Namespaced
}

// ForPath classifies an API path (query and fragment ignored) the way the
// API server's request info does (k8s.io/apiserver/pkg/endpoints/request):
// /api/VERSION/RESOURCE... and /apis/GROUP/VERSION/RESOURCE... are
// resource requests, in namespace NS when RESOURCE is "namespaces/NS"
// (after an optional "watch/" or "proxy/"); any other path is a
// non-resource URL.
func ForPath(path string) Request {
	if i := strings.IndexAny(path, "?#"); i >= 0 {
		path = path[:i]
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:] // api, VERSION
	case len(parts) >= 4 && parts[0] == "apis":
		parts = parts[3:] // apis, GROUP, VERSION
	default:
		return Request{Scope: NonResource}
	}
	if (parts[0] == "watch" || parts[0] == "proxy") && len(parts) > 1 {
		parts = parts[1:]
	}
	if parts[0] == "namespaces" && len(parts) > 1 && parts[1] != "" {
		return Request{Scope: Namespaced, Namespace: parts[1]}
	}
	return Request{Scope: Cluster}
}

// Status returns what to do about an answer with HTTP status code to req,
// or "" when there is nothing useful to say.
func Status(code int, req Request) string {
	switch code {
	case http.StatusUnauthorized:
		return "the API server rejected the credentials: the service-account token is expired, revoked or for another cluster; check the token mount (or the kubeconfig's user)"
	case http.StatusForbidden:
		return forbidden(req)
	case http.StatusNotFound:
		return "the API server does not serve this path: check the host and the server version"
	case http.StatusTooManyRequests:
		return "the API server is shedding load (API Priority and Fairness): retry later"
	case http.StatusInternalServerError, http.StatusServiceUnavailable:
		return "the API server failed: retry later, and check its logs"
	}
	return ""
}

func forbidden(req Request) string {
	const lacks = "the service account lacks RBAC permission"
	switch req.Scope {
	case NonResource:
		return lacks + " for this non-resource URL: grant it with a ClusterRole (nonResourceURLs) and ClusterRoleBinding; a Role and RoleBinding cannot"
	case Cluster:
		return lacks + " for this cluster-scoped request: grant it with a ClusterRole and ClusterRoleBinding; a Role and RoleBinding cannot"
	case Namespaced:
		return lacks + " in namespace " + req.Namespace + ": grant it with a Role and RoleBinding in " + req.Namespace + " (see deploy/)"
	}
	return lacks + " for this: grant it with a Role and RoleBinding in the namespace, or with a ClusterRole and ClusterRoleBinding for a cluster-scoped resource or a non-resource URL (see deploy/)"
}
