#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# host-state.sh: what a cluster may change on the host, recorded before and
# compared after, so that a test can prove the host was restored
# (hack/test-local-cluster.sh, hack/kind.sh e2e with KIND_NODE_IMAGE=offline),
# and the undo steps that the cluster scripts share.
#
#   snapshot DIR             record the host's state in DIR
#   compare BEFORE AFTER     one PASS/FAIL line per part, the differences, exit 1 on any
#   restore-sysctls BEFORE   write back every sysctl whose value differs from the
#                            snapshot (a privileged kind node's kubelet writes
#                            host-wide ones such as vm.overcommit_memory)
#   tables                   the iptables tables that exist, "family table" a line
#   cgroups                  the cgroup folders a snapshot records
#   drop-new-tables LIST     with the nf_tables backend, delete the tables not in
#                            LIST (a `tables` output) that are empty again
#   remove-new-cgroups BEFORE  remove the cgroup folders named docker, or below
#                            one, that are not in the snapshot and hold no process
#                            (dockerd creates /sys/fs/cgroup/*/docker), children first
#
# Recorded: `ip -o link`, `iptables-save`/`ip6tables-save` (counters and
# comments dropped), the mount table, the cgroup folders, /run/netns, the
# sysctls (those that move on their own left out), and whether /lib/modules
# exists.
#
# compare treats an iptables table that holds nothing (no rule, no chain of
# its own, every built-in chain at policy ACCEPT) as no table: merely using
# iptables loads the table, it changes nothing, and with the legacy backend
# and no loadable modules the kernel cannot unload it. A rule, a chain or a
# policy other than ACCEPT is still a difference.
#
# HOST_STATE_CGROUP_ROOT (default /sys/fs/cgroup) is for the tests
# (hack/test-host-state.sh).
set -euo pipefail

FILES=(links iptables ip6tables mounts sysctls cgroups netns lib-modules)
CGROUP_ROOT=${HOST_STATE_CGROUP_ROOT:-/sys/fs/cgroup}
# Sysctls whose values move on their own: not compared.
VOLATILE='^(fs\.(dentry-state|file-nr|inode-nr|inode-state|quota\.)|kernel\.(random\.|ns_last_pid|pty\.nr|sched_|perf_event)|net\.netfilter\.nf_conntrack_count|vm\.(stat|nr_))'

snapshot() { # snapshot DIR
	local d=$1 t
	mkdir -p "${d}"
	ip -o link | sed -E 's/^[0-9]+: //' | sort >"${d}/links"
	for t in iptables ip6tables; do
		"${t}-save" | sed -E -e '/^#/d' -e 's/ \[[0-9]+:[0-9]+\]$//' >"${d}/${t}"
	done
	# mount point, root, fs type, source: not the IDs, which change.
	awk '{ sep = 0; for (i = 7; i <= NF; i++) if ($i == "-") { sep = i; break }
		print $5, $4, $(sep + 1), $(sep + 2) }' /proc/self/mountinfo | sort >"${d}/mounts"
	sysctl -a 2>/dev/null | grep -vE "${VOLATILE}" | sort >"${d}/sysctls"
	cgroup_dirs >"${d}/cgroups"
	ls -a /run/netns >"${d}/netns" 2>&1 || true
	if [[ -e /lib/modules ]]; then echo "/lib/modules exists"; else echo "no /lib/modules"; fi >"${d}/lib-modules"
}

# cgroup_dirs: the hierarchies and their first level, and one level more
# under what the clusters create (kubepods, docker). Deeper folders of the
# machine's own process manager (here: memory/process_api/<id>, one per
# running command) come and go on their own, like the volatile sysctls.
cgroup_dirs() {
	find "${CGROUP_ROOT}" -mindepth 1 -maxdepth 3 -type d 2>/dev/null |
		awk -v root="${CGROUP_ROOT}/" '{ r = substr($0, length(root) + 1) }
			r !~ /\/.*\// || r ~ /^[^\/]+\/(kubepods|docker)[^\/]*\//' | sort
}

