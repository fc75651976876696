#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# lint.sh: every static check of the repository; fails if any fails.
#   gofmt        all Go files of all modules (root, e2e, hack, hack/coredns)
#   go vet       root, e2e, bench, hack modules
#   staticcheck  root, e2e, bench modules  (pinned in hack/tools/go.mod)
#   govulncheck  root module            (pinned in hack/tools/go.mod)
#   shell        shellcheck of every *.sh and .ci/run (Debian package)
#   actionlint   .github/workflows/*.yml, with shellcheck on their run: scripts
#                (pinned in hack/tools/go.mod)
#   tls          no code turns TLS verification off (InsecureSkipVerify)
#   license      every Go file and script has the SPDX header (hack/license.sh)
#   kind config  kind-config.yaml loads as kind (KIND_VERSION of hack/versions)
#                loads it, alone and with hack/kind-offline.yaml (hack/kind.sh check)
#   versions     the go.mod files and manifests pin the versions of
#                hack/versions (hack/versions.sh check)
# govulncheck uses https://vuln.go.dev when it can reach it, else the
# snapshot of the Go vulnerability database in the golang.org/x/vulndb module
# pinned below (served by the Go module proxy), and says which it used.
# GOVULNDB=URL (https:// or file://) points it at another copy of the database.
# Each step prints one line: "lint: NAME: ok|FAILED (N s)".
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=${PWD}
# The Go release of hack/go-version: govulncheck judges the standard library
# of the go command that runs it.
# shellcheck source=hack/go-env.sh
. "${ROOT}/hack/go-env.sh"
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018 # golang.org/x/vulndb snapshot of 2026-11-05
TOOL=(go tool -modfile="${ROOT}/hack/tools/go.mod")

failed=()
step() { # step NAME COMMAND...: run, report one line with the time it took
	local name=$1 t0=${SECONDS}
	shift
	if "$@"; then echo "lint: ${name}: ok ($((SECONDS - t0)) s)"; else
		echo "lint: ${name}: FAILED ($((SECONDS - t0)) s)"
		failed+=("${name}")
	fi
}
in_each() { # in_each "DIR..." COMMAND...: run in each module dir, all of them even if one fails
	local dirs=$1 dir rc=0
	shift
	for dir in ${dirs}; do
		(cd "${dir}" && "$@") || { echo "lint: ... in ${dir}/ failed"; rc=1; }
	done
	return "${rc}"
}

gofmt_all() {
	local bad
	# tracked and untracked (not ignored) files, so new files are checked too
	bad=$(git ls-files -z -co --exclude-standard '*.go' | xargs -0 -r gofmt -l)
	[[ -z ${bad} ]] || { echo "gofmt -w these files:"; echo "${bad}"; return 1; }
}
vet_all() { in_each ". e2e bench hack" go vet ./...; }
staticcheck_all() { in_each ". e2e bench" "${TOOL[@]}" staticcheck ./...; }
govulncheck_root() {
	local db=${GOVULNDB:-https://vuln.go.dev} # GOVULNDB: a mirror or file:// copy of the database
	if ! curl -fsS --max-time 5 -o /dev/null "${db}/index/db.json" 2>/dev/null; then
		local dir
		dir=$(go mod download -json "golang.org/x/vulndb@${VULNDB_VERSION}" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
		[[ -d ${dir}/data/osv ]] || { echo "govulncheck: no vulnerability database: vuln.go.dev unreachable and golang.org/x/vulndb@${VULNDB_VERSION} has no data/osv"; return 1; }
		db=file://${dir}/data/osv
		echo "govulncheck: vuln.go.dev is unreachable; using the database snapshot golang.org/x/vulndb@${VULNDB_VERSION}"
	fi
	"${TOOL[@]}" govulncheck -db "${db}" ./...
}
shellcheck_all() {
	command -v shellcheck >/dev/null || { echo "shellcheck is not installed: apt-get install shellcheck"; return 1; }
	local files
	mapfile -t files < <(git ls-files -co --exclude-standard '*.sh')
	shellcheck -x "${files[@]}" .ci/run
}
actionlint_all() { "${TOOL[@]}" actionlint .github/workflows/*.yml; }
tls_verify() {
	local hits
	hits=$(git grep -n 'InsecureSkipVerify\|Insecure: *true' -- '*.go' ':!*_test.go' || true)
	[[ -z ${hits} ]] || { echo "TLS verification turned off:"; echo "${hits}"; return 1; }
}

step gofmt gofmt_all
step "go vet" vet_all
step staticcheck staticcheck_all
step govulncheck govulncheck_root
step shellcheck shellcheck_all
step actionlint actionlint_all
step "tls verification" tls_verify
step license hack/license.sh check
step "kind config" hack/kind.sh check
step versions hack/versions.sh check

if ((${#failed[@]})); then
	echo "lint: FAILED: ${failed[*]}"
	exit 1
fi
echo "lint: all checks passed"
