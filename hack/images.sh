#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# images.sh [demo|all]: write container images as docker-archive tarballs into
# _output/images/ without Docker or a registry (tool: hack/cmd/mkimage).
#
#   demo.tar      ${DEMO_IMAGE:-incluster-demo:dev}  ./cmd/demo, entrypoint /demo
#   example-controller.tar  ${CONTROLLER_IMAGE:-incluster-example-controller:dev}
#                 ./cmd/example-controller, entrypoint /example-controller
#                 (built with demo.tar, by `demo` and `all`)
#   pause.tar     incluster.local/pause:v1           hack/cmd/pause (pod sandbox)
#   coredns.tar   incluster.local/coredns:v1.15.0    hack/coredns
#   kubectl.tar   incluster.local/kubectl:v1.37.2    kubectl, entrypoint /bin/kubectl (as the official image)
#   dnscheck.tar  incluster.local/dnscheck:v1        hack/cmd/dnscheck
#
# Every image is one static binary, user 65532:65532, no shell. The same
# sources give the same image digest (printed, and kept in <name>.digest).
# `all` builds the Kubernetes binaries first if needed (hack/build-k8s.sh).
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "${HACK_DIR}/.." && pwd)
OUT=${ROOT}/_output/images
TOOLS=${ROOT}/_output/hack # host-side helper binaries (mkimage, dnscheck)
K8S_BIN=${INCLUSTER_CACHE:-/var/cache/incluster}/k8s-v1.37.2/bin
DEMO_IMAGE=${DEMO_IMAGE:-incluster-demo:dev}
CONTROLLER_IMAGE=${CONTROLLER_IMAGE:-incluster-example-controller:dev}

die() { echo "images.sh: $*" >&2; exit 1; }

what=${1:-demo}
case ${what} in
demo | all) ;;
*) die "usage: images.sh [demo|all] (got '${what}')" ;;
esac
# shellcheck source=hack/go-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"
command -v go >/dev/null || die "go not found in PATH nor in /usr/local/go/bin (Go 1.26 is needed)"

# Reproducible static builds: no VCS stamp, no paths, no cgo.
gobuild() { # gobuild DIR OUT PKG
	(cd "$1" && CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$2" "$3") ||
		die "go build $3 (in $1) failed"
}

mkdir -p "${OUT}" "${TOOLS}"
gobuild "${HACK_DIR}" "${TOOLS}/mkimage" ./cmd/mkimage

image() { # image NAME REF BINARY [mkimage flags...]
	local nm=$1 ref=$2 bin=$3
	shift 3
	local line input
	# Same binary, reference and flags as the tarball's: nothing to do.
	input="$(sha256sum "${bin}" "${TOOLS}/mkimage" | cut -d' ' -f1 | tr '\n' ' ')${ref} $*"
	if [[ -f ${OUT}/${nm}.tar && -f ${OUT}/${nm}.input && $(<"${OUT}/${nm}.input") == "${input}" ]]; then
		echo "images.sh: ${OUT}/${nm}.tar ${ref} $(<"${OUT}/${nm}.digest") (up to date)"
		return 0
	fi
	rm -f "${OUT}/${nm}.input"
	line=$("${TOOLS}/mkimage" -binary "${bin}" -ref "${ref}" -out "${OUT}/${nm}.tar" "$@") ||
		die "mkimage failed for ${nm} (${ref})"
	echo "${line##* }" >"${OUT}/${nm}.digest"
	echo "${input}" >"${OUT}/${nm}.input"
	echo "images.sh: ${OUT}/${nm}.tar ${ref} ${line##* }"
}

build_demo() {
	if [[ ! -d ${ROOT}/cmd/demo ]]; then
		if [[ ${what} == demo ]]; then
			die "${ROOT}/cmd/demo does not exist"
		fi
		echo "images.sh: ${ROOT}/cmd/demo does not exist yet: no demo image" >&2
		return 0
	fi
	gobuild "${ROOT}" "${TOOLS}/demo" ./cmd/demo
	image demo "${DEMO_IMAGE}" "${TOOLS}/demo" -path /demo
}

build_controller() {
	if [[ ! -d ${ROOT}/cmd/example-controller ]]; then
		echo "images.sh: ${ROOT}/cmd/example-controller does not exist: no example-controller image" >&2
		return 0
	fi
	gobuild "${ROOT}" "${TOOLS}/example-controller" ./cmd/example-controller
	image example-controller "${CONTROLLER_IMAGE}" "${TOOLS}/example-controller" -path /example-controller
}

build_demo
build_controller
if [[ ${what} == all ]]; then
	"${HACK_DIR}/build-k8s.sh"
	gobuild "${HACK_DIR}" "${TOOLS}/pause" ./cmd/pause
	gobuild "${HACK_DIR}" "${TOOLS}/dnscheck" ./cmd/dnscheck
	image pause incluster.local/pause:v1 "${TOOLS}/pause" -path /pause
	image dnscheck incluster.local/dnscheck:v1 "${TOOLS}/dnscheck" -path /dnscheck
	image coredns incluster.local/coredns:v1.15.0 "${K8S_BIN}/coredns" -path /coredns
	image kubectl incluster.local/kubectl:v1.37.2 "${K8S_BIN}/kubectl" -path /bin/kubectl
fi
