#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# local-cluster.sh up|down|status|env|deps|restart|rotate-ca: a real single-node Kubernetes
# cluster (KUBERNETES_VERSION of hack/versions) as host processes, with no Docker and no registry.
#
#   up      install missing Debian packages, build binaries and images if
#           needed, start etcd, kube-apiserver, kube-controller-manager,
#           kube-scheduler, containerd, kubelet, kube-proxy and CoreDNS, and
#           wait until the cluster is usable. On a running cluster it only
#           rebuilds the images and re-imports those whose tarball changed.
#   down    stop what up started (by PID) and restore the host: iptables
#           chains, the bridge, mounts, cgroups, sysctls. Also after a crashed
#           or interrupted up. Logs and the PKI stay.
#   status  what runs.
#   env     `export KUBECONFIG=...` and `export PATH=...` lines to eval.
#   deps    only install the missing Debian packages.
#   restart COMPONENT
#           kill one component (e.g. kube-apiserver) with SIGKILL and start
#           it again: a crash and restart, for the e2e suite.
#   kill-container ID
#           SIGKILL the process of a pod's container (the ID of its
#           status.containerStatuses[].containerID, with or without
#           "containerd://"): a crash, for the e2e suite.
#   rotate-ca start|finish
#           rotate the API server's serving CA, as an operator does: start
#           trusts a new CA beside the old one everywhere (kubeconfigs,
#           kube-root-ca.crt) and restarts kube-apiserver on a certificate
#           from it; finish drops the old CA. For the e2e suite.
#
# Network: the node address 10.200.0.1/32 sits on bridge incl0, which this
# script creates and which the pods' bridge CNI network uses too (pods:
# 10.244.0.0/24, gateway 10.244.0.1). Services: 10.96.0.0/16 (kubernetes
# 10.96.0.1, kube-dns 10.96.0.10), domain cluster.local. Every server listens
# on 127.0.0.1 or 10.200.0.1 only. Host-side kubeconfigs use
# https://127.0.0.1:6443, which a NAT rule maps to 10.200.0.1:6443, so that no
# host client ever sends to 10.200.0.1 once the bridge is gone (that address
# would then route off the machine). A guard chain drops anything from the
# pods or to the cluster's ranges that would leave through another interface.
#
# State, PKI and logs: ${INCLUSTER_STATE:-/var/lib/incluster-cluster}
# (logs in logs/<component>.log). Binaries: hack/build-k8s.sh.
set -euo pipefail

LOG_PREFIX=local-cluster
# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # HACK_DIR, ROOT, hack/versions, log/warn/die; bash 4.4+
STATE=${INCLUSTER_STATE:-/var/lib/incluster-cluster}
BIN=${K8S_BIN}
IMAGES=${ROOT}/_output/images

LOGS=${STATE}/logs
RUN=${STATE}/run
PKI=${STATE}/pki
CFG=${STATE}/config
ADMIN_KUBECONFIG=${STATE}/admin.kubeconfig
CTR_SOCK=${STATE}/containerd/containerd.sock

BRIDGE=incl0
NODE_IP=10.200.0.1
NODE_NAME=incluster-node
POD_CIDR=10.244.0.0/24
POD_GW=10.244.0.1
SVC_CIDR=10.96.0.0/16
API_SVC_IP=10.96.0.1
DNS_IP=10.96.0.10
DOMAIN=cluster.local
ISSUER=https://kubernetes.default.svc.${DOMAIN}

# Start order; down stops them in reverse.
COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler containerd kubelet kube-proxy)
# Images imported into containerd (tarballs from hack/images.sh all).
IMAGE_NAMES=(pause coredns kubectl dnscheck demo example-controller scrape)
# Sysctls that kubelet, kube-proxy or the bridge CNI plugin may change: saved
# by up, restored by down.
SYSCTLS=(
	net.ipv4.ip_forward
	vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops
	kernel.keys.root_maxkeys kernel.keys.root_maxbytes
	net.ipv4.conf.all.route_localnet
	net.bridge.bridge-nf-call-iptables net.bridge.bridge-nf-call-ip6tables
	net.netfilter.nf_conntrack_max
	net.netfilter.nf_conntrack_tcp_timeout_established
	net.netfilter.nf_conntrack_tcp_timeout_close_wait
)
DEBS=(containerd runc containernetworking-plugins iptables nftables openssl conntrack)
CNI_BIN=/usr/lib/cni

need_root() {
	[[ ${EUID} -eq 0 ]] || die "'$1' must run as root (the cluster runs containerd and kubelet as root and changes iptables, a bridge, mounts, cgroups and sysctls; its state is root's). Try: sudo $0 $1"
}

bridge_exists() { ip link show dev "${BRIDGE}" >/dev/null 2>&1; }

# Nothing may talk to the node address unless the bridge that holds it exists.
require_bridge() {
	bridge_exists || die "bridge ${BRIDGE} (holding ${NODE_IP}) does not exist: the cluster is not up. Run: $0 up"
}

kc() {
	require_bridge
	"${BIN}/kubectl" --kubeconfig "${ADMIN_KUBECONFIG}" "$@"
}

# ---------------------------------------------------------------- processes

binary_of() {
	case $1 in
	containerd) echo /usr/bin/containerd ;;
	*) echo "${BIN}/$1" ;;
	esac
}

