#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# build-k8s.sh: build the local cluster's binaries from the Go module proxy.
#
# Output: ${INCLUSTER_CACHE:-/var/cache/incluster}/k8s-${KUBERNETES_VERSION}/bin/
# (KUBERNETES_VERSION: hack/versions)
#   kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy
#   kubectl kubeadm (for the offline kind node image) etcd coredns
# Versions are pinned by hack/go.mod + go.sum (Kubernetes, etcd) and
# hack/coredns/go.mod + go.sum (CoreDNS). A stamp file records a hash of those
# files and of the Go version; when it matches and every binary exists, nothing
# is built. The first build takes about 10 minutes on 2 cores.
set -euo pipefail
# Kubernetes is built with the machine's own Go, whatever GOTOOLCHAIN the
# caller exports (the Makefile's applies to our code): a new Go would
# otherwise mean a new 15-minute build.
export GOTOOLCHAIN=local

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
SELF=${HACK_DIR}/$(basename "${BASH_SOURCE[0]}")
K8S_VERSION=${KUBERNETES_VERSION}
OUT=${INCLUSTER_CACHE}/k8s-${K8S_VERSION}
BIN=${K8S_BIN}
STAMP=${OUT}/stamp
LOG=${OUT}/build.log

K8S_CMDS=(kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kubectl kubeadm)
ALL_BINS=("${K8S_CMDS[@]}" etcd coredns)

# sudo often drops /usr/local/go/bin from PATH.
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then PATH=/usr/local/go/bin:${PATH}; fi
command -v go >/dev/null || die "go not found in PATH nor in /usr/local/go/bin (Go 1.26 is needed)"

# The stamp names what was built: every input that changes the binaries.
stamp() (
	echo "kubernetes ${K8S_VERSION}"
	go version
	cd "${HACK_DIR}"
	sha256sum go.mod go.sum cmd/etcd/main.go coredns/go.mod coredns/go.sum coredns/main.go
	sed -n '/^# --- build recipe ---$/,$p' "${SELF}" | sha256sum
)

up_to_date() {
	[[ -f ${STAMP} ]] || return 1
	local b
	for b in "${ALL_BINS[@]}"; do
		[[ -x ${BIN}/${b} ]] || return 1
	done
	[[ "$(stamp)" == "$(cat "${STAMP}")" ]]
}

if up_to_date; then
	echo "build-k8s.sh: binaries in ${BIN} are up to date"
	exit 0
fi

# --- build recipe ---
mkdir -p "${OUT}"
TMP=$(mktemp -d "${OUT}/bin.tmp.XXXXXX")
trap 'rm -rf "${TMP}"' EXIT

# Without these the servers report v0.0.0 and kubectl warns about version skew.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
	ldflags+=" -X ${pkg}.gitMajor=1 -X ${pkg}.gitMinor=37"
	ldflags+=" -X ${pkg}.gitTreeState=clean"
	ldflags+=" -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done

export CGO_ENABLED=0 GOFLAGS=-mod=readonly
start=${SECONDS}
echo "build-k8s.sh: building ${ALL_BINS[*]} into ${BIN} (log: ${LOG}); the first build takes about 10 minutes"
: >"${LOG}"
build() { # build DIR ARGS...: one go build, output appended to the log
	local dir=$1
	shift
	if ! (cd "${dir}" && go build -trimpath "$@") >>"${LOG}" 2>&1; then
		tail -n 30 "${LOG}" >&2
		die "go build in ${dir} failed; full log: ${LOG}"
	fi
}
(cd "${HACK_DIR}" && go mod download) >>"${LOG}" 2>&1 || die "go mod download failed in ${HACK_DIR}; log: ${LOG}"
(cd "${HACK_DIR}/coredns" && go mod download) >>"${LOG}" 2>&1 || die "go mod download failed in ${HACK_DIR}/coredns; log: ${LOG}"

# One component at a time, each with its time, so that a first build (about
# 10 minutes) shows it is working; later ones reuse the packages already built.
n=0
component() { # component NAME DIR ARGS...
	local name=$1 t0=${SECONDS}
	shift
	n=$((n + 1))
	echo "build-k8s.sh: [${n}/${#ALL_BINS[@]}] ${name}..."
	build "$@"
	echo "build-k8s.sh: [${n}/${#ALL_BINS[@]}] ${name} built in $((SECONDS - t0)) s ($((SECONDS - start)) s so far)"
}
for c in "${K8S_CMDS[@]}"; do
	component "${c}" "${HACK_DIR}" -ldflags "${ldflags}" -o "${TMP}/${c}" "k8s.io/kubernetes/cmd/${c}"
done
component etcd "${HACK_DIR}" -ldflags "-s -w" -o "${TMP}/etcd" ./cmd/etcd
component coredns "${HACK_DIR}/coredns" -ldflags "-s -w" -o "${TMP}/coredns" .

mkdir -p "${BIN}"
for b in "${ALL_BINS[@]}"; do
	mv -f "${TMP}/${b}" "${BIN}/${b}"
done
stamp >"${STAMP}"
echo "build-k8s.sh: built ${ALL_BINS[*]} in $((SECONDS - start)) s"
