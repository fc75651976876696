#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# versions.sh check: every file that must pin a version of hack/versions pins
# that one (make lint). Go modules and manifests cannot read hack/versions,
# so they keep their own copy, and this check keeps the copies equal:
#   hack/go.mod                   k8s.io/kubernetes KUBERNETES_VERSION, its
#                                 staging modules replaced at v0.MINOR.PATCH,
#                                 sigs.k8s.io/kind KIND_VERSION
#   hack/coredns/go.mod           github.com/coredns/coredns COREDNS_VERSION
#   hack/manifests/coredns.yaml   incluster.local/coredns:COREDNS_VERSION
#   deploy/sidecar/pod-patch.yaml registry.k8s.io/kubectl:KUBERNETES_VERSION
# Exit 1, naming each file and what it should say, if one differs.
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[[ ${1:-} == check ]] || die "usage: versions.sh check"
staging=v0.${KUBERNETES_VERSION#v1.}
bad=0
want() { # want FILE EXTENDED-REGEX WHAT
	grep -Eq -- "$2" "${ROOT}/$1" || { echo "versions.sh: $1 does not say $3 (hack/versions)"; bad=1; }
}
q() { echo "${1//./\\.}"; } # a version as a regular expression
want hack/go.mod "^[[:space:]]+k8s\.io/kubernetes $(q "${KUBERNETES_VERSION}")( |$)" "k8s.io/kubernetes ${KUBERNETES_VERSION}"
want hack/go.mod "^[[:space:]]+sigs\.k8s\.io/kind $(q "${KIND_VERSION}")( |$)" "sigs.k8s.io/kind ${KIND_VERSION}"
want hack/coredns/go.mod "github\.com/coredns/coredns $(q "${COREDNS_VERSION}")( |$)" "github.com/coredns/coredns ${COREDNS_VERSION}"
want hack/manifests/coredns.yaml "image: incluster\.local/coredns:$(q "${COREDNS_VERSION}")$" "image: incluster.local/coredns:${COREDNS_VERSION}"
want deploy/sidecar/pod-patch.yaml "image: registry\.k8s\.io/kubectl:$(q "${KUBERNETES_VERSION}")$" "image: registry.k8s.io/kubectl:${KUBERNETES_VERSION}"
# Every staging module that hack/go.mod replaces, at the matching v0 version.
while read -r mod _ _ v; do
	[[ ${v} == "${staging}" ]] || { echo "versions.sh: hack/go.mod replaces ${mod} with ${v}, want ${staging} (KUBERNETES_VERSION ${KUBERNETES_VERSION})"; bad=1; }
done < <(grep -E '^[[:space:]]+k8s\.io/[a-z-]+ => k8s\.io/' "${ROOT}/hack/go.mod")
((bad == 0)) || exit 1
echo "versions.sh: hack/go.mod, hack/coredns/go.mod and the manifests pin the versions of hack/versions"