# pid_of NAME: the PID recorded for NAME if that process still runs the binary
# recorded with it (so a reused PID is never taken for ours, and down works
# whatever INCLUSTER_CACHE says now).
pid_of() {
	local f=${RUN}/$1.pid pid bin exe
	[[ -f ${f} ]] || return 1
	read -r pid bin <"${f}" || true
	[[ ${pid} =~ ^[0-9]+$ && -n ${bin} ]] || return 1
	exe=$(readlink "/proc/${pid}/exe" 2>/dev/null) || return 1
	[[ ${exe} == "${bin}" ]] || return 1
	echo "${pid}"
}

# start NAME ARGS...: run the component in its own session, log to logs/NAME.log.
start() {
	local name=$1 bin
	shift
	bin=$(binary_of "${name}")
	[[ -x ${bin} ]] || die "${bin} is missing: run hack/build-k8s.sh"
	if pid_of "${name}" >/dev/null; then
		log "${name} already runs"
		return 0
	fi
	echo "=== $(date -u +%FT%TZ) ${bin} $*" >>"${LOGS}/${name}.log"
	printf '%q ' "$@" >"${RUN}/${name}.args" # for restart
	setsid "${bin}" "$@" </dev/null >>"${LOGS}/${name}.log" 2>&1 &
	echo "$! ${bin}" >"${RUN}/${name}.pid"
}

# stop_pid PID WHAT: SIGTERM, then SIGKILL after 5 s (a graceful apiserver
# shutdown can take longer, and nothing here needs one: down wipes the data).
stop_pid() {
	local pid=$1 what=$2 i
	kill -TERM "${pid}" 2>/dev/null || return 0
	for ((i = 0; i < 50; i++)); do
		kill -0 "${pid}" 2>/dev/null || return 0
		sleep 0.1
	done
	warn "${what} (pid ${pid}) did not stop on SIGTERM: SIGKILL"
	kill -KILL "${pid}" 2>/dev/null || true
}

# wait_for WHAT SECONDS LOG CMD...: retry CMD until it succeeds.
wait_for() {
	local what=$1 secs=$2 logf=$3 deadline
	shift 3
	deadline=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		if ((SECONDS >= deadline)); then
			[[ -f ${logf} ]] && tail -n 15 "${logf}" >&2
			die "timed out after ${secs} s waiting for ${what}; log: ${logf}"
		fi
		sleep 0.25
	done
}

# died NAME: fail with the end of its log if NAME is no longer running.
check_running() {
	pid_of "$1" >/dev/null && return 0
	tail -n 20 "${LOGS}/$1.log" >&2 || true
	die "$1 exited; log: ${LOGS}/$1.log"
}

all_running() {
	local c
	for c in "${COMPONENTS[@]}"; do
		pid_of "${c}" >/dev/null || return 1
	done
}

any_running() {
	local c
	for c in "${COMPONENTS[@]}"; do
		pid_of "${c}" >/dev/null && return 0
	done
	return 1
}

# ---------------------------------------------------------------- packages

install_deps() { "${HACK_DIR}/debs.sh" "${DEBS[@]}"; }

# ---------------------------------------------------------------- PKI

# cert NAME CN ORG USAGE SANS: key + certificate signed by the cluster CA.
cert() {
	local name=$1 cn=$2 org=$3 usage=$4 sans=$5 subj
	subj="/CN=${cn}"
	if [[ -n ${org} ]]; then subj+="/O=${org}"; fi
	openssl ecparam -name prime256v1 -genkey -noout -out "${PKI}/${name}.key"
	openssl req -new -key "${PKI}/${name}.key" -subj "${subj}" -out "${PKI}/${name}.csr"
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature,keyEncipherment"
		echo "extendedKeyUsage=${usage}"
		if [[ -n ${sans} ]]; then echo "subjectAltName=${sans}"; fi
	} >"${PKI}/${name}.ext"
	openssl x509 -req -in "${PKI}/${name}.csr" -CA "${PKI}/ca.crt" -CAkey "${PKI}/ca.key" \
		-CAcreateserial -days 3650 -sha256 -extfile "${PKI}/${name}.ext" -out "${PKI}/${name}.crt"
	rm -f "${PKI}/${name}.csr" "${PKI}/${name}.ext"
}

