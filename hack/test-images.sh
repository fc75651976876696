#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test-images.sh: the demo and example-controller images for other platforms
# than this host's, as the kind path builds them for an arm64 node or with
# PLATFORMS=linux/amd64,linux/arm64. No root, no cluster, no Docker; part of
# `make test` (Linux and macOS). Writes only under a temporary folder
# (images.sh's IMAGES_OUT).
#
#   arm64   PLATFORMS=linux/arm64 images.sh demo; mkimage -inspect reads each
#           tarball back (go-containerregistry) and checks it: a docker-archive
#           whose one image says linux/arm64 and whose entrypoint is an
#           EM_AARCH64 binary
#   multi   PLATFORMS=linux/amd64,linux/arm64: one OCI image index each,
#           named for containerd, with both platforms, each binary of its
#           platform's ELF machine
#   qemu    the arm64 demo binary of the image (same SHA-256) runs --help:
#           natively on an arm64 host, else under qemu-aarch64-static
#           (Debian's qemu-user-static; called directly, no binfmt needed).
#           Skipped, saying so, only when that is not installed (.ci/run
#           installs it).
#   lib     hack/lib.sh: sha256 without sha256sum (as on macOS), go_arch,
#           bash_ok
# The first run builds the Go packages for arm64 (about 2 minutes on 2 cores);
# later runs take seconds.
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # HACK_DIR, ROOT, hack/versions, log/warn/die; bash 4.4+
MKIMAGE=${ROOT}/_output/hack/mkimage # built by images.sh
WORK=$(mktemp -d "${TMPDIR:-/tmp}/incluster-test-images.XXXXXX")
trap 'rm -rf "${WORK}"' EXIT
# shellcheck source=hack/go-env.sh
. "${HACK_DIR}/go-env.sh"

