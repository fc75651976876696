#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# debs.sh PACKAGE...: install those of the Debian packages that are missing
# (apt-get, no recommends), quietly; on failure, say which and where the log
# is. Root. Used by .ci/run and by every script in hack/ that needs packages.
set -euo pipefail

missing=()
for p in "$@"; do
	dpkg-query -W -f='${Status}' "${p}" 2>/dev/null | grep -q 'install ok installed' || missing+=("${p}")
done
((${#missing[@]})) || exit 0
[[ ${EUID} -eq 0 ]] || { echo "debs.sh: missing Debian packages ${missing[*]}: run as root, or apt-get install them" >&2; exit 1; }
log=/tmp/incluster-apt.log
echo "debs.sh: installing Debian packages: ${missing[*]}"
{
	apt-get update &&
		DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
} >"${log}" 2>&1 || { echo "debs.sh: apt-get install ${missing[*]} failed; log: ${log}" >&2; exit 1; }
