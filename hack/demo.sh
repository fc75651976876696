#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# demo.sh [local|kind]: bring a cluster up the way `make e2e` does, deploy the
# demo from deploy/ (kubectl apply -k), wait for it to finish and print its
# report. Without an argument: $CLUSTER, else kind where `docker info` works,
# else local. The cluster is left running: make cluster-down (or
# hack/kind.sh down, with the same KIND_NODE_IMAGE) stops it. Exits with the
# demo's exit code.
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # bash 4.4 or newer (macOS: brew install bash)
NS=incluster-demo
POD=incluster-demo

what=${1:-${CLUSTER:-}}
if [[ -z ${what} ]]; then
	if docker info >/dev/null 2>&1; then what=kind; else what=local; fi
fi
case ${what} in
local)
	"${HACK_DIR}/local-cluster.sh" up >&2
	eval "$("${HACK_DIR}/local-cluster.sh" env)"
	;;
kind)
	"${HACK_DIR}/kind.sh" up >&2
	export KUBECONFIG=${ROOT}/_output/kind.kubeconfig
	# The kubectl built with the local cluster, if there is one (no skew).
	if [[ -x ${K8S_BIN}/kubectl ]]; then PATH=${K8S_BIN}:${PATH}; fi
	;;
*) die "usage: demo.sh [local|kind] (got '${what}')" ;;
esac
command -v kubectl >/dev/null || die "kubectl not found in PATH"

# A pod cannot be changed in place: replace the previous run's.
kubectl delete pod "${POD}" -n "${NS}" --ignore-not-found --wait=true >/dev/null 2>&1 || true
kubectl apply -k "${ROOT}/deploy/base" >&2

phase=
for _ in $(seq 1 120); do
	phase=$(kubectl get pod "${POD}" -n "${NS}" -o jsonpath='{.status.phase}' 2>/dev/null || true)
	[[ ${phase} == Succeeded || ${phase} == Failed ]] && break
	sleep 1
done
echo "--- kubectl logs -n ${NS} ${POD}" >&2
kubectl logs -n "${NS}" "${POD}" -c demo
case ${phase} in
Succeeded) exit 0 ;;
Failed)
	code=$(kubectl get pod "${POD}" -n "${NS}" -o jsonpath='{.status.containerStatuses[?(@.name=="demo")].state.terminated.exitCode}')
	echo "demo.sh: the demo exited with code ${code} (see the exit codes in README.md)" >&2
	exit "${code:-1}"
	;;
*)
	kubectl describe pod "${POD}" -n "${NS}" >&2 || true
	die "the demo pod did not finish within 120 s (phase '${phase}')"
	;;
esac