# The PKI: ca.crt (ca.key) signs every certificate up makes and is the API
# server's client CA. trust.crt is what the API server's clients trust: the
# kubeconfigs' certificate-authority-data and kube-controller-manager's
# --root-ca-file, which it publishes in every namespace as the ConfigMap
# kube-root-ca.crt (the pods' ca.crt). At first it is ca.crt; rotate-ca
# changes it and the serving certificate apiserver.crt.
gen_pki() {
	if [[ -f ${PKI}/complete ]]; then
		[[ -f ${PKI}/trust.crt ]] || cp "${PKI}/ca.crt" "${PKI}/trust.crt" # a PKI made before rotate-ca
		return 0
	fi
	log "generating the PKI in ${PKI}"
	rm -rf "${PKI}"
	mkdir -p "${PKI}"
	chmod 700 "${PKI}"
	{
		openssl ecparam -name prime256v1 -genkey -noout -out "${PKI}/ca.key"
		openssl req -x509 -new -key "${PKI}/ca.key" -subj "/CN=incluster-ca" -days 3650 -sha256 \
			-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
			-out "${PKI}/ca.crt"
		cert apiserver kube-apiserver "" serverAuth \
			"IP:${NODE_IP},IP:${API_SVC_IP},IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.${DOMAIN}"
		cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters clientAuth ""
		cert admin kubernetes-admin system:masters clientAuth ""
		cert controller-manager system:kube-controller-manager "" clientAuth ""
		cert scheduler system:kube-scheduler "" clientAuth ""
		cert kube-proxy system:kube-proxy "" clientAuth ""
		cert kubelet-client "system:node:${NODE_NAME}" system:nodes clientAuth ""
		cert kubelet-serving "system:node:${NODE_NAME}" system:nodes serverAuth "IP:${NODE_IP},DNS:${NODE_NAME}"
		openssl ecparam -name prime256v1 -genkey -noout -out "${PKI}/sa.key"
		openssl ec -in "${PKI}/sa.key" -pubout -out "${PKI}/sa.pub"
	} >"${LOGS}/pki.log" 2>&1 || die "generating the PKI failed; log: ${LOGS}/pki.log"
	cp "${PKI}/ca.crt" "${PKI}/trust.crt"
	touch "${PKI}/complete"
}

# kubeconfig FILE USER CERTNAME SERVER: written whole or not at all (rotate-ca
# rewrites them while clients read them).
kubeconfig() {
	cat >"$1.tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: incluster
  cluster:
    server: $4
    certificate-authority-data: $(base64 -w0 "${PKI}/trust.crt")
users:
- name: $2
  user:
    client-certificate-data: $(base64 -w0 "${PKI}/$3.crt")
    client-key-data: $(base64 -w0 "${PKI}/$3.key")
contexts:
- name: incluster
  context:
    cluster: incluster
    user: $2
    namespace: default
current-context: incluster
EOF
	chmod 600 "$1.tmp"
	mv "$1.tmp" "$1"
}

# ---------------------------------------------------------------- host network

save_sysctls() {
	[[ -f ${RUN}/sysctl.saved ]] && return 0
	local s v
	for s in "${SYSCTLS[@]}"; do
		v=$(sysctl -n "${s}" 2>/dev/null) || continue
		printf '%s=%s\n' "${s}" "${v}"
	done >"${RUN}/sysctl.saved.tmp"
	mv "${RUN}/sysctl.saved.tmp" "${RUN}/sysctl.saved"
}

restore_sysctls() {
	[[ -f ${RUN}/sysctl.saved ]] || return 0
	local line
	# ip_forward first: writing it resets every interface's forwarding flag.
	while IFS= read -r line; do
		sysctl -q -w "${line}" >/dev/null || warn "could not restore sysctl ${line}"
	done < <(grep '^net.ipv4.ip_forward=' "${RUN}/sysctl.saved"; grep -v '^net.ipv4.ip_forward=' "${RUN}/sysctl.saved")
	rm -f "${RUN}/sysctl.saved"
}

net_up() {
	if ! bridge_exists; then
		ip link add "${BRIDGE}" type bridge
		touch "${RUN}/bridge"
	fi
	# The pods' gateway first: the bridge CNI plugin accepts a bridge whose
	# first IPv4 address is its gateway, and refuses one with another first.
	ip addr replace "${POD_GW}/${POD_CIDR#*/}" dev "${BRIDGE}"
	ip addr replace "${NODE_IP}/32" dev "${BRIDGE}"
	ip link set "${BRIDGE}" up
	# Pods reach services through the host (DNAT, then back out the bridge).
	sysctl -q -w net.ipv4.ip_forward=1 >/dev/null

	# Guard: nothing of the cluster's leaves through another interface. In
	# mangle POSTROUTING, which kube-proxy never reorders.
	iptables -t mangle -N INCLUSTER-GUARD 2>/dev/null || iptables -t mangle -F INCLUSTER-GUARD
	iptables -t mangle -A INCLUSTER-GUARD -s "${POD_CIDR}" ! -o "${BRIDGE}" -j DROP
	iptables -t mangle -A INCLUSTER-GUARD -d "${POD_CIDR}" ! -o "${BRIDGE}" -j DROP
	iptables -t mangle -A INCLUSTER-GUARD -d "${NODE_IP}/32" ! -o lo -j DROP
	iptables -t mangle -A INCLUSTER-GUARD -d "${SVC_CIDR}" -j DROP
	iptables -t mangle -C POSTROUTING -j INCLUSTER-GUARD 2>/dev/null ||
		iptables -t mangle -I POSTROUTING 1 -j INCLUSTER-GUARD
	# Host clients use https://127.0.0.1:6443: map it to the apiserver.
	iptables -t nat -N INCLUSTER-LOCALAPI 2>/dev/null || iptables -t nat -F INCLUSTER-LOCALAPI
	iptables -t nat -A INCLUSTER-LOCALAPI -d 127.0.0.1/32 -p tcp --dport 6443 -j DNAT --to-destination "${NODE_IP}:6443"
	iptables -t nat -C OUTPUT -j INCLUSTER-LOCALAPI 2>/dev/null ||
		iptables -t nat -I OUTPUT 1 -j INCLUSTER-LOCALAPI
}

