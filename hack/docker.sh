#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# docker.sh up|down|env|status: a private Docker engine for machines that have
# none (this project's CI), for kind. Root only.
#
#   up      install Debian's docker.io if missing, start dockerd (and the
#           containerd it manages) with its own data root and socket, unless
#           the engine of `env` already answers
#   down    remove the containers and networks left on it, stop dockerd by
#           PID and restore the host as it was before up: links (bridges),
#           sysctls (hack/host-state.sh), iptables FORWARD policy and
#           the tables it loaded, dockerd's empty docker cgroup folders,
#           /lib/modules, /etc/docker/key.json, mounts
#   deps    only install Debian's docker.io if it is missing
#   env     the `export DOCKER_HOST=...` line to eval
#   status  whether it runs
#
# Settings, each for these machines:
#   --bridge=none --iptables=false --ip-forward=false --ip-masq=false
#       dockerd changes no firewall rule, no sysctl and makes no docker0;
#       containers reach each other and the host over the bridge of their
#       network, and nothing else (no NAT to the outside). Published ports
#       work through docker-proxy (kind publishes the API server on
#       127.0.0.1).
#   a guard chain, INCLDOCKER-GUARD in FORWARD
#       drops anything from a Docker bridge (br-*) that would leave through
#       another interface, should forwarding be on (the local cluster turns
#       it on while it runs).
#   --default-runtime capfix (hack/cmd/runc-capfix)
#       runc, minus the capabilities this machine's bounding set lacks
#       (CAP_SYS_RESOURCE): without it every --privileged container fails.
# State: /var/lib/incluster-docker (images stay between runs), sockets and
# PIDs in /run/incluster-docker, log in /var/lib/incluster-docker/dockerd.log.
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # HACK_DIR, ROOT, hack/versions, log/warn/die; bash 4.4+
STATE=${INCLUSTER_DOCKER_STATE:-/var/lib/incluster-docker}
RUN=/run/incluster-docker
SOCK=${RUN}/docker.sock
LOG=${STATE}/dockerd.log


need_root() {
	[[ ${EUID} -eq 0 ]] || die "'$1' must run as root (dockerd). Try: sudo $0 $1"
}

dockerd_pid() { # the recorded PID, if it still runs dockerd
	local pid
	[[ -f ${RUN}/dockerd.pid ]] || return 1
	pid=$(<"${RUN}/dockerd.pid")
	[[ ${pid} =~ ^[0-9]+$ && $(readlink "/proc/${pid}/exe" 2>/dev/null) == */dockerd ]] || return 1
	echo "${pid}"
}

deps() { "${HACK_DIR}/debs.sh" docker.io; }

