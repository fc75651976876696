// SPDX-License-Identifier: Apache-2.0

// Package e2e is the end-to-end suite: it deploys the demo from deploy/ into
// a real cluster (KUBECONFIG) and checks what the pod printed. See README.md.
package e2e
