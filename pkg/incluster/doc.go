// SPDX-License-Identifier: Apache-2.0

// Package incluster is a thin layer over client-go for programs that run in a
// Kubernetes pod and talk to the API server of their own cluster.
//
// New builds one *rest.Config with rest.InClusterConfig, after checking the
// service-account mount so that failures name the missing file or variable
// and say what to do. From that config it builds one HTTP client (one
// connection pool; to the API server, one HTTP/2 connection) that every
// request goes through, and it resolves the pod's namespace (POD_NAMESPACE,
// then the service-account namespace file; never a silent "default"). Package
// clients builds client-go's typed clientset and discovery client on the
// same config and HTTP client; it is apart so that programs which do not
// need them do not pay for them (for the demo: 27.3 MB and 14.4 ms of package
// init with them, 11.6 MB and 2.7 ms without).
//
// On top it offers what a controller author asks for next: the server's /api
// document exactly as the server sends it (APIVersions), the server version,
// who the pod is (WhoAmI, a SelfSubjectReview) and access checks (Can, a
// SelfSubjectAccessReview). Every call takes a context and has a timeout.
//
// When the cluster's CA is rotated, a request that fails with "certificate
// signed by unknown authority" makes the Client read its CA file (ca.crt, or
// a kubeconfig's certificate-authority file) again at once, at most once a
// second, where client-go alone waits up to 5 minutes; if the file holds a
// new CA bundle, the Client swaps in a transport that trusts it and retries
// the request once, for the clientset, discovery and informers on its HTTP
// client too. A file that is missing or not a CA bundle keeps the last good
// CA in use, and the error names the file.
//
// Client settings differ from client-go's defaults on purpose: client-side
// rate limiting is off (QPS -1), as in controller-runtime, because API
// Priority and Fairness on the server protects it better than a 5 QPS token
// bucket in every client; WithRateLimit turns it back on.
//
// Outside a cluster, WithKubeconfig uses a kubeconfig file instead, and
// WithProxy the plain-HTTP URL of a "kubectl proxy" sidecar. Through the
// sidecar, requests are plain HTTP/1.1 on the pod's loopback, one connection
// per request in flight (kept alive and reused); the sidecar holds the one
// connection to the API server. There is no silent fallback from one way to
// another.
package incluster
