#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# license.sh [check|fix]: every Go file and shell script of the repository
# (tracked or new, not ignored; .ci/run too) carries the SPDX header
# "SPDX-License-Identifier: Apache-2.0" (LICENSE), as Kubernetes projects
# keep a boilerplate header checked in CI.
#   check  list the files without it; exit 1 if there is one (make lint)
#   fix    add it: "// SPDX-..." and a blank line on top of a Go file (so it
#          never joins a package doc comment), "# SPDX-..." under a script's
#          shebang line
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
HEADER='SPDX-License-Identifier: Apache-2.0'

files() { { git ls-files -co --exclude-standard '*.go' '*.sh'; echo .ci/run; } | sort -u; }
has_header() { head -n 3 "$1" | grep -qF "${HEADER}"; }

case ${1:-check} in
check)
	missing=()
	while read -r f; do has_header "${f}" || missing+=("${f}"); done < <(files)
	if ((${#missing[@]})); then
		printf 'no "%s" in the first 3 lines (hack/license.sh fix adds it):\n' "${HEADER}"
		printf '  %s\n' "${missing[@]}"
		exit 1
	fi
	;;
fix)
	while read -r f; do
		has_header "${f}" && continue
		if [[ ${f} == *.go ]]; then
			{ echo "// ${HEADER}"; echo; cat "${f}"; } >"${f}.new"
		elif [[ $(head -c 2 "${f}") == '#!' ]]; then
			{ head -n 1 "${f}"; echo "# ${HEADER}"; tail -n +2 "${f}"; } >"${f}.new"
		else
			{ echo "# ${HEADER}"; cat "${f}"; } >"${f}.new"
		fi
		cat "${f}.new" >"${f}" # keeps the file's mode
		rm -f "${f}.new"
		echo "license.sh: added the header to ${f}"
	done < <(files)
	;;
*)
	echo "usage: license.sh [check|fix]" >&2
	exit 2
	;;
esac
