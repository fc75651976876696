#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# test-host-state.sh: tests of hack/host-state.sh's compare and
# remove-new-cgroups, on saved snapshots and a folder tree that stands in for
# /sys/fs/cgroup. No root, no cluster; part of `make test`.
#
# The fresh-machine case is the one CI met: iptables had no filter table
# before the private dockerd started and an empty one after (loaded by the
# guard chain, which down deletes), and dockerd had made docker/ folders in
# every cgroup hierarchy. That must pass once down has cleaned up; a leftover
# rule, chain, policy or a docker cgroup that still holds a process must fail.
set -euo pipefail

HOST_STATE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/host-state.sh
WORK=$(mktemp -d /tmp/incluster-test-host-state.XXXXXX)
trap 'rm -rf "${WORK}"' EXIT
export HOST_STATE_CGROUP_ROOT=${WORK}/cgroup

failures=0 passes=0
check() { # check NAME WANT(pass|fail) PART: compare before/after, PART's line must say WANT
	local name=$1 want=$2 part=$3 out rc=0
	out=$("${HOST_STATE}" compare "${WORK}/before" "${WORK}/after" 2>&1) || rc=$?
	local line
	line=$(grep -E "^(PASS|FAIL): host (not )?restored: ${part}( |$)" <<<"${out}" || true)
	if [[ ${want} == pass && ${rc} -eq 0 && ${line} == PASS:* ]] ||
		[[ ${want} == fail && ${rc} -ne 0 && ${line} == FAIL:* ]]; then
		echo "PASS: ${name}"
		passes=$((passes + 1))
	else
		echo "FAIL: ${name}: want ${want} for ${part}, got exit ${rc}:"
		printf '    %s\n' "${out//$'\n'/$'\n'    }"
		failures=$((failures + 1))
	fi
}

# snapshot_files DIR IPTABLES: a snapshot with fixed contents but for
# iptables and the cgroup folders (read from the stand-in tree).
snapshot_files() {
	local d=$1
	mkdir -p "${d}"
	printf '%s\n' 'lo: <LOOPBACK,UP,LOWER_UP> mtu 65536' >"${d}/links"
	printf '%s' "$2" >"${d}/iptables"
	: >"${d}/ip6tables"
	echo '/ / ext4 /dev/vda' >"${d}/mounts"
	echo 'vm.overcommit_memory = 0' >"${d}/sysctls"
	"${HOST_STATE}" cgroups >"${d}/cgroups"
	printf '.\n..\n' >"${d}/netns"
	echo 'no /lib/modules' >"${d}/lib-modules"
}

EMPTY_FILTER='*filter
:INPUT ACCEPT
:FORWARD ACCEPT
:OUTPUT ACCEPT
COMMIT
'
NAT='*nat
:PREROUTING ACCEPT
:INPUT ACCEPT
:OUTPUT ACCEPT
:POSTROUTING ACCEPT
-A OUTPUT -d 10.0.0.1/32 -j ACCEPT
COMMIT
'
HIERARCHIES=(blkio cpu cpuacct cpuset devices freezer memory pids systemd unified)

fresh_cgroups() {
	rm -rf "${HOST_STATE_CGROUP_ROOT}"
	local h
	for h in "${HIERARCHIES[@]}"; do mkdir -p "${HOST_STATE_CGROUP_ROOT}/${h}"; done
}
dockerd_made_cgroups() { # what dockerd and a kind node leave: docker/ and below
	local h
	for h in "${HIERARCHIES[@]}"; do mkdir -p "${HOST_STATE_CGROUP_ROOT}/${h}/docker/0123abcd/kubelet"; done
}
reset() { rm -rf "${WORK}/before" "${WORK}/after"; }

# 1. The fresh machine: no filter table before, an empty one after; docker
#    cgroup folders made and removed by down.
reset
fresh_cgroups
snapshot_files "${WORK}/before" ""
dockerd_made_cgroups
snapshot_files "${WORK}/after" "${EMPTY_FILTER}"
check "fresh machine, before down's cleanup: the docker cgroups are a difference" fail cgroups
"${HOST_STATE}" remove-new-cgroups "${WORK}/before" >/dev/null
snapshot_files "${WORK}/after" "${EMPTY_FILTER}"
check "fresh machine: an empty filter table equals no table" pass iptables
check "fresh machine: remove-new-cgroups removed every docker folder" pass cgroups
if [[ -n $(find "${HOST_STATE_CGROUP_ROOT}" -name docker) ]]; then
	echo "FAIL: docker folders left: $(find "${HOST_STATE_CGROUP_ROOT}" -name docker | tr '\n' ' ')"
	failures=$((failures + 1))