# ipt_cleanup iptables|ip6tables: delete every KUBE-*, CNI-* and INCLUSTER-*
# chain and every rule that jumps to one, in one iptables-restore transaction
# per table.
ipt_cleanup() {
	local ipt=$1 table dump chains
	command -v "${ipt}-save" >/dev/null || return 0
	for table in filter nat mangle raw; do
		dump=$("${ipt}-save" -t "${table}" 2>/dev/null) || continue
		chains=$(grep -oE '^:(KUBE-|CNI-|INCLUSTER-)[^ ]+' <<<"${dump}" | cut -c2-) || true
		[[ -n ${chains} ]] || continue
		{
			echo "*${table}"
			grep -E '^-A ' <<<"${dump}" | grep -vE '^-A (KUBE-|CNI-|INCLUSTER-)' |
				grep -E -- '-j (KUBE-|CNI-|INCLUSTER-)' | sed 's/^-A /-D /' || true
			awk '{ print "-F " $0 }' <<<"${chains}"
			awk '{ print "-X " $0 }' <<<"${chains}"
			echo COMMIT
		} | "${ipt}-restore" --noflush || warn "${ipt}: could not remove chains from table ${table}: ${chains//$'\n'/ }"
	done
}

# ---------------------------------------------------------------- configs

write_kubeconfigs() {
	kubeconfig "${ADMIN_KUBECONFIG}" kubernetes-admin admin "https://127.0.0.1:6443"
	kubeconfig "${CFG}/controller-manager.kubeconfig" system:kube-controller-manager controller-manager "https://${NODE_IP}:6443"
	kubeconfig "${CFG}/scheduler.kubeconfig" system:kube-scheduler scheduler "https://${NODE_IP}:6443"
	kubeconfig "${CFG}/kube-proxy.kubeconfig" system:kube-proxy kube-proxy "https://${NODE_IP}:6443"
	kubeconfig "${CFG}/kubelet.kubeconfig" "system:node:${NODE_NAME}" kubelet-client "https://${NODE_IP}:6443"
}

write_configs() {
	mkdir -p "${CFG}" "${STATE}/cni/net.d" "${STATE}/containerd" "${STATE}/kubelet" "${STATE}/pod-logs"
	write_kubeconfigs

	# containerd: own root, state and socket; the quirks of these machines:
	# no CAP_SYS_RESOURCE, so no negative OOM scores.
	cat >"${CFG}/containerd.toml" <<EOF
version = 2
root = "${STATE}/containerd/root"
state = "${STATE}/containerd/state"
oom_score = 0
disabled_plugins = ["io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]

[grpc]
  address = "${CTR_SOCK}"

[ttrpc]
  address = "${STATE}/containerd/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "incluster.local/pause:v1"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "${CNI_BIN}"
    conf_dir = "${STATE}/cni/net.d"
EOF

	# One bridge for the node address and the pods; no masquerading: the
	# guard chain keeps pod traffic on the bridge.
	cat >"${STATE}/cni/net.d/10-incluster.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "incluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "${BRIDGE}",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "${STATE}/cni/ipam",
        "ranges": [[{"subnet": "${POD_CIDR}", "gateway": "${POD_GW}"}]],
        "routes": [{"dst": "0.0.0.0/0"}]
      }
    }
  ]
}
EOF

	cat >"${CFG}/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: ${NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: false
  webhook:
    enabled: true
  x509:
    clientCAFile: ${PKI}/ca.crt
authorization:
  mode: Webhook
tlsCertFile: ${PKI}/kubelet-serving.crt
tlsPrivateKeyFile: ${PKI}/kubelet-serving.key
containerRuntimeEndpoint: unix://${CTR_SOCK}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
clusterDomain: ${DOMAIN}
clusterDNS: [${DNS_IP}]
resolvConf: ""
podCIDR: ${POD_CIDR}
podLogsDir: ${STATE}/pod-logs
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
serializeImagePulls: false
oomScoreAdj: 0
registerNode: true
EOF

	cat >"${CFG}/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
clientConnection:
  kubeconfig: ${CFG}/kube-proxy.kubeconfig
hostnameOverride: ${NODE_NAME}
bindAddress: ${NODE_IP}
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
clusterCIDR: ${POD_CIDR}
nodePortAddresses: ["${NODE_IP}/32"]
# No CAP_SYS_RESOURCE on these machines: negative OOM scores are refused.
oomScoreAdj: 0
iptables:
  masqueradeAll: true
  localhostNodePorts: false
# 0: leave the host's conntrack sysctls alone.
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
  udpTimeout: 0s
  udpStreamTimeout: 0s
EOF
}

# ---------------------------------------------------------------- images

ctr_() { ctr --address "${CTR_SOCK}" -n k8s.io "$@"; }

# import_images: import every tarball whose content changed since its last
# import (all of them on a fresh containerd).
import_images() {
	local n tar sum
	for n in "${IMAGE_NAMES[@]}"; do
		tar=${IMAGES}/${n}.tar
		if [[ ! -f ${tar} ]]; then
			[[ ${n} == demo || ${n} == example-controller ]] && { warn "no ${tar} (no ./cmd/${n} yet?): ${n} image not imported"; continue; }
			die "${tar} is missing; run hack/images.sh all"
		fi
		sum=$(sha256sum "${tar}" | cut -d' ' -f1)
		[[ -f ${RUN}/image.${n} && $(<"${RUN}/image.${n}") == "${sum}" ]] && continue
		ctr_ images import "${tar}" >>"${LOGS}/images.log" 2>&1 ||
			die "ctr images import ${tar} failed; log: ${LOGS}/images.log"
		echo "${sum}" >"${RUN}/image.${n}"
		log "imported ${n} image ($(cat "${IMAGES}/${n}.digest" 2>/dev/null || echo "${tar}"))"
	done
}

