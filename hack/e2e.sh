#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# e2e.sh [local|kind|multinode|suite]: run the end-to-end suite (e2e/)
# against a real cluster.
#
#   local  the local cluster of hack/local-cluster.sh (root; brought up if
#          needed, images rebuilt and re-imported if they changed)
#   kind   a kind cluster from kind-config.yaml (needs Docker): hack/kind.sh e2e
#   multinode
#          the cases that need several nodes, and the sharded controller's, in
#          a kind cluster of one control plane and 2 workers (KIND_WORKERS=2,
#          cluster incluster-multinode): `make e2e-multinode`; results in
#          _output/e2e-multinode.results
#   suite  only the suite, against the cluster in $KUBECONFIG
#   check [-expected FILE] RESULTS...  each results file lists exactly the
#          cases of FILE (default e2e/testdata/expected.results), every one
#          PASS (.ci/run: local and kind; multinode against
#          e2e/testdata/expected-multinode.results)
#
# Without an argument: $CLUSTER, else kind where `docker info` works, else local.
# Environment: DEMO_IMAGE (default incluster-demo:dev), KUBECTL_IMAGE (the proxy
# sidecar's image), E2E_RUN (a go test -run pattern), E2E_RESTART_APISERVER
# (a command that restarts the API server; set here for local, by kind.sh for
# kind), E2E_KILL_CONTAINER (a command that SIGKILLs a container, given its
# ID; likewise), E2E_ROTATE_CA (a command that, given start or finish,
# rotates the API server's serving CA; likewise), E2E_STOP_NODE (a command
# that stops a worker node, given its name: set by kind.sh with workers;
# without it the cases named TestMultiNode* are left out), E2E_RESULTS (a file for the outcome of each test, one "--- PASS: Name"
# line each: local and kind write _output/e2e-local.results and
# _output/e2e-kind.results, which .ci/run compares).
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # HACK_DIR, ROOT, hack/versions, log/warn/die; bash 4.4+
export DEMO_IMAGE=${DEMO_IMAGE:-incluster-demo:dev}

# shellcheck source=hack/go-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"

default_cluster() {
	if docker info >/dev/null 2>&1; then echo kind; else echo local; fi
}

suite() {
	[[ -n ${KUBECONFIG:-} ]] || die "KUBECONFIG is not set: which cluster should the suite use?"
	echo "e2e.sh: suite against ${KUBECONFIG} (demo image ${DEMO_IMAGE}, kubectl image ${KUBECTL_IMAGE:-default})"
	local results=${E2E_RESULTS:-${ROOT}/_output/e2e.results}
	mkdir -p "$(dirname "${results}")"
	rm -f "${results}"
	cd "${ROOT}/e2e"
	# The cases that stop a node need a cluster with nodes to stop.
	local skip=()
	if [[ -z ${E2E_STOP_NODE:-} ]]; then skip=(-skip '^TestMultiNode'); fi
	go test -count=1 -v -timeout 20m ${E2E_RUN:+-run "${E2E_RUN}"} "${skip[@]}" ./... 2>&1 | tee "${results}.log"
	# The outcome of each test and subtest, without durations, sorted.
	sed -nE 's/^ *--- (PASS|FAIL|SKIP): ([^ ]+).*/--- \1: \2/p' "${results}.log" | LC_ALL=C sort >"${results}"
	rm -f "${results}.log"
}

# check [-expected FILE] RESULTS...: a missing, skipped or failed case, an
# unexpected one, or an empty file fails. A test added to or removed from the
# suite is added to or removed from e2e/testdata/expected.results (and
# expected-multinode.results, for the cases that run there) in the same change.
check() {
	local expected=${ROOT}/e2e/testdata/expected.results f bad=0
	if [[ ${1:-} == -expected ]]; then
		expected=${2:-}
		shift 2 || die "usage: e2e.sh check [-expected FILE] RESULTS..."
	fi
	(($# > 0)) || die "usage: e2e.sh check [-expected FILE] RESULTS..."
	[[ -s ${expected} ]] || die "${expected} is missing or empty"
	for f in "$@"; do
		if [[ ! -f ${f} ]]; then
			echo "e2e.sh: ${f} does not exist: the suite did not run there" >&2
			bad=1
		elif ! diff -u --label "expected (${expected#"${ROOT}"/})" --label "${f}" "${expected}" "${f}" >&2; then
			echo "e2e.sh: ${f} differs from the expected cases (-expected +got)" >&2
			bad=1
		fi
	done
	((bad == 0)) || return 1
	echo "e2e.sh: $(wc -l <"${expected}") cases, every one PASS in: $*"
}

what=${1:-${CLUSTER:-$(default_cluster)}}
case ${what} in
local)
	"${HACK_DIR}/local-cluster.sh" up
	eval "$("${HACK_DIR}/local-cluster.sh" env)" # KUBECONFIG and PATH, as hack/demo.sh and hack/bench.sh
	export KUBECTL_IMAGE=${KUBECTL_IMAGE:-incluster.local/kubectl:${KUBERNETES_VERSION}}
	# TestAPIServerRestart restarts the API server with this.
	export E2E_RESTART_APISERVER="${HACK_DIR}/local-cluster.sh restart kube-apiserver"
	# TestController SIGKILLs the leader's container with this.
	export E2E_KILL_CONTAINER="${HACK_DIR}/local-cluster.sh kill-container"
	# TestClusterCARotation rotates the API server's serving CA with this
	# (it appends start, then finish).
	export E2E_ROTATE_CA="${HACK_DIR}/local-cluster.sh rotate-ca"
	E2E_RESULTS=${E2E_RESULTS:-${ROOT}/_output/e2e-local.results} suite
	;;
kind) exec "${HACK_DIR}/kind.sh" e2e ;;
multinode)
	# The sharded controller's cases, on replicas spread over two workers,
	# and the cases that stop a node (TestMultiNode*, last: the node stays
	# down).
	export KIND_WORKERS=${KIND_WORKERS:-2} KIND_CLUSTER=${KIND_CLUSTER:-incluster-multinode}
	export E2E_RUN=${E2E_RUN:-'^(TestShardedController|TestMultiNode.*)$'}
	export E2E_RESULTS=${E2E_RESULTS:-${ROOT}/_output/e2e-multinode.results}
	exec "${HACK_DIR}/kind.sh" e2e
	;;
suite) suite ;;
check) shift; check "$@" ;;
*) die "usage: e2e.sh [local|kind|multinode|suite|check [-expected FILE] RESULTS...] (got '${what}')" ;;
esac
