#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench.sh: make bench. Brings the local cluster up (root), builds the demo
# and its image as shipped, and runs bench/ (a Go program) against the
# cluster: latency of the demo next to curl, kubectl and a minimal client-go
# program; connections per report; memory and sizes; 1,000 GETs with the
# library vs client-go's defaults vs raw net/http; package-init cost; at
# controller scale, the example controller's binary next to the same
# controller on controller-runtime, filling a cache with 1,000 and 10,000
# ConfigMaps as the library, client-go's defaults and controller-runtime do
# it, the two controllers' exec to first write (100 ConfigMaps) and their
# handoff on a deleted leader pod; with -memlimit (slow, off by default), the
# smallest memory limit at which the example controller, controller-runtime
# and plain client-go, each as a pod, sync N ConfigMaps and work. The table
# goes to stdout and to bench/results.md. Timings are reported, not
# asserted: a missed target shows MISS. BENCH_ARGS adds flags (e.g. "-runs 5
# -load 100 -cache 1000" for a quick smoke run; "-only memlimit" for the
# memory limits alone, with 10,000 and 50,000 ConfigMaps; "-only peakrss"
# for the three controllers' peak RSS without a limit, as processes, with
# 10,000 and 50,000 (or add "-peakrss 10000,50000" to "-only memlimit" for
# both in one run); "-only binaries" for the controllers' binary sizes
# alone (the example's next to controller-runtime's, with its default
# metrics server and with kubebuilder's secured one); "-only shards" for
# the sharded controller's peak RSS per replica with 1, 2 and 4 replicas and
# 50,000 ConfigMaps, the API server filtering and not, "-shards N" to add it
# to a run).
set -euo pipefail
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # HACK_DIR, ROOT, hack/versions, log/warn/die; bash 4.4+
# shellcheck source=hack/go-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"

"${HACK_DIR}/local-cluster.sh" up >&2
eval "$("${HACK_DIR}/local-cluster.sh" env)"
export KUBECONFIG
# images.sh builds the demo binary the image holds: static, stripped, -trimpath.
"${HACK_DIR}/images.sh" demo >&2
cd "${ROOT}/bench"
# shellcheck disable=SC2086 # BENCH_ARGS is a list of flags
go run . -demo "${ROOT}/_output/hack/demo" -image "${ROOT}/_output/images/demo.tar" \
	-kubectl "$(command -v kubectl)" -out "${ROOT}/bench/results.md" ${BENCH_ARGS:-}