fi

# 2. The same with a table that was there before (nat with a rule) and stays.
reset
snapshot_files "${WORK}/before" "${NAT}"
snapshot_files "${WORK}/after" "${EMPTY_FILTER}${NAT}"
check "a loaded empty filter table next to an unchanged nat table" pass iptables

# 3. What must still fail: a rule, a chain of its own, a policy other than ACCEPT.
reset
snapshot_files "${WORK}/before" ""
snapshot_files "${WORK}/after" "${EMPTY_FILTER/COMMIT/-A FORWARD -i br-+ ! -o br-+ -j DROP
COMMIT}"
check "a leftover rule in a new filter table" fail iptables
snapshot_files "${WORK}/after" "${EMPTY_FILTER/COMMIT/:INCLDOCKER-GUARD -
COMMIT}"
check "a leftover (empty) chain in a new filter table" fail iptables
snapshot_files "${WORK}/after" "${EMPTY_FILTER/FORWARD ACCEPT/FORWARD DROP}"
check "FORWARD policy DROP in a new filter table" fail iptables
snapshot_files "${WORK}/before" "${EMPTY_FILTER/FORWARD ACCEPT/FORWARD DROP}"
snapshot_files "${WORK}/after" "${EMPTY_FILTER}"
check "FORWARD policy DROP before, ACCEPT after" fail iptables
snapshot_files "${WORK}/before" "${NAT}"
snapshot_files "${WORK}/after" ""
check "a table with rules before, none after" fail iptables

# 5. The machine's own cgroups below the first level (a command's cgroup
#    under process_api) come and go: not a difference. One under kubepods is.
reset
fresh_cgroups
mkdir -p "${HOST_STATE_CGROUP_ROOT}/memory/process_api/aaa" "${HOST_STATE_CGROUP_ROOT}/memory/kubepods"
snapshot_files "${WORK}/before" ""
rmdir "${HOST_STATE_CGROUP_ROOT}/memory/process_api/aaa"
mkdir -p "${HOST_STATE_CGROUP_ROOT}/memory/process_api/bbb"
snapshot_files "${WORK}/after" ""
check "a command's cgroup of the machine's own came and went" pass cgroups
mkdir -p "${HOST_STATE_CGROUP_ROOT}/memory/kubepods/burstable"
snapshot_files "${WORK}/after" ""
check "a kubepods cgroup left over" fail cgroups

# 4. A docker cgroup that still holds a process stays and fails; one that
#    existed before is left alone.
reset
fresh_cgroups
mkdir -p "${HOST_STATE_CGROUP_ROOT}/memory/docker"
snapshot_files "${WORK}/before" ""
dockerd_made_cgroups
echo 4242 >"${HOST_STATE_CGROUP_ROOT}/pids/docker/0123abcd/cgroup.procs"
"${HOST_STATE}" remove-new-cgroups "${WORK}/before" >/dev/null 2>&1
snapshot_files "${WORK}/after" ""
check "a new docker cgroup that holds a process is left and reported" fail cgroups
if [[ -d ${HOST_STATE_CGROUP_ROOT}/memory/docker && ! -d ${HOST_STATE_CGROUP_ROOT}/memory/docker/0123abcd &&
	! -d ${HOST_STATE_CGROUP_ROOT}/blkio/docker ]]; then
	echo "PASS: the docker folder that was there before stays, its new children and other new ones go"
	passes=$((passes + 1))
else
	echo "FAIL: remove-new-cgroups removed the wrong folders: $(find "${HOST_STATE_CGROUP_ROOT}" -path '*docker*' | tr '\n' ' ')"
	failures=$((failures + 1))
fi

echo "test-host-state.sh: ${passes} passed, ${failures} failed"
((failures == 0))