answers() { DOCKER_HOST=unix://${SOCK} docker info >/dev/null 2>&1; }

up() {
	need_root up
	if dockerd_pid >/dev/null && answers; then
		log "dockerd runs (unix://${SOCK})"
		return 0
	fi
	deps
	mkdir -p "${STATE}" "${RUN}"
	build_tool runc-capfix

	# What down restores.
	if [[ ! -f ${RUN}/host.before ]]; then
		"${HACK_DIR}/host-state.sh" snapshot "${RUN}/host"
		"${HACK_DIR}/host-state.sh" tables >"${RUN}/host/tables"
		{
			echo "forward_policy=$(iptables -S FORWARD 2>/dev/null | sed -n 's/^-P FORWARD //p')"
			echo "lib_modules=$([[ -e /lib/modules ]] && echo yes || echo no)"
			echo "docker_key=$([[ -e /etc/docker/key.json ]] && echo yes || echo no)"
		} >"${RUN}/host.before"
	fi

	iptables -N INCLDOCKER-GUARD 2>/dev/null || iptables -F INCLDOCKER-GUARD
	iptables -A INCLDOCKER-GUARD -i br-+ ! -o br-+ -j DROP
	iptables -C FORWARD -j INCLDOCKER-GUARD 2>/dev/null || iptables -I FORWARD 1 -j INCLDOCKER-GUARD

	log "starting dockerd (log: ${LOG})"
	echo "=== $(date -u +%FT%TZ)" >>"${LOG}"
	setsid dockerd \
		--data-root "${STATE}/data" --exec-root "${RUN}/exec" --pidfile "${RUN}/dockerd.pid.daemon" \
		-H "unix://${SOCK}" --bridge=none --iptables=false --ip-forward=false --ip-masq=false \
		--add-runtime "capfix=${TOOLS}/runc-capfix" --default-runtime capfix \
		</dev/null >>"${LOG}" 2>&1 &
	echo $! >"${RUN}/dockerd.pid"
	local i
	for ((i = 0; i < 120; i++)); do
		answers && break
		dockerd_pid >/dev/null || { tail -n 20 "${LOG}" >&2; die "dockerd exited; log: ${LOG}"; }
		sleep 0.25
	done
	answers || { tail -n 20 "${LOG}" >&2; die "dockerd did not answer within 30 s; log: ${LOG}"; }
	log "dockerd is up: $(print_env) ($(DOCKER_HOST=unix://${SOCK} docker version -f '{{.Server.Version}}'))"
}

down() {
	need_root down
	local pid i
	if pid=$(dockerd_pid) && answers; then
		local ids
		ids=$(DOCKER_HOST=unix://${SOCK} docker ps -aq)
		if [[ -n ${ids} ]]; then
			# shellcheck disable=SC2086 # one ID a word
			DOCKER_HOST=unix://${SOCK} docker rm -f -v ${ids} >/dev/null || warn "could not remove containers ${ids//$'\n'/ }"
		fi
		DOCKER_HOST=unix://${SOCK} docker network prune -f >/dev/null || warn "could not remove networks"
	fi
	if pid=$(dockerd_pid); then
		log "stopping dockerd (pid ${pid})"
		kill -TERM "${pid}"
		for ((i = 0; i < 150; i++)); do
			kill -0 "${pid}" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "${pid}" 2>/dev/null; then
			warn "dockerd (pid ${pid}) did not stop in 15 s: SIGKILL"
			kill -KILL "${pid}"
		fi
	fi
	rm -f "${RUN}/dockerd.pid"
	restore_host
}

link_names() { sed -E 's/[:@].*//' | sort; }

# restore_host: undo what dockerd and kind changed, from what up recorded.
restore_host() {
	local m l
	# Mounts left under our directories (overlays, netns, shm), deepest first.
	while read -r m; do
		umount -l "${m}" 2>/dev/null || warn "could not unmount ${m}"
	done < <(awk -v s="${STATE}" -v r="${RUN}" '$2 ~ "^(" s "|" r ")/" { print $2 }' /proc/mounts | sort -r)
	if iptables -S INCLDOCKER-GUARD >/dev/null 2>&1; then
		while iptables -D FORWARD -j INCLDOCKER-GUARD 2>/dev/null; do :; done
		iptables -F INCLDOCKER-GUARD && iptables -X INCLDOCKER-GUARD
	fi
	[[ -f ${RUN}/host.before ]] || return 0
	# Links that were not there before (the kind network's bridge, veths).
	while read -r l; do
		ip link delete "${l}" 2>/dev/null && log "removed link ${l}"
	done < <(comm -13 <(link_names <"${RUN}/host/links") <(ip -o link | sed -E 's/^[0-9]+: //' | link_names))
	"${HACK_DIR}/host-state.sh" restore-sysctls "${RUN}/host"
	# The guard chain above loads the filter table; dockerd makes docker/
	# folders in every cgroup hierarchy. Both go when they are empty.
	"${HACK_DIR}/host-state.sh" drop-new-tables "${RUN}/host/tables"
	"${HACK_DIR}/host-state.sh" remove-new-cgroups "${RUN}/host"
	local forward_policy lib_modules docker_key
	# shellcheck disable=SC1091 # written by up
	. "${RUN}/host.before"
	if [[ -n ${forward_policy} && $(iptables -S FORWARD | sed -n 's/^-P FORWARD //p') != "${forward_policy}" ]]; then
		iptables -P FORWARD "${forward_policy}" && log "iptables FORWARD policy restored to ${forward_policy}"
	fi
	if [[ ${lib_modules} == no && -d /lib/modules ]]; then
		if rmdir /lib/modules 2>/dev/null; then
			log "removed the empty /lib/modules that a bind mount created"
		else
			warn "/lib/modules was created but is not empty: left in place"
		fi
	fi
	if [[ ${docker_key} == no && -f /etc/docker/key.json ]]; then
		rm -f /etc/docker/key.json && log "removed /etc/docker/key.json (written by dockerd)"
	fi
	rm -rf "${RUN}/host.before" "${RUN}/host"
}

print_env() { echo "export DOCKER_HOST=unix://${SOCK}"; }

status() {
	if dockerd_pid >/dev/null && answers; then
		echo "dockerd runs: $(print_env)"
	else
		echo "dockerd is not running"
		return 1
	fi
}

case ${1:-} in
up | down | status | deps) "$1" ;;
env) print_env ;;
*) die "usage: docker.sh up|down|env|status|deps (got '${1:-}')" ;;
esac
