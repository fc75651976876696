#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# images.sh [demo|all]: write container images as tarballs into
# _output/images/ without Docker or a registry (tool: hack/cmd/mkimage).
#
#   demo.tar      ${DEMO_IMAGE:-incluster-demo:dev}  ./cmd/demo, entrypoint /demo
#   example-controller.tar  ${CONTROLLER_IMAGE:-incluster-example-controller:dev}
#                 ./cmd/example-controller, entrypoint /example-controller
#   scrape.tar    incluster.local/scrape:v1          hack/cmd/scrape, entrypoint /scrape
#                 (the e2e suite's HTTPS scraper pod)
#                 (these three: built by `demo` and by `all`)
#   pause.tar     incluster.local/pause:v1           hack/cmd/pause (pod sandbox)
#   coredns.tar   incluster.local/coredns:COREDNS_VERSION    hack/coredns
#   kubectl.tar   incluster.local/kubectl:KUBERNETES_VERSION kubectl, entrypoint /bin/kubectl (as the official image)
# (the versions: hack/versions)
#   dnscheck.tar  incluster.local/dnscheck:v1        hack/cmd/dnscheck
#
# Platforms: every image is a Linux image (GOOS=linux, GOARCH given,
# CGO_ENABLED=0), whatever the host, and its config says which (mkimage
# checks the binary's ELF machine against it).
#   - demo, example-controller and scrape: for PLATFORMS, comma-separated,
#     default linux/<this host's architecture> (the local cluster's);
#     hack/kind.sh passes the kind node's. One platform gives a
#     docker-archive tarball; several (PLATFORMS=linux/amd64,linux/arm64) one
#     multi-platform image index in an OCI image-layout tarball, which
#     `kind load image-archive` and `ctr images import` take
#     (docs/platforms.md).
#   - pause, coredns, kubectl, dnscheck (`all`): this host's platform only.
#     They serve the local cluster and the offline kind node image, which
#     run here (Linux), and coredns and kubectl come from hack/build-k8s.sh,
#     which builds for the host.
# Binaries for this host go to _output/hack/ (make bench runs the demo
# there), for another platform to _output/hack/linux-ARCH/. IMAGES_OUT=DIR
# writes the tarballs to DIR and the binaries to DIR/bin instead.
#
# Every image is one static binary, user 65532:65532, no shell. The same
# sources give the same image digest (printed, and kept in <name>.digest).
# `all` builds the Kubernetes binaries first if needed (hack/build-k8s.sh).
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # HACK_DIR, ROOT, hack/versions, log/warn/die; bash 4.4+
OUT=${IMAGES_OUT:-${ROOT}/_output/images}
BIN=${IMAGES_OUT:+${IMAGES_OUT}/bin}
BIN=${BIN:-${TOOLS}} # the images' binaries
DEMO_IMAGE=${DEMO_IMAGE:-incluster-demo:dev}
CONTROLLER_IMAGE=${CONTROLLER_IMAGE:-incluster-example-controller:dev}


what=${1:-demo}
case ${what} in
demo | all) ;;
*) die "usage: images.sh [demo|all] (got '${what}')" ;;
esac
# shellcheck source=hack/go-env.sh
. "${HACK_DIR}/go-env.sh"
command -v go >/dev/null || die "go not found in PATH nor in /usr/local/go/bin (Go 1.26 is needed)"

