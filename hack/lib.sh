# SPDX-License-Identifier: Apache-2.0
# shellcheck shell=bash
# lib.sh: shell helpers shared by the scripts of hack/, sourced right after
# `set -euo pipefail`. Portable: Linux and macOS (the kind path runs on both).
# It only defines functions, and checks the bash version when sourced:
#
#   bash_ok MAJOR MINOR   whether that bash is new enough (4.4: mapfile,
#                         empty arrays under set -u); on source, this bash is
#                         checked and the script exits naming the fix if not
#   sha256 FILE...        "HASH  FILE" lines: sha256sum, else shasum -a 256 (macOS)
#   go_arch MACHINE       Go's name (GOARCH) of a machine as uname -m or
#                         docker info say it: x86_64 -> amd64, aarch64 -> arm64

bash_ok() { (($1 > 4 || ($1 == 4 && $2 >= 4))); }

if ! bash_ok "${BASH_VERSINFO[0]}" "${BASH_VERSINFO[1]}"; then
	echo "${0##*/}: needs bash 4.4 or newer; this is bash ${BASH_VERSION} (${BASH})." \
		"macOS ships bash 3.2: brew install bash, and put Homebrew's bin before /bin in PATH" \
		"(the scripts run the first bash in PATH)." >&2
	exit 1
fi

sha256() {
	if command -v sha256sum >/dev/null; then
		sha256sum "$@"
	else
		shasum -a 256 "$@"
	fi
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
