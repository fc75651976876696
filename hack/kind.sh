#!/usr/bin/env bash
# kind.sh up|down|e2e|check: the kind cluster of `make e2e CLUSTER=kind` and
# `hack/demo.sh kind`, made from kind-config.yaml (Kubernetes 1.37, one node).
#
#   up     create the cluster ${KIND_CLUSTER:-incluster} unless it exists, write
#          its kubeconfig to _output/kind.kubeconfig (~/.kube/config is not
#          touched), load the image tarballs of _output/images named in
#          KIND_IMAGES (default: demo; hack/images.sh writes them) into it
#   down   delete the cluster and _output/kind.kubeconfig
#   e2e    up, the suite (hack/e2e.sh suite) against the cluster, down on exit
#          (also on failure or Ctrl-C; KIND_KEEP=1 leaves the cluster up)
#   check  without Docker: kind-config.yaml (or FILE: check [FILE]) loads the
#          way kind loads it and is the cluster the e2e suite expects
#          (hack/cmd/kindcheck)
#
# up, down and e2e need Docker. kind is the one in PATH, else
# _output/bin/kind, built from the Go module proxy (go install
# sigs.k8s.io/kind@KIND_VERSION) when missing or of another version. The node
# image in kind-config.yaml is the one published with KIND_VERSION: change
# both together (hack/go.mod pins the same kind for kindcheck).
# In kind the proxy sidecar uses the official kubectl image (KUBECTL_IMAGE
# below), which the node pulls from registry.k8s.io.
set -euo pipefail

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "${HACK_DIR}/.." && pwd)
KIND_VERSION=v0.33.0
KIND_CLUSTER=${KIND_CLUSTER:-incluster}
KIND_IMAGES=${KIND_IMAGES:-demo}
CONFIG=${ROOT}/kind-config.yaml
KUBECONFIG_OUT=${ROOT}/_output/kind.kubeconfig
IMAGES=${ROOT}/_output/images
BIN=${ROOT}/_output/bin   # kind, when built here
TOOLS=${ROOT}/_output/hack # host-side helper binaries (kindcheck)
KUBECTL_IMAGE=registry.k8s.io/kubectl:v1.37.2
export DEMO_IMAGE=${DEMO_IMAGE:-incluster-demo:dev}

die() { echo "kind.sh: $*" >&2; exit 1; }
warn() { echo "kind.sh: warning: $*" >&2; }

# shellcheck source=hack/go-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"

need_docker() {
	docker info >/dev/null 2>&1 || die "kind needs Docker ('docker info' failed); use CLUSTER=local"
}

kind_version_of() { # kind_version_of BINARY: prints e.g. v0.33.0
	local out
	out=$("$1" version 2>/dev/null) || return 1
	out=${out#kind }
	echo "${out%% *}"
}

KIND=
find_kind() {
	[[ -n ${KIND} ]] && return 0
	if command -v kind >/dev/null; then
		KIND=$(command -v kind)
		local v
		v=$(kind_version_of "${KIND}") || die "${KIND} version failed"
		[[ ${v} == "${KIND_VERSION}" ]] ||
			warn "${KIND} is kind ${v}, kind-config.yaml's node image is the one of kind ${KIND_VERSION}"
		return 0
	fi
	KIND=${BIN}/kind
	if [[ -x ${KIND} && $(kind_version_of "${KIND}" || true) == "${KIND_VERSION}" ]]; then
		return 0
	fi
	command -v go >/dev/null || die "kind is not in PATH and go is not either: cannot build kind ${KIND_VERSION}"
	echo "kind.sh: kind is not in PATH: building kind ${KIND_VERSION} into ${BIN} (Go module proxy)" >&2
	mkdir -p "${BIN}"
	GOBIN=${BIN} CGO_ENABLED=0 go install "sigs.k8s.io/kind@${KIND_VERSION}" ||
		die "go install sigs.k8s.io/kind@${KIND_VERSION} failed"
}

cluster_exists() {
	"${KIND}" get clusters 2>/dev/null | grep -qxF "${KIND_CLUSTER}"
}

check() { # check [FILE]: kind's loader and the project's rules, no Docker
	local file=${1:-${CONFIG}}
	command -v go >/dev/null || die "go not found in PATH nor in /usr/local/go/bin"
	mkdir -p "${TOOLS}"
	(cd "${HACK_DIR}" && CGO_ENABLED=0 go build -o "${TOOLS}/kindcheck" ./cmd/kindcheck) ||
		die "go build ./cmd/kindcheck (in ${HACK_DIR}) failed"
	"${TOOLS}/kindcheck" -name "${KIND_CLUSTER}" -kind-version "${KIND_VERSION}" "${file}"
}

up() {
	need_docker
	check
	find_kind
	# The demo image of this tree, under ${DEMO_IMAGE} (quick when up to date).
	"${HACK_DIR}/images.sh" demo
	local img tars=()
	for img in ${KIND_IMAGES}; do
		[[ -f ${IMAGES}/${img}.tar ]] || die "${IMAGES}/${img}.tar is missing: run hack/images.sh all"
		tars+=("${IMAGES}/${img}.tar")
	done

	mkdir -p "$(dirname "${KUBECONFIG_OUT}")"
	if cluster_exists; then
		echo "kind.sh: cluster ${KIND_CLUSTER} exists"
	else
		"${KIND}" create cluster --name "${KIND_CLUSTER}" --config "${CONFIG}" \
			--kubeconfig "${KUBECONFIG_OUT}" --wait 3m
	fi
	"${KIND}" export kubeconfig --name "${KIND_CLUSTER}" --kubeconfig "${KUBECONFIG_OUT}"
	local tar
	for tar in "${tars[@]}"; do
		echo "kind.sh: loading ${tar}"
		"${KIND}" load image-archive --name "${KIND_CLUSTER}" "${tar}"
	done
	echo "kind.sh: cluster ${KIND_CLUSTER} is up; KUBECONFIG=${KUBECONFIG_OUT}"
}

down() {
	need_docker
	find_kind
	"${KIND}" delete cluster --name "${KIND_CLUSTER}" --kubeconfig "${KUBECONFIG_OUT}"
	rm -f "${KUBECONFIG_OUT}"
}

cleanup() { # EXIT trap of e2e: down, keeping the exit status
	local rc=$?
	trap - EXIT
	(down) || warn "could not delete cluster ${KIND_CLUSTER}"
	exit "${rc}"
}

e2e() {
	need_docker
	if [[ ${KIND_KEEP:-} == 1 ]]; then
		echo "kind.sh: KIND_KEEP=1: the cluster stays up (hack/kind.sh down deletes it)"
	else
		# Whatever happens from here on, the cluster goes; the suite's exit
		# status is the script's.
		trap cleanup EXIT
		trap 'exit 130' INT
		trap 'exit 143' TERM
	fi
	up
	KUBECONFIG=${KUBECONFIG_OUT} KUBECTL_IMAGE=${KUBECTL_IMAGE} "${HACK_DIR}/e2e.sh" suite
}

what=${1:-}
case ${what} in
up | down | e2e) "${what}" ;;
check) check "${2:-}" ;;
*) die "usage: kind.sh up|down|e2e|check [FILE] (got '${what}')" ;;
esac