# This host, as Go names it (not GOOS/GOARCH: those may be set for a cross build).
{ read -r HOST_OS && read -r HOST_ARCH; } < <(go env GOHOSTOS GOHOSTARCH) || die "go env GOHOSTOS GOHOSTARCH failed"
PLATFORMS=${PLATFORMS:-linux/${HOST_ARCH}}
PLATFORMS=${PLATFORMS// /}
IFS=, read -r -a PLATFORM_LIST <<<"${PLATFORMS}"
for p in "${PLATFORM_LIST[@]}"; do
	[[ ${p} =~ ^linux/(amd64|arm64)(/v8)?$ && ! (${p} == linux/amd64/v8) ]] ||
		die "PLATFORMS=${PLATFORMS}: '${p}' is not a supported platform (linux/amd64, linux/arm64; the images run on Linux nodes whatever the host)"
done
((${#PLATFORM_LIST[@]} > 0)) || die "PLATFORMS is empty"
if [[ ${what} == all && ${HOST_OS} != linux ]]; then
	die "images.sh all is for the local cluster and the offline kind node image, which run on Linux hosts (this is ${HOST_OS}); the kind path needs only images.sh demo"
fi

# Reproducible static builds: no VCS stamp, no paths, no cgo, for the
# platform given (OS/ARCH[/VARIANT]).
gobuild() { # gobuild DIR OUT PKG PLATFORM
	local os=${4%%/*} arch=${4#*/}
	arch=${arch%%/*}
	(cd "$1" && CGO_ENABLED=0 GOOS=${os} GOARCH=${arch} go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$2" "$3") ||
		die "go build $3 for $4 (in $1) failed"
}

# bin_path NAME PLATFORM: where the binary NAME for PLATFORM goes.
bin_path() {
	if [[ $2 == "linux/${HOST_ARCH}" && ${HOST_OS} == linux ]]; then
		echo "${BIN}/$1"
	else
		echo "${BIN}/${2//\//-}/$1"
	fi
}

mkdir -p "${OUT}" "${TOOLS}"
gobuild "${HACK_DIR}" "${TOOLS}/mkimage" ./cmd/mkimage "${HOST_OS}/${HOST_ARCH}"

image() { # image NAME REF MKIMAGE-FLAGS...: -platform, -binary..., -path
	local nm=$1 ref=$2
	shift 2
	local line input a prev='' files=("${TOOLS}/mkimage") platform=''
	for a in "$@"; do
		case ${prev} in
		-binary) files+=("${a}") ;;
		-platform) platform=${a} ;;
		esac
		prev=${a}
	done
	# Same binaries, mkimage, reference and flags as the tarball's: nothing to do.
	input="$(sha256 "${files[@]}" | cut -d' ' -f1 | tr '\n' ' ')${ref} $*"
	if [[ -f ${OUT}/${nm}.tar && -f ${OUT}/${nm}.input && $(<"${OUT}/${nm}.input") == "${input}" ]]; then
		echo "images.sh: ${OUT}/${nm}.tar ${ref} $(<"${OUT}/${nm}.digest") ${platform} (up to date)"
		return 0
	fi
	rm -f "${OUT}/${nm}.input"
	line=$("${TOOLS}/mkimage" -ref "${ref}" -out "${OUT}/${nm}.tar" "$@") ||
		die "mkimage failed for ${nm} (${ref})"
	echo "${line##* }" >"${OUT}/${nm}.digest"
	echo "${input}" >"${OUT}/${nm}.input"
	echo "images.sh: ${OUT}/${nm}.tar ${ref} ${line##* } ${platform}"
}

# go_image NAME REF DIR PKG: the binary NAME (go build PKG in DIR) for each of
# PLATFORMS, then its image, entrypoint /NAME.
go_image() {
	local nm=$1 ref=$2 dir=$3 pkg=$4 p bin bins=()
	for p in "${PLATFORM_LIST[@]}"; do
		bin=$(bin_path "${nm}" "${p}")
		mkdir -p "$(dirname "${bin}")"
		gobuild "${dir}" "${bin}" "${pkg}" "${p}"
		bins+=(-binary "${bin}")
	done
	image "${nm}" "${ref}" -platform "${PLATFORMS}" "${bins[@]}" -path "/${nm}"
}

build_demo() {
	if [[ ! -d ${ROOT}/cmd/demo ]]; then
		if [[ ${what} == demo ]]; then
			die "${ROOT}/cmd/demo does not exist"
		fi
		echo "images.sh: ${ROOT}/cmd/demo does not exist yet: no demo image" >&2
		return 0
	fi
	go_image demo "${DEMO_IMAGE}" "${ROOT}" ./cmd/demo
}

build_controller() {
	if [[ ! -d ${ROOT}/cmd/example-controller ]]; then
		echo "images.sh: ${ROOT}/cmd/example-controller does not exist: no example-controller image" >&2
		return 0
	fi
	go_image example-controller "${CONTROLLER_IMAGE}" "${ROOT}" ./cmd/example-controller
}

build_demo
build_controller
# The e2e suite's scraper pod (hack/cmd/scrape, always there): kind loads it.
go_image scrape incluster.local/scrape:v1 "${HACK_DIR}" ./cmd/scrape
if [[ ${what} == all ]]; then
	# This host's platform only (see the top).
	host=linux/${HOST_ARCH}
	"${HACK_DIR}/build-k8s.sh"
	gobuild "${HACK_DIR}" "${BIN}/pause" ./cmd/pause "${host}"
	gobuild "${HACK_DIR}" "${BIN}/dnscheck" ./cmd/dnscheck "${host}"
	image pause incluster.local/pause:v1 -platform "${host}" -binary "${BIN}/pause" -path /pause
	image dnscheck incluster.local/dnscheck:v1 -platform "${host}" -binary "${BIN}/dnscheck" -path /dnscheck
	image coredns "incluster.local/coredns:${COREDNS_VERSION}" -platform "${host}" -binary "${K8S_BIN}/coredns" -path /coredns
	image kubectl "incluster.local/kubectl:${KUBERNETES_VERSION}" -platform "${host}" -binary "${K8S_BIN}/kubectl" -path /bin/kubectl
fi
