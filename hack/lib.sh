# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# lib.sh: what the scripts of hack/ share, sourced right after
# `set -euo pipefail` as `. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"`.
# Portable: Linux and macOS (the kind path runs on both). On source it checks
# the bash version (the script exits naming the fix if it is too old) and sets:
#
#   HACK_DIR, ROOT        hack/ and the repository, as absolute paths
#   KUBERNETES_VERSION, KIND_VERSION, COREDNS_VERSION
#                         from hack/versions, the one place for them
#   INCLUSTER_CACHE       where built binaries and images are kept
#                         (default /var/cache/incluster)
#   K8S_BIN               the Kubernetes binaries of hack/build-k8s.sh
#   TOOLS                 host-side helper binaries (_output/hack), built
#                         from hack/cmd by build_tool
#
# and defines:
#
#   log, warn, die MSG    "NAME: MSG" on stdout, on stderr, on stderr and
#                         exit 1; NAME is LOG_PREFIX, default the script's name
#   bash_ok MAJOR MINOR   whether that bash is new enough (4.4: mapfile,
#                         empty arrays under set -u)
#   sha256 FILE...        "HASH  FILE" lines: sha256sum, else shasum -a 256 (macOS)
#   build_tool NAME       go build hack/cmd/NAME for this host into TOOLS/NAME
#   go_arch MACHINE       Go's name (GOARCH) of a machine as uname -m or
#                         docker info say it: x86_64 -> amd64, aarch64 -> arm64

bash_ok() { (($1 > 4 || ($1 == 4 && $2 >= 4))); }

if ! bash_ok "${BASH_VERSINFO[0]}" "${BASH_VERSINFO[1]}"; then
	echo "${0##*/}: needs bash 4.4 or newer; this is bash ${BASH_VERSION} (${BASH})." \
		"macOS ships bash 3.2: brew install bash, and put Homebrew's bin before /bin in PATH" \
		"(the scripts run the first bash in PATH)." >&2
	exit 1
fi

HACK_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # ROOT and K8S_BIN are for the scripts that source this
ROOT=$(cd "${HACK_DIR}/.." && pwd)
# shellcheck source=hack/versions
. "${HACK_DIR}/versions"
INCLUSTER_CACHE=${INCLUSTER_CACHE:-/var/cache/incluster}
# shellcheck disable=SC2034
K8S_BIN=${INCLUSTER_CACHE}/k8s-${KUBERNETES_VERSION}/bin
TOOLS=${ROOT}/_output/hack

LOG_PREFIX=${LOG_PREFIX:-${0##*/}}
log() { echo "${LOG_PREFIX}: $*"; }
warn() { echo "${LOG_PREFIX}: $*" >&2; }
die() {
	echo "${LOG_PREFIX}: $*" >&2
	exit 1
}

sha256() {
	if command -v sha256sum >/dev/null; then
		sha256sum "$@"
	else
		shasum -a 256 "$@"
	fi
}

build_tool() {
	# shellcheck source=hack/go-env.sh
	. "${HACK_DIR}/go-env.sh"
	mkdir -p "${TOOLS}"
	(cd "${HACK_DIR}" && CGO_ENABLED=0 go build -trimpath -o "${TOOLS}/$1" "./cmd/$1") ||
		die "go build ./cmd/$1 (in ${HACK_DIR}) failed"
}

go_arch() {
	case $1 in
	x86_64 | amd64) echo amd64 ;;
	aarch64 | arm64) echo arm64 ;;
	*)
		echo "${0##*/}: machine '$1' is not supported: linux/amd64 (x86_64) and linux/arm64 (aarch64) are (docs/platforms.md)" >&2
		return 1
		;;
	esac
}