failures=0 passes=0 skips=0
pass() { echo "PASS: $*"; passes=$((passes + 1)); }
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
skip() { echo "SKIP: $*"; skips=$((skips + 1)); }
# expect NAME TEXT LINE-REGEX...: each regex matches a line of TEXT, and
# TEXT has no other line than the header.
expect() {
	local name=$1 text=$2 re
	shift 2
	for re in "$@"; do
		if ! grep -qE -- "${re}" <<<"${text}"; then
			fail "${name}: no line matches '${re}' in:"$'\n'"${text}"
			return 0
		fi
	done
	if (($(wc -l <<<"${text}") != $# )); then
		fail "${name}: $(wc -l <<<"${text}") lines, want $#:"$'\n'"${text}"
		return 0
	fi
	pass "${name}"
}

# build NAME PLATFORMS: images.sh demo into ${WORK}/NAME.
build() {
	local out rc=0
	out=$(IMAGES_OUT=${WORK}/$1 PLATFORMS=$2 "${HACK_DIR}/images.sh" demo 2>&1) || rc=$?
	if ((rc != 0)); then
		fail "PLATFORMS=$2 images.sh demo: exit ${rc}:"$'\n'"${out}"
		return 1
	fi
	pass "PLATFORMS=$2 images.sh demo"
	printf '    %s\n' "${out//$'\n'/$'\n'    }"
}

# inspect TAR: mkimage -inspect's lines, or a failure.
inspect() {
	local out
	if ! out=$("${MKIMAGE}" -inspect "$1" 2>&1); then
		fail "mkimage -inspect $1: ${out}"
		return 1
	fi
	echo "${out}"
}

hex='[0-9a-f]{64}'
arm64_demo_sum=
if build arm64 linux/arm64; then
	for nm in demo example-controller; do
		tar=${WORK}/arm64/${nm}.tar
		out=$(inspect "${tar}") || continue
		expect "arm64 ${nm}: docker-archive, linux/arm64 config, EM_AARCH64 entrypoint" "${out}" \
			"^${tar}: docker-archive image sha256:${hex} incluster-(demo|example-controller):dev$" \
			"^  linux/arm64 sha256:${hex} /${nm} EM_AARCH64 sha256:${hex}$"
		digest=$(<"${WORK}/arm64/${nm}.digest")
		if grep -qF "image ${digest} " <<<"${out}"; then
			pass "arm64 ${nm}: images.sh's digest is the image's"
		else
			fail "arm64 ${nm}: ${nm}.digest ${digest} is not the image's:"$'\n'"${out}"
		fi
	done
	arm64_demo_sum=$(inspect "${WORK}/arm64/demo.tar" | sed -nE 's#^  linux/arm64 .* /demo EM_AARCH64 sha256:##p')
fi

if build multi linux/amd64,linux/arm64; then
	for nm in demo example-controller; do
		tar=${WORK}/multi/${nm}.tar
		out=$(inspect "${tar}") || continue
		expect "multi ${nm}: one index, linux/amd64 and linux/arm64" "${out}" \
			"^${tar}: oci-layout index sha256:${hex} docker.io/library/incluster-(demo|example-controller):dev$" \
			"^  linux/amd64 sha256:${hex} /${nm} EM_X86_64 sha256:${hex}$" \
			"^  linux/arm64 sha256:${hex} /${nm} EM_AARCH64 sha256:${hex}$"
		# The arm64 binary is the one of the arm64-only build (same sources).
		if [[ ${nm} == demo && -n ${arm64_demo_sum} ]]; then
			if grep -qE "^  linux/arm64 .* sha256:${arm64_demo_sum}$" <<<"${out}"; then
				pass "multi demo: its arm64 binary is the arm64 image's"
			else
				fail "multi demo: its arm64 binary differs from the arm64 image's (${arm64_demo_sum})"
			fi
		fi
	done
fi

# The arm64 demo binary that is in the image: the only arm64 demo built.
if [[ -n ${arm64_demo_sum} ]]; then
	bin=
	while IFS= read -r f; do
		[[ $(sha256 "${f}" | cut -d' ' -f1) == "${arm64_demo_sum}" ]] && bin=${f}
	done < <(find "${WORK}/arm64/bin" -type f -name demo)
	runner=() native=no
	if [[ $(go env GOHOSTOS)/$(go env GOHOSTARCH) == linux/arm64 ]]; then
		native=yes
	elif command -v qemu-aarch64-static >/dev/null; then
		runner=(qemu-aarch64-static)
	elif command -v qemu-aarch64 >/dev/null; then
		runner=(qemu-aarch64)
	fi
	if [[ -z ${bin} ]]; then
		fail "no demo binary under ${WORK}/arm64/bin has the image's SHA-256 ${arm64_demo_sum}"
	elif [[ ${native} == no && ${#runner[@]} -eq 0 ]]; then
		skip "the arm64 demo binary: no qemu-aarch64-static here (Debian, Ubuntu: apt-get install qemu-user-static)"
	elif out=$("${runner[@]}" "${bin}" --help 2>&1) && [[ ${out} == *demo* ]]; then
		pass "the arm64 demo binary of the image runs --help ${runner[*]:+under ${runner[*]}}"
	else
		fail "the arm64 demo binary ${runner[*]:+under ${runner[*]}}: --help failed:"$'\n'"${out}"
	fi
fi

# hack/lib.sh, as a Mac runs it: no sha256sum.
printf 'incluster\n' >"${WORK}/f"
want=d5f35510590553462522b5dc7cc413e20b4d76474747bff34608a1885c636a34 # printf 'incluster\n' | sha256sum
mkdir -p "${WORK}/mac-bin" # a PATH with shasum and no sha256sum
if p=$(command -v shasum); then ln -s "${p}" "${WORK}/mac-bin/shasum"; fi
if [[ ! -e ${WORK}/mac-bin/shasum ]]; then
	skip "lib.sh sha256 without sha256sum: no shasum here"
elif got=$(PATH=${WORK}/mac-bin sha256 "${WORK}/f") && [[ ${got} == "${want}  ${WORK}/f" ]]; then
	pass "lib.sh sha256 without sha256sum (shasum -a 256, as on macOS)"
else
	fail "lib.sh sha256 without sha256sum: got '${got:-}', want '${want}  ${WORK}/f'"
fi
arch_ok=1
for c in x86_64=amd64 amd64=amd64 aarch64=arm64 arm64=arm64; do
	[[ $(go_arch "${c%=*}") == "${c#*=}" ]] || { fail "lib.sh go_arch ${c%=*}: want ${c#*=}"; arch_ok=0; }
done
if go_arch riscv64 >/dev/null 2>&1; then fail "lib.sh go_arch riscv64: no error"; arch_ok=0; fi
((arch_ok)) && pass "lib.sh go_arch (x86_64, aarch64; riscv64 refused)"
if bash_ok 5 0 && bash_ok 4 4 && ! bash_ok 4 3 && ! bash_ok 3 2; then
	pass "lib.sh bash_ok (3.2 and 4.3 refused, 4.4 and 5.0 accepted)"
else
	fail "lib.sh bash_ok"
fi

echo "test-images.sh: ${passes} passed, ${failures} failed, ${skips} skipped"
((failures == 0))
