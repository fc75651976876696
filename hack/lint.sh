#!/usr/bin/env bash
# lint.sh: every static check of the repository; fails if any fails.
#   gofmt        all Go files of all modules (root, e2e, hack, hack/coredns)
#   go vet       root, e2e, bench, hack modules
#   staticcheck  root, e2e, bench modules  (pinned in hack/tools/go.mod)
#   govulncheck  root module            (pinned in hack/tools/go.mod)
#   shell        shellcheck of hack/*.sh and .ci/run (Debian package)
#   tls          no code turns TLS verification off (InsecureSkipVerify)
#   kind config  kind-config.yaml loads as kind v0.33.0 loads it (hack/kind.sh check)
# govulncheck uses https://vuln.go.dev when it can reach it, else the
# snapshot of the Go vulnerability database in the golang.org/x/vulndb module
# pinned below (served by the Go module proxy), and says which it used.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=${PWD}
if ! command -v go >/dev/null && [[ -x /usr/local/go/bin/go ]]; then PATH=/usr/local/go/bin:${PATH}; fi
# The Go release with the latest security fixes (see README.md): govulncheck
# judges the standard library of the go command that runs it.
export GOTOOLCHAIN=${GOTOOLCHAIN:-go1.27.3}
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018 # golang.org/x/vulndb snapshot of 2026-11-05
TOOL=(go tool -modfile="${ROOT}/hack/tools/go.mod")

failed=()
step() { # step NAME COMMAND...: run, report one line
	local name=$1
	shift
	if "$@"; then echo "lint: ${name}: ok"; else
		echo "lint: ${name}: FAILED"
		failed+=("${name}")
	fi
}

gofmt_all() {
	local bad
	bad=$(git ls-files -z '*.go' | xargs -0 gofmt -l)
	[[ -z ${bad} ]] || { echo "gofmt -w these files:"; echo "${bad}"; return 1; }
}
vet_all() { go vet ./... && (cd e2e && go vet ./...) && (cd bench && go vet ./...) && (cd hack && go vet ./...); }
staticcheck_all() { "${TOOL[@]}" staticcheck ./... && (cd e2e && "${TOOL[@]}" staticcheck ./...) && (cd bench && "${TOOL[@]}" staticcheck ./...); }
govulncheck_root() {
	local db=https://vuln.go.dev
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
	shellcheck -x hack/*.sh .ci/run
}
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
step "tls verification" tls_verify
step "kind config" hack/kind.sh check

if ((${#failed[@]})); then
	echo "lint: FAILED: ${failed[*]}"
	exit 1
fi
echo "lint: all checks passed"
