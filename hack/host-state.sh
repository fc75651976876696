#!/usr/bin/env bash
# host-state.sh snapshot DIR | compare BEFORE AFTER | restore-sysctls BEFORE:
# what a cluster may change on the host, recorded before and compared after,
# so that a test can prove the host was restored (hack/test-local-cluster.sh,
# hack/kind.sh e2e with KIND_NODE_IMAGE=offline). restore-sysctls writes back
# every sysctl whose value differs from the snapshot (hack/docker.sh down: a
# privileged kind node's kubelet writes host-wide ones such as
# vm.overcommit_memory and kernel.panic).
#
# Recorded: `ip -o link`, `iptables-save`/`ip6tables-save` (counters and
# comments dropped), the mount table, the cgroup folders, /run/netns, the
# sysctls (those that move on their own left out), and whether /lib/modules
# exists. compare prints each difference and exits 1 if there is one.
set -euo pipefail

FILES=(links iptables ip6tables mounts sysctls cgroups netns lib-modules)
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
	find /sys/fs/cgroup -mindepth 1 -maxdepth 3 -type d 2>/dev/null | sort >"${d}/cgroups"
	ls -a /run/netns >"${d}/netns" 2>&1 || true
	if [[ -e /lib/modules ]]; then echo "/lib/modules exists"; else echo "no /lib/modules"; fi >"${d}/lib-modules"
}

compare() { # compare BEFORE AFTER: one PASS or FAIL line per file
	local f bad=0
	for f in "${FILES[@]}"; do
		if diff -u "$1/${f}" "$2/${f}" >"$2/${f}.diff"; then
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

case ${1:-}:$# in
snapshot:2) snapshot "$2" ;;
compare:3) compare "$2" "$3" ;;
restore-sysctls:2) restore_sysctls "$2" ;;
*)
	echo "usage: host-state.sh snapshot DIR | compare BEFORE AFTER | restore-sysctls BEFORE" >&2
	exit 2
	;;
esac