build_all() {
	"${HACK_DIR}/build-k8s.sh"
	"${HACK_DIR}/images.sh" all
}

# ---------------------------------------------------------------- up

apiserver_ready() { kc get --raw /readyz; }

node_ready() {
	[[ $(kc get node "${NODE_NAME}" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

dns_answers() {
	local ip
	ip=$(kc -n kube-system get pods -l k8s-app=kube-dns -o 'jsonpath={.items[0].status.podIP}') || return 1
	[[ ${ip} == 10.244.0.* ]] || return 1
	require_bridge
	"${TOOLS}/dnscheck" -server "${ip}:53" -timeout 2s "kubernetes.default.svc.${DOMAIN}"
}

cmd_up() {
	local t0=${SECONDS}
	mkdir -p "${STATE}"
	install_deps
	build_all
	if all_running && bridge_exists && [[ -f ${RUN}/up-complete ]]; then
		log "the cluster already runs; refreshing images"
		import_images
		print_usage
		return 0
	fi
	if any_running || [[ -d ${RUN} ]] || bridge_exists; then
		log "found a partial or crashed cluster: cleaning up first"
		cmd_down
	fi
	rm -rf "${LOGS}.prev"
	[[ -d ${LOGS} ]] && mv "${LOGS}" "${LOGS}.prev"
	mkdir -p "${LOGS}" "${RUN}"
	log "starting; logs in ${LOGS}"
	UP_DONE=false
	trap 'on_up_exit' EXIT
	trap 'exit 130' INT TERM
	gen_pki
	ls /run/netns 2>/dev/null >"${RUN}/netns.before" || true
	[[ -d /run/containerd ]] || touch "${RUN}/created-run-containerd"
	save_sysctls
	[[ -f ${RUN}/ipt-tables.before ]] || "${HACK_DIR}/host-state.sh" tables >"${RUN}/ipt-tables.before"
	net_up
	write_configs

	start etcd --name incluster --data-dir "${STATE}/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster incluster=http://127.0.0.1:2380 \
		--log-level warn
	start kube-apiserver \
		--advertise-address="${NODE_IP}" --bind-address="${NODE_IP}" --secure-port=6443 \
		--etcd-servers=http://127.0.0.1:2379 \
		--service-cluster-ip-range="${SVC_CIDR}" \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction \
		--allow-privileged=true \
		--client-ca-file="${PKI}/ca.crt" \
		--tls-cert-file="${PKI}/apiserver.crt" --tls-private-key-file="${PKI}/apiserver.key" \
		--kubelet-client-certificate="${PKI}/apiserver-kubelet-client.crt" \
		--kubelet-client-key="${PKI}/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="${PKI}/ca.crt" \
		--kubelet-preferred-address-types=InternalIP \
		--service-account-issuer="${ISSUER}" --api-audiences="${ISSUER}" \
		--service-account-key-file="${PKI}/sa.pub" \
		--service-account-signing-key-file="${PKI}/sa.key" \
		--feature-gates=ShardedListAndWatch=true \
		--profiling=false
	start containerd --config "${CFG}/containerd.toml"
	wait_for "kube-apiserver /readyz" 90 "${LOGS}/kube-apiserver.log" apiserver_ready
	check_running etcd
	start kube-controller-manager \
		--kubeconfig="${CFG}/controller-manager.kubeconfig" \
		--authentication-kubeconfig="${CFG}/controller-manager.kubeconfig" \
		--authorization-kubeconfig="${CFG}/controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false \
		--cluster-name=incluster \
		--cluster-signing-cert-file="${PKI}/ca.crt" --cluster-signing-key-file="${PKI}/ca.key" \
		--root-ca-file="${PKI}/trust.crt" \
		--service-account-private-key-file="${PKI}/sa.key" \
		--use-service-account-credentials=true \
		--service-cluster-ip-range="${SVC_CIDR}" \
		--profiling=false
	start kube-scheduler \
		--kubeconfig="${CFG}/scheduler.kubeconfig" \
		--authentication-kubeconfig="${CFG}/scheduler.kubeconfig" \
		--authorization-kubeconfig="${CFG}/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false --profiling=false
	wait_for "containerd socket" 30 "${LOGS}/containerd.log" ctr_ version
	import_images
	start kubelet --config="${CFG}/kubelet.yaml" --kubeconfig="${CFG}/kubelet.kubeconfig" \
		--root-dir="${STATE}/kubelet" --node-ip="${NODE_IP}" --hostname-override="${NODE_NAME}"
	start kube-proxy --config="${CFG}/kube-proxy.yaml"

	kc apply -f "${HACK_DIR}/manifests/coredns.yaml" >"${LOGS}/manifests.log" 2>&1 ||
		die "kubectl apply of hack/manifests/coredns.yaml failed; log: ${LOGS}/manifests.log"
	wait_for "node ${NODE_NAME} Ready" 90 "${LOGS}/kubelet.log" node_ready
	wait_for "ServiceAccount default/default" 60 "${LOGS}/kube-controller-manager.log" kc -n default get serviceaccount default
	wait_for "ConfigMap default/kube-root-ca.crt" 60 "${LOGS}/kube-controller-manager.log" kc -n default get configmap kube-root-ca.crt
	wait_for "CoreDNS to answer for kubernetes.default.svc" 120 "${LOGS}/kubelet.log" dns_answers
	for c in "${COMPONENTS[@]}"; do check_running "${c}"; done
	UP_DONE=true
	touch "${RUN}/up-complete"
	log "cluster up in $((SECONDS - t0)) s"
	print_usage
}

on_up_exit() {
	[[ ${UP_DONE} == true ]] && return 0
	warn "up failed or was interrupted: the cluster is partly up. Logs: ${LOGS}/. Clean up with: $0 down"
}

print_usage() {
	cat <<EOF

The cluster runs (Kubernetes ${KUBERNETES_VERSION}, node ${NODE_NAME}). Use it with:
  eval "\$($0 env)"
  kubectl get nodes
  kubectl run demo --image=${DEMO_IMAGE:-incluster-demo:dev} --restart=Never --image-pull-policy=Never
Logs: ${LOGS}/. Stop it: make cluster-down (or $0 down).
EOF
}

# ---------------------------------------------------------------- down

# kill_pods: SIGKILL every process in the kubepods cgroups, then remove them.
kill_pods() {
	local roots=() r i pids
	for r in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods; do
		[[ -d ${r} ]] && roots+=("${r}")
	done
	((${#roots[@]} == 0)) && return 0
	for ((i = 0; i < 50; i++)); do
		pids=$(find "${roots[@]}" -name cgroup.procs -exec cat {} + 2>/dev/null | sort -u)
		[[ -z ${pids} ]] && break
		# shellcheck disable=SC2086 # one PID per word
		kill -KILL ${pids} 2>/dev/null || true
		sleep 0.1
	done
	[[ -n ${pids} ]] && warn "pod processes still alive: ${pids//$'\n'/ }"
	for r in "${roots[@]}"; do
		find "${r}" -depth -type d -exec rmdir {} \; 2>/dev/null || true
		[[ -d ${r} ]] && warn "could not remove cgroup ${r}"
	done
	return 0
}

# stop_shims: the containerd-shim processes of our containerd (found by its
# socket address on their command line).
stop_shims() {
	local p cmdline
	for p in /proc/[0-9]*; do
		cmdline=$(tr '\0' ' ' <"${p}/cmdline" 2>/dev/null) || continue
		[[ ${cmdline} == *containerd-shim*"-address ${CTR_SOCK} "* ]] || continue
		log "stopping containerd shim (pid ${p#/proc/})"
		stop_pid "${p#/proc/}" containerd-shim
	done
}

# unmount_all: everything mounted under the state folder, and the pod network
# namespaces containerd pinned in /run/netns since up.
unmount_all() {
	local pass m targets ns
	for ((pass = 0; pass < 5; pass++)); do
		targets=$(awk -v s="${STATE}/" -v n="/run/netns/cni-" '
			function unesc(p) { gsub(/\\040/, " ", p); return p }
			{ t = unesc($5); if (index(t, s) == 1 || index(t, n) == 1) print t }' /proc/self/mountinfo |
			awk '{ print length, $0 }' | sort -rn | cut -d' ' -f2-) || true
		[[ -z ${targets} ]] && break
		while IFS= read -r m; do
			umount "${m}" 2>/dev/null || umount -l "${m}" 2>/dev/null || true
		done <<<"${targets}"
	done
	[[ -n ${targets} ]] && warn "still mounted: ${targets//$'\n'/ }"
	for ns in /run/netns/cni-*; do
		[[ -e ${ns} ]] || continue
		grep -qxF "${ns##*/}" "${RUN}/netns.before" 2>/dev/null && continue
		rm -f "${ns}"
	done
	return 0
}

# stop_group NAME...: stop these components at once, and wait for them.
stop_group() {
	local c pid pids=()
	for c in "$@"; do
		if pid=$(pid_of "${c}"); then
			log "stopping ${c} (pid ${pid})"
			stop_pid "${pid}" "${c}" &
			pids+=($!)
		fi
	done
	((${#pids[@]} == 0)) || wait "${pids[@]}"
	for c in "$@"; do rm -f "${RUN}/${c}.pid"; done
}

cmd_down() {
	mkdir -p "${RUN}" "${LOGS}"
	# Clients of the apiserver first (kubelet first of all: no pod restarts),
	# then the apiserver, then what it needs.
	stop_group kubelet kube-proxy kube-controller-manager kube-scheduler
	stop_group kube-apiserver
	stop_group etcd containerd
	kill_pods
	stop_shims
	if [[ -x ${BIN}/kube-proxy ]] && { iptables-save 2>/dev/null | grep -q '^:KUBE-'; }; then
		"${BIN}/kube-proxy" --cleanup >>"${LOGS}/kube-proxy-cleanup.log" 2>&1 || true
	fi
	ipt_cleanup iptables
	ipt_cleanup ip6tables
	# With the nf_tables backend, using iptables creates tables: drop the
	# ones up created that are empty again.
	[[ ! -f ${RUN}/ipt-tables.before ]] || "${HACK_DIR}/host-state.sh" drop-new-tables "${RUN}/ipt-tables.before"
	unmount_all
	if [[ -f ${RUN}/netns.before && ! -s ${RUN}/netns.before ]]; then
		rmdir /run/netns 2>/dev/null || true
	fi
	if bridge_exists; then
		log "deleting bridge ${BRIDGE}"
		ip link delete "${BRIDGE}"
	fi
	restore_sysctls
	if [[ -f ${RUN}/created-run-containerd ]]; then
		rm -rf /run/containerd
	fi
	# Cluster data goes; logs and the PKI stay (the admin kubeconfig stays valid).
	rm -rf "${STATE}/etcd" "${STATE}/containerd" "${STATE}/kubelet" "${STATE}/cni" "${STATE}/pod-logs" "${CFG}" "${RUN}"
	log "down; host restored (logs kept in ${LOGS})"
}

# ---------------------------------------------------------------- status, env

cmd_status() {
	local c pid up=0
	for c in "${COMPONENTS[@]}"; do
		if pid=$(pid_of "${c}"); then
			printf '%-24s running (pid %s)\n' "${c}" "${pid}"
			up=$((up + 1))
		else
			printf '%-24s not running\n' "${c}"
		fi
	done
	if bridge_exists; then
		echo "bridge ${BRIDGE}: present ($(ip -o -4 addr show dev "${BRIDGE}" | awk '{print $4}' | tr '\n' ' '))"
	else
		echo "bridge ${BRIDGE}: absent"
	fi
	echo "state: ${STATE} (logs: ${LOGS})"
	if pid_of kube-apiserver >/dev/null && bridge_exists; then
		echo
		kc get nodes -o wide 2>&1 || true
		echo
		kc get pods -A -o wide 2>&1 || true
	fi
	if ((up == ${#COMPONENTS[@]})); then
		echo "cluster: up"
	elif ((up == 0)); then
		echo "cluster: down"
		return 3
	else
		echo "cluster: partly up (run '$0 down', then '$0 up')"
		return 2
	fi
}

cmd_env() {
	echo "export KUBECONFIG=${ADMIN_KUBECONFIG}"
	echo "export PATH=${BIN}:\$PATH"
}

# cmd_restart COMPONENT: kill one component by PID and start it again with
# the same arguments, for tests of what clients do while it is away. SIGKILL,
# not SIGTERM: this tests the clients, not the server's shutdown. On SIGTERM
# kube-apiserver takes its address out of the kubernetes Service, stops
# listening and waits for open connections (watches) to drain; that made the
# outage 9-10 s, about a leader's renew deadline (10 s), so whether the
# leader survived depended on the shutdown, not on the client.
cmd_restart() {
	local name=${1:-} pid args t0=${SECONDS} i
	if [[ -z ${name} || ! -f ${RUN}/${name}.args ]]; then
		local known=() f
		for f in "${RUN}"/*.args; do [[ -f ${f} ]] && known+=("$(basename "${f}" .args)"); done
		die "restart: no running component '${name}' (one of: ${known[*]:-none: is the cluster up?})"
	fi
	all_running || die "restart: the cluster is not fully up; run $0 up"
	args=$(<"${RUN}/${name}.args")
	if pid=$(pid_of "${name}"); then
		log "killing ${name} (pid ${pid}, SIGKILL)"
		kill -KILL "${pid}" 2>/dev/null || true
		# Gone, or a zombie whose threads have all exited. Waiting only for
		# the thread-group leader to turn zombie was not enough once: the
		# new kube-apiserver, started 60 ms after the kill, found its port
		# in use (the likely cause: other threads still exiting, holding
		# the process's files).
		for ((i = 0; i < 200; i++)); do
			exited "${pid}" && break
			sleep 0.05
		done
		exited "${pid}" || warn "${name} (pid ${pid}) has not exited 10 s after SIGKILL"
	fi
	rm -f "${RUN}/${name}.pid"
	eval "set -- ${args}"
	start "${name}" "$@"
	if [[ ${name} == kube-apiserver ]]; then
		wait_for "kube-apiserver /readyz" 90 "${LOGS}/kube-apiserver.log" apiserver_ready
	fi
	log "restarted ${name} in $((SECONDS - t0)) s"
}

# exited PID: the process is gone, or a zombie with no thread left running.
exited() {
	local tasks
	[[ -d /proc/$1 ]] || return 0
	[[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]] || return 1
	tasks=$(find "/proc/$1/task" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
	((tasks <= 1))
}

# cmd_kill_container ID: SIGKILL a container's task through containerd.
cmd_kill_container() {
	local id=${1#containerd://}
	[[ ${id} =~ ^[0-9a-f]{64}$ ]] || die "kill-container: '${1:-}' is not a containerd container ID (a pod's status.containerStatuses[].containerID)"
	ctr_ task kill --signal SIGKILL "${id}" || die "kill-container: ctr task kill ${id} failed"
	log "sent SIGKILL to container ${id}"
}

# ---------------------------------------------------------------- rotate-ca

# root_ca_published: kube-root-ca.crt in default holds trust.crt.
root_ca_published() {
	[[ $(kc -n default get configmap kube-root-ca.crt -o 'jsonpath={.data.ca\.crt}') == "$(<"${PKI}/trust.crt")" ]]
}

# restart_clients: every client of the API server reads trust.crt again.
# kubelet first, and settled before kube-controller-manager publishes the
# new kube-root-ca.crt: the pods' projected ca.crt files then follow at the
# kubelet's periodic sync (within its syncFrequency, 1 minute), as on a node
# whose kubelet was not restarted, not at this restart.
restart_clients() {
	cmd_restart kubelet
	wait_for "kubelet /healthz" 60 "${LOGS}/kubelet.log" curl -sf http://127.0.0.1:10248/healthz
	sleep 5 # the kubelet's first sync of the running pods
	cmd_restart kube-proxy
	cmd_restart kube-scheduler
	cmd_restart kube-controller-manager
	wait_for "kube-controller-manager to publish trust.crt as kube-root-ca.crt" 60 \
		"${LOGS}/kube-controller-manager.log" root_ca_published
	# CoreDNS reads its ca.crt only when it starts: a new pod gets the new one.
	kc -n kube-system rollout restart deployment/coredns >/dev/null || die "rotate-ca: could not restart CoreDNS"
	kc -n kube-system rollout status deployment/coredns --timeout=90s >/dev/null ||
		die "rotate-ca: CoreDNS is not available again 90 s after its restart (kubectl -n kube-system describe pods -l k8s-app=kube-dns)"
}

# cmd_rotate_ca start|finish: rotate the API server's serving CA, the one
# every client of the API server trusts (trust.crt) and pods get as
# kube-root-ca.crt, as an operator would (the client CA, ca.crt, stays).
#   start   make a new CA and a serving certificate from it (hack/cmd/servingca);
#           trust both CAs everywhere: kubeconfigs, then kube-root-ca.crt in every
#           namespace; then restart kube-apiserver on the new certificate. It
#           does not wait for the kubelet to give pods the new ca.crt: the e2e
#           suite measures how clients in pods live through that.
#   finish  trust the new CA only (kubeconfigs, kube-root-ca.crt).
cmd_rotate_ca() {
	local step=${1:-} rot=${PKI}/rotation cn
	all_running || die "rotate-ca: the cluster is not fully up; run $0 up"
	grep -qF -- "--root-ca-file=${PKI}/trust.crt" "${RUN}/kube-controller-manager.args" ||
		die "rotate-ca: this cluster was started before rotate-ca existed (kube-controller-manager's --root-ca-file is not ${PKI}/trust.crt); run $0 down, then $0 up"
	case ${step} in
	start)
		[[ ! -e ${rot} ]] || die "rotate-ca start: a rotation is under way (${rot}); end it first: $0 rotate-ca finish"
		build_tool servingca # the new CA and serving certificate
		cn=$("${TOOLS}/servingca" -current "${PKI}/apiserver.crt" -out "${rot}.tmp") ||
			die "rotate-ca start: hack/cmd/servingca failed"
		mv "${rot}.tmp" "${rot}"
		log "rotate-ca start: new serving CA ${cn}; trusting it beside the current one"
		cat "${rot}/ca.crt" "${PKI}/trust.crt" >"${PKI}/trust.crt.tmp"
		mv "${PKI}/trust.crt.tmp" "${PKI}/trust.crt"
		write_kubeconfigs
		restart_clients
		log "rotate-ca start: kube-apiserver switches to a certificate from ${cn}"
		cp "${rot}/apiserver.key" "${PKI}/apiserver.key.tmp"
		cp "${rot}/apiserver.crt" "${PKI}/apiserver.crt.tmp"
		mv "${PKI}/apiserver.key.tmp" "${PKI}/apiserver.key"
		mv "${PKI}/apiserver.crt.tmp" "${PKI}/apiserver.crt"
		cmd_restart kube-apiserver
		log "rotate-ca start: done; kube-apiserver serves a certificate from ${cn}. Once every pod has the new kube-root-ca.crt (the kubelet's sync, about a minute): $0 rotate-ca finish"
		;;
	finish)
		[[ -d ${rot} ]] || die "rotate-ca finish: no rotation under way; start one: $0 rotate-ca start"
		cp "${rot}/ca.crt" "${PKI}/trust.crt.tmp"
		mv "${PKI}/trust.crt.tmp" "${PKI}/trust.crt"
		write_kubeconfigs
		restart_clients
		mv "${rot}/ca.crt" "${PKI}/serving-ca.crt"
		mv "${rot}/ca.key" "${PKI}/serving-ca.key"
		rm -rf "${rot}"
		log "rotate-ca finish: done; the old serving CA is trusted no more"
		;;
	*) die "usage: $0 rotate-ca start|finish (got '${step}')" ;;
	esac
}

main() {
	local cmd=${1:-}
	case ${cmd} in
	up) need_root up && cmd_up ;;
	down) need_root down && cmd_down ;;
	status) need_root status && cmd_status ;;
	env) cmd_env ;;
	deps) need_root deps && mkdir -p "${STATE}" && install_deps ;;
	restart) need_root restart && cmd_restart "${2:-}" ;;
	kill-container) need_root kill-container && cmd_kill_container "${2:-}" ;;
	rotate-ca) need_root rotate-ca && cmd_rotate_ca "${2:-}" ;;
	*) die "usage: $0 up|down|status|env|deps|restart COMPONENT|kill-container ID|rotate-ca start|finish" ;;
	esac
}

main "$@"