# without_empty_tables: an iptables-save dump minus the tables that hold
# nothing (built-in chains at ACCEPT only).
without_empty_tables() {
	awk '
		/^\*/ { table = $0; held = 0; inside = 1; next }
		inside && /^COMMIT$/ { if (held) { print table; printf "%s", body; print } body = ""; inside = 0; next }
		inside { body = body $0 "\n"; if ($0 !~ /^:(INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING) ACCEPT$/) held = 1; next }
		{ print }'
}

compare() { # compare BEFORE AFTER: one PASS or FAIL line per file
	local f bad=0
	for f in "${FILES[@]}"; do
		if [[ ${f} == ip*tables ]]; then
			diff -u --label "$1/${f}" --label "$2/${f}" <(without_empty_tables <"$1/${f}") <(without_empty_tables <"$2/${f}") || true
		else
			diff -u "$1/${f}" "$2/${f}" || true
		fi >"$2/${f}.diff"
		if [[ ! -s $2/${f}.diff ]]; then
			echo "PASS: host restored: ${f}"
		else
			echo "FAIL: host not restored: ${f} (before/after):"
			cat "$2/${f}.diff"
			bad=1
		fi
	done
	return "${bad}"
}

restore_sysctls() { # restore_sysctls BEFORE
	local line key val
	while IFS= read -r line; do
		key=${line%% = *}
		val=${line#* = }
		[[ -n $(sysctl -n "${key}" 2>/dev/null) ]] || continue # gone (an interface's)
		if sysctl -q -w "${key}=${val}" >/dev/null 2>&1; then
			echo "host-state.sh: sysctl ${key} restored to ${val}"
		else
			echo "host-state.sh: could not restore sysctl ${key} to ${val}" >&2
		fi
	done < <(comm -23 "$1/sysctls" <(sysctl -a 2>/dev/null | grep -vE "${VOLATILE}" | sort))
}

tables() {
	iptables-save 2>/dev/null | sed -n 's/^\*/ip /p'
	ip6tables-save 2>/dev/null | sed -n 's/^\*/ip6 /p'
}

drop_new_tables() { # drop_new_tables LIST
	local fam table save
	iptables -V 2>/dev/null | grep -q nf_tables || return 0
	command -v nft >/dev/null || { echo "host-state.sh: nft missing: empty iptables tables stay" >&2; return 0; }
	while read -r fam table; do
		grep -qxF "${fam} ${table}" "$1" && continue
		save=iptables-save
		[[ ${fam} == ip6 ]] && save=ip6tables-save
		if "${save}" -t "${table}" | grep -vE '^(#|\*|COMMIT$|:[A-Z]+ ACCEPT )' | grep -q .; then
			echo "host-state.sh: ${save} -t ${table} is not empty: left in place" >&2
			continue
		fi
		nft delete table "${fam}" "${table}" && echo "host-state.sh: deleted the empty table ${fam} ${table}, which was not there before" ||
			echo "host-state.sh: could not delete nft table ${fam} ${table}" >&2
	done < <(tables)
}

remove_new_cgroups() { # remove_new_cgroups BEFORE
	local top d bad=0
	while read -r top; do
		[[ -d ${top} ]] || continue # went with its parent
		# Children first; a folder that still holds a process (or, outside
		# cgroupfs, a file) cannot be removed and stays, for compare to report.
		while read -r d; do
			rmdir "${d}" 2>/dev/null || bad=1
		done < <(find "${top}" -depth -type d)
		[[ -d ${top} ]] || echo "host-state.sh: removed cgroup ${top} and the folders below it (created by dockerd)"
	done < <(comm -13 "$1/cgroups" <(cgroup_dirs) | grep -E '/docker(/|$)')
	((bad == 0)) || echo "host-state.sh: some new docker cgroup folders are not empty: left in place" >&2
}

case ${1:-}:$# in
snapshot:2) snapshot "$2" ;;
compare:3) compare "$2" "$3" ;;
restore-sysctls:2) restore_sysctls "$2" ;;
tables:1) tables ;;
cgroups:1) cgroup_dirs ;;
drop-new-tables:2) drop_new_tables "$2" ;;
remove-new-cgroups:2) remove_new_cgroups "$2" ;;
*)
	echo "usage: host-state.sh snapshot DIR | compare BEFORE AFTER | restore-sysctls BEFORE | tables | cgroups | drop-new-tables LIST | remove-new-cgroups BEFORE" >&2
	exit 2
	;;
esac
