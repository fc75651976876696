#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test-local-cluster.sh: bring the local cluster up, prove it works, bring it
# down, and prove that the host is as it was before.
#
# Checks, in order:
#   1. hack/local-cluster.sh up succeeds (timed).
#   2. `kubectl run` of the demo image (--restart=Never
#      --image-pull-policy=Never) succeeds and its log shows "APIVersions".
#   3. A pod resolves kubernetes.default.svc to the kubernetes Service IP: the
#      dnscheck image (hack/cmd/dnscheck; our images have no shell, so no
#      nslookup), run in a namespace that enforces the restricted Pod Security
#      level.
#   4. hack/local-cluster.sh down succeeds (timed).
#   5. The host is as before step 1 (hack/host-state.sh: links, iptables,
#      mounts, cgroups, /run/netns, sysctls, /lib/modules). Any difference is
#      printed and fails.
# Exit status: 0 when every check passed. Root required.
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # HACK_DIR, ROOT, hack/versions, log/warn/die; bash 4.4+
CLUSTER=${HACK_DIR}/local-cluster.sh
DEMO_IMAGE=${DEMO_IMAGE:-incluster-demo:dev}
WORK=$(mktemp -d /tmp/incluster-test.XXXXXX)

[[ ${EUID} -eq 0 ]] || { echo "test-local-cluster.sh: must run as root (it runs hack/local-cluster.sh up/down)" >&2; exit 1; }

failures=0 passes=0
pass() {
	echo "PASS: $*"
	passes=$((passes + 1))
}
fail() {
	echo "FAIL: $*"
	failures=$((failures + 1))
}

snapshot() { "${HACK_DIR}/host-state.sh" snapshot "$1"; }

# run_pod NAMESPACE NAME IMAGE OVERRIDES ARGS...: run to completion, print its log.
run_pod() {
	local ns=$1 name=$2 image=$3 overrides=$4 phase i
	shift 4
	kubectl -n "${ns}" delete pod "${name}" --ignore-not-found >/dev/null
	kubectl -n "${ns}" run "${name}" --image="${image}" --restart=Never --image-pull-policy=Never \
		${overrides:+--overrides="${overrides}"} ${1:+--} "$@" >/dev/null
	for ((i = 0; i < 120; i++)); do
		phase=$(kubectl -n "${ns}" get pod "${name}" -o 'jsonpath={.status.phase}')
		[[ ${phase} == Succeeded || ${phase} == Failed ]] && break
		sleep 0.5
	done
	echo "--- pod ${ns}/${name} (${image}): phase ${phase}" >&2
	kubectl -n "${ns}" logs "${name}" 2>&1 | tee "${WORK}/${name}.log" >&2
	[[ ${phase} == Succeeded ]]
}

if "${CLUSTER}" status >/dev/null 2>&1 || ip link show dev incl0 >/dev/null 2>&1; then
	echo "test-local-cluster.sh: a local cluster (or its bridge incl0) exists; run hack/local-cluster.sh down first" >&2
	exit 1
fi
# Packages first: they bring iptables-save, and are not part of what must be restored.
"${CLUSTER}" deps
snapshot "${WORK}/before"

t0=${SECONDS}
if "${CLUSTER}" up; then
	pass "local-cluster.sh up ($((SECONDS - t0)) s)"
	eval "$("${CLUSTER}" env)"
	export KUBECONFIG PATH

	if [[ ! -f ${ROOT}/_output/images/demo.tar ]]; then
		fail "no demo image (_output/images/demo.tar): ./cmd/demo missing?"
	elif run_pod default incluster-demo "${DEMO_IMAGE}" "" -o json && grep -q "\"kind\":\"APIVersions\"" "${WORK}/incluster-demo.log"; then
		pass "demo pod ${DEMO_IMAGE} ran and its log shows APIVersions"
	else
		fail "demo pod ${DEMO_IMAGE}: no APIVersions in its log"
	fi

	kubectl create namespace incluster-dns-test --dry-run=client -o yaml |
		kubectl label --local -f - pod-security.kubernetes.io/enforce=restricted -o yaml |
		kubectl apply -f - >/dev/null
	restricted='{"apiVersion":"v1","spec":{"securityContext":{"runAsNonRoot":true,"seccompProfile":{"type":"RuntimeDefault"}},"containers":[{"name":"dnscheck","image":"incluster.local/dnscheck:v1","args":["kubernetes.default.svc"],"securityContext":{"allowPrivilegeEscalation":false,"capabilities":{"drop":["ALL"]}}}]}}'
	if run_pod incluster-dns-test dnscheck incluster.local/dnscheck:v1 "${restricted}" &&
		grep -q 'kubernetes.default.svc resolves to \[10.96.0.1\]' "${WORK}/dnscheck.log"; then
		pass "a pod (restricted namespace) resolves kubernetes.default.svc to 10.96.0.1"
	else
		fail "a pod could not resolve kubernetes.default.svc"
	fi
else
	fail "local-cluster.sh up"
fi

t0=${SECONDS}
if "${CLUSTER}" down; then
	pass "local-cluster.sh down ($((SECONDS - t0)) s)"
else
	fail "local-cluster.sh down"
fi

snapshot "${WORK}/after"
while read -r result what; do
	case ${result} in
	PASS:) pass "${what}" ;;
	FAIL:) fail "${what}" ;;
	*) echo "${result} ${what}" ;; # the differences
	esac
done < <("${HACK_DIR}/host-state.sh" compare "${WORK}/before" "${WORK}/after" || true)

echo "${passes} passed, ${failures} failed"
rm -rf "${WORK}"
((failures == 0))
