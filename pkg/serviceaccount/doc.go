// SPDX-License-Identifier: Apache-2.0

// Package serviceaccount reads what Kubernetes mounts into a pod for its
// service account: the token, the cluster's CA bundle and the namespace, from
// /var/run/secrets/kubernetes.io/serviceaccount, plus the
// KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT variables the kubelet
// sets in every container.
//
// It depends on the standard library and k8s.io/apimachinery's validation
// only, so both the client-go layer (package incluster) and the plain net/http
// client (package direct) use it, and both report the same problems in the
// same words. Every error it returns is a *ConfigError: the readers' name the
// file or variable at fault and say what to do about it; those of ParseCA and
// ValidateNamespace, which check values, give the reason alone.
package serviceaccount
