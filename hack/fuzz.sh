#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# fuzz.sh: run every Go fuzz target of the library and the demo for
# FUZZTIME each (default 1m), one after the other, and print a summary.
# Seeds are the f.Add calls and testdata/fuzz/ of each package; a failing
# input is written to testdata/fuzz/<Target>/ and fails the run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
FUZZTIME=${FUZZTIME:-1m}
# shellcheck source=hack/go-env.sh
. hack/go-env.sh # (the working directory is the repository)

summary=()
for pkg in $(go list ./...); do
	for target in $(go test -list '^Fuzz' "${pkg}" | grep '^Fuzz' || true); do
		echo "fuzz.sh: ${pkg} ${target} for ${FUZZTIME}"
		log=$(mktemp)
		if go test -run '^$' -fuzz "^${target}\$" -fuzztime "${FUZZTIME}" "${pkg}" 2>&1 | tee "${log}"; then
			summary+=("PASS ${target} ($(grep -o 'execs: [0-9]*' "${log}" | tail -1 | cut -d' ' -f2) execs, $(grep -o 'total: [0-9]*' "${log}" | tail -1 | cut -d' ' -f2) corpus entries)")
		else
			summary+=("FAIL ${target}: see testdata/fuzz/${target}/ in $(go list -f '{{.Dir}}' "${pkg}")")
		fi
		rm -f "${log}"
	done
done
printf 'fuzz.sh: %s\n' "${summary[@]}"
! printf '%s\n' "${summary[@]}" | grep -q '^FAIL'
