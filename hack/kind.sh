#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kind.sh up|down|e2e|check|restart-apiserver|rotate-ca|kill-container|stop-node:
# the kind cluster of `make e2e CLUSTER=kind` and `hack/demo.sh kind`, made
# from kind-config.yaml (Kubernetes 1.37, one node), and the multi-node one
# of `make e2e-multinode` (KIND_WORKERS=2: the same config plus two worker
# nodes; hack/e2e.sh multinode).
#
#   up     create the cluster ${KIND_CLUSTER:-incluster} unless it exists, write
#          its kubeconfig to _output/kind.kubeconfig (~/.kube/config is not
#          touched), load the image tarballs of _output/images named in
#          KIND_IMAGES (default: demo example-controller scrape;
#          hack/images.sh demo writes them) into it
#   down   delete the cluster and _output/kind.kubeconfig
#   e2e    up, the suite (hack/e2e.sh suite) against the cluster, down on exit
#          (also on failure or Ctrl-C; KIND_KEEP=1 leaves the cluster up)
#   check  without Docker: kind-config.yaml (or FILE: check [FILE]) loads the
#          way kind loads it and is the cluster the e2e suite expects
#          (hack/cmd/kindcheck), alone and with hack/kind-offline.yaml added
#   restart-apiserver
#          stop kube-apiserver in the node (kubelet starts it again) and wait
#          until /readyz says ok (the e2e suite's TestAPIServerRestart)
#   rotate-ca start|finish
#          rotate the API server's serving CA through the node, as
#          hack/local-cluster.sh rotate-ca does (the e2e suite's
#          TestClusterCARotation)
#   kill-container ID
#          SIGKILL a pod's container through the containerd of the node that
#          runs it (the e2e suite's SIGKILL cases)
#   stop-node NAME
#          stop a worker node's container at once (docker stop --time 0: a
#          node that fails; the e2e suite's TestMultiNodeShardedNodeStop)
#
# KIND_WORKERS=N (default 0) adds N worker nodes to kind-config.yaml's one
# (kindcheck -workers writes the config to _output/); the pods then run on
# the workers (kind keeps the control plane tainted when there are workers).
#
# up, down and e2e need Docker. kind is the one in PATH, else
# _output/bin/kind, built from the Go module proxy (go install
# sigs.k8s.io/kind@KIND_VERSION, from hack/versions) when missing or of another
# version. The node image in kind-config.yaml is the one published with
# KIND_VERSION: change both together (hack/go.mod pins the same kind for
# kindcheck; make lint checks that it does).
# In kind the proxy sidecar uses the official kubectl image (KUBECTL_IMAGE
# below), which the node pulls from registry.k8s.io.
#
# KIND_NODE_IMAGE=offline is for machines with no registry and no Docker
# engine (this project's CI; root). Everything above, with these differences:
#   - Docker: if none answers, hack/docker.sh starts a private dockerd; down
#     stops it and restores the host;
#   - node image: incluster.local/kind-node:KUBERNETES_VERSION, built by
#     hack/kind-node-image.sh from Debian packages and the local cluster's
#     Kubernetes binaries, imported into Docker when its inputs changed;
#   - config: kind-config.yaml plus hack/kind-offline.yaml (the patches these
#     machines need, each explained there), merged and checked by kindcheck;
#   - no kindnetd and no kubeadm CoreDNS (their images cannot be had here): a
#     bridge CNI config written from the node's podCIDR, and the local
#     cluster's CoreDNS (hack/manifests/coredns.yaml) at kubelet's clusterDNS;
#   - images loaded: KIND_IMAGES plus kubectl (the proxy sidecar uses
#     incluster.local/kubectl:KUBERNETES_VERSION); CoreDNS's is in the node image.
#   (the versions, KIND_VERSION among them: hack/versions)
# Any other KIND_NODE_IMAGE is passed to kind create cluster as --image.
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # HACK_DIR, ROOT, hack/versions, log/warn/die; bash 4.4+
KIND_CLUSTER=${KIND_CLUSTER:-incluster}
KIND_WORKERS=${KIND_WORKERS:-0}
export KIND_CLUSTER KIND_WORKERS # the e2e suite's hooks run this script again
[[ ${KIND_WORKERS} =~ ^[0-9]$ ]] || die "KIND_WORKERS=${KIND_WORKERS}: want a number of worker nodes, 0 to 9"
KIND_IMAGES=${KIND_IMAGES:-demo example-controller scrape}
CONFIG=${ROOT}/kind-config.yaml
KUBECONFIG_OUT=${ROOT}/_output/kind.kubeconfig
IMAGES=${ROOT}/_output/images
BIN=${ROOT}/_output/bin   # kind, when built here
KUBECTL_IMAGE=registry.k8s.io/kubectl:${KUBERNETES_VERSION}
KIND_NODE_IMAGE=${KIND_NODE_IMAGE:-}
OFFLINE_IMAGE=incluster.local/kind-node:${KUBERNETES_VERSION}
OFFLINE_DIR=${INCLUSTER_CACHE}/kind-node-${KUBERNETES_VERSION} # hack/kind-node-image.sh
OFFLINE_CONFIG=${ROOT}/_output/kind-offline-config.yaml
WORKERS_CONFIG=${ROOT}/_output/kind-config-workers.yaml # KIND_WORKERS > 0
export DEMO_IMAGE=${DEMO_IMAGE:-incluster-demo:dev}
if [[ ${KIND_NODE_IMAGE} == offline ]]; then
	KUBECTL_IMAGE=incluster.local/kubectl:${KUBERNETES_VERSION}
	[[ " ${KIND_IMAGES} " == *" kubectl "* ]] || KIND_IMAGES+=" kubectl"
fi


# shellcheck source=hack/go-env.sh
. "$(dirname "${BASH_SOURCE[0]}")/go-env.sh"

need_docker() {
	if [[ ${KIND_NODE_IMAGE} == offline ]] && ! docker info >/dev/null 2>&1; then
		"${HACK_DIR}/docker.sh" up
		eval "$("${HACK_DIR}/docker.sh" env)" # DOCKER_HOST, for kind and docker
	fi
	docker info >/dev/null 2>&1 ||
		die "kind needs Docker ('docker info' failed); use CLUSTER=local, or KIND_NODE_IMAGE=offline (root) for a private dockerd"
}

# kc: kubectl on the kind cluster; the one built with the local cluster if
# there is one (same version), else the one in PATH.
kc() {
	local k=kubectl
	if [[ -x ${K8S_BIN}/kubectl ]]; then k=${K8S_BIN}/kubectl; fi
	"${k}" --kubeconfig "${KUBECONFIG_OUT}" "$@"
}

# offline_image: build the node image's tarball if its inputs changed, and
# import it into Docker unless the image there carries the same stamp.
offline_image() {
	"${HACK_DIR}/kind-node-image.sh"
	local want have
	want=$(<"${OFFLINE_DIR}/node.stamp")
	have=$(docker image inspect -f '{{index .Config.Labels "io.incluster.node-stamp"}}' "${OFFLINE_IMAGE}" 2>/dev/null || true)
	if [[ ${have} == "${want}" ]]; then
		echo "kind.sh: ${OFFLINE_IMAGE} is up to date in Docker"
		return 0
	fi
	echo "kind.sh: importing ${OFFLINE_DIR}/node.tar as ${OFFLINE_IMAGE}"
	local old
	old=$(docker image inspect -f '{{.Id}}' "${OFFLINE_IMAGE}" 2>/dev/null || true)
	# The ENTRYPOINT and ENV of kind's base image (images/base/Dockerfile).
	docker import -c 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' -c 'ENV container=docker' \
		-c "LABEL io.incluster.node-stamp=${want}" "${OFFLINE_DIR}/node.tar" "${OFFLINE_IMAGE}" >/dev/null ||
		die "docker import of ${OFFLINE_DIR}/node.tar failed"
	# The previous build, now untagged, would only take space.
	if [[ -n ${old} ]]; then docker rmi "${old}" >/dev/null 2>&1 || true; fi
}

# nodes: the names of the cluster's nodes (their containers' names).
nodes() {
	"${KIND}" get nodes --name "${KIND_CLUSTER}" 2>/dev/null | LC_ALL=C sort
}

# offline_addons does what kindnetd and kubeadm's CoreDNS addon do: on each
# node a bridge CNI config for its podCIDR and a route to every other node's
# podCIDR through that node's address (kindnetd's routes), then CoreDNS at
# the address kubelet gives pods as their nameserver.
offline_addons() {
	local node other cidr dns i
	local -A cidrs=() ips=()
	for node in $(nodes); do
		# kube-controller-manager assigns it shortly after the node registers.
		cidr=''
		for ((i = 0; i < 120; i++)); do
			cidr=$(kc get node "${node}" -o jsonpath='{.spec.podCIDR}' 2>/dev/null || true)
			[[ -n ${cidr} ]] && break
			sleep 0.5
		done
		[[ -n ${cidr} ]] || die "node ${node} has no podCIDR 60 s after kind created it (kubectl describe node ${node})"
		cidrs[${node}]=${cidr}
		ips[${node}]=$(kc get node "${node}" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}')
		[[ ${ips[${node}]} =~ ^[0-9.]+$ ]] || die "node ${node} has no InternalIP (got '${ips[${node}]}')"
		bridge_cni "${node}" "${cidr}"
	done
	for node in "${!cidrs[@]}"; do
		for other in "${!cidrs[@]}"; do
			[[ ${other} == "${node}" ]] && continue
			docker exec "${node}" ip route replace "${cidrs[${other}]}" via "${ips[${other}]}" ||
				die "could not add the route to ${other}'s pods (${cidrs[${other}]} via ${ips[${other}]}) in ${node}"
		done
	done
	kc wait --for=condition=Ready nodes --all --timeout=120s >/dev/null ||
		die "the nodes are not all Ready 120 s after their CNI configs were written (kubectl describe nodes)"
	dns=$(kc -n kube-system get configmap kubelet-config -o jsonpath='{.data.kubelet}' | sed -n '/^clusterDNS:/{n;s/^- *//p}')
	[[ ${dns} =~ ^[0-9.]+$ ]] || die "no clusterDNS address in kube-system/kubelet-config (got '${dns}')"
	sed "s/clusterIP: 10\.96\.0\.10\$/clusterIP: ${dns}/" "${HACK_DIR}/manifests/coredns.yaml" | kc apply -f - >/dev/null ||
		die "kubectl apply of hack/manifests/coredns.yaml failed"
	kc -n kube-system rollout status deployment/coredns --timeout=120s >/dev/null ||
		die "CoreDNS is not available 120 s after it was applied (kubectl -n kube-system describe pods -l k8s-app=kube-dns)"
	local summary=''
	for node in $(nodes); do summary+=" ${node} ${cidrs[${node}]} (${ips[${node}]})"; done
	echo "kind.sh: bridge CNI and routes:${summary}; CoreDNS at ${dns}"
}

# bridge_cni NODE CIDR: the node's CNI config, a bridge for its pods.
bridge_cni() {
	local node=$1 cidr=$2
	docker exec -i "${node}" sh -c 'cat >/etc/cni/net.d/10-incluster-bridge.conflist' <<CNI
{
  "cniVersion": "1.0.0",
  "name": "incluster-bridge",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "cni0",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "${cidr}"}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
CNI
}

kind_version_of() { # kind_version_of BINARY: prints e.g. v0.33.0
	local out
	out=$("$1" version 2>/dev/null) || return 1
	out=${out#kind }
	echo "${out%% *}"
}

KIND=
find_kind() {
	[[ -n ${KIND} ]] && return 0
	if command -v kind >/dev/null; then
		KIND=$(command -v kind)
		local v
		v=$(kind_version_of "${KIND}") || die "${KIND} version failed"
		[[ ${v} == "${KIND_VERSION}" ]] ||
			warn "${KIND} is kind ${v}, kind-config.yaml's node image is the one of kind ${KIND_VERSION}"
		return 0
	fi
	KIND=${BIN}/kind
	if [[ -x ${KIND} && $(kind_version_of "${KIND}" || true) == "${KIND_VERSION}" ]]; then
		return 0
	fi
	command -v go >/dev/null || die "kind is not in PATH and go is not either: cannot build kind ${KIND_VERSION}"
	echo "kind.sh: kind is not in PATH: building kind ${KIND_VERSION} into ${BIN} (Go module proxy)" >&2
	mkdir -p "${BIN}"
	GOBIN=${BIN} CGO_ENABLED=0 go install "sigs.k8s.io/kind@${KIND_VERSION}" ||
		die "go install sigs.k8s.io/kind@${KIND_VERSION} failed"
}

cluster_exists() {
	"${KIND}" get clusters 2>/dev/null | grep -qxF "${KIND_CLUSTER}"
}

check() { # check [FILE]: kind's loader and the project's rules, no Docker
	local file=${1:-${CONFIG}}
	command -v go >/dev/null || die "go not found in PATH nor in /usr/local/go/bin"
	build_tool kindcheck
	"${TOOLS}/kindcheck" -name "${KIND_CLUSTER}" -kind-version "${KIND_VERSION}" "${file}"
	mkdir -p "$(dirname "${OFFLINE_CONFIG}")"
	local workers=()
	if ((KIND_WORKERS > 0)); then
		workers=(-workers "${KIND_WORKERS}")
		"${TOOLS}/kindcheck" -name "${KIND_CLUSTER}" -kind-version "${KIND_VERSION}" \
			"${workers[@]}" -out "${WORKERS_CONFIG}" "${file}"
	fi
	# And with the offline patches, as KIND_NODE_IMAGE=offline uses it.
	"${TOOLS}/kindcheck" -name "${KIND_CLUSTER}" -kind-version "${KIND_VERSION}" \
		-patch "${HACK_DIR}/kind-offline.yaml" "${workers[@]}" -out "${OFFLINE_CONFIG}" "${file}"
}

# node_platform: linux/ARCH of the kind node: its container's machine when
# the cluster exists, else the Docker engine's (kind runs the node image for
# it: linux/arm64 under Docker Desktop on Apple silicon).
node_platform() {
	local m arch
	m=$(docker exec "${KIND_CLUSTER}-control-plane" uname -m 2>/dev/null) ||
		m=$(docker info --format '{{.Architecture}}') || die "docker info failed: cannot tell the node's architecture"
	arch=$(go_arch "${m}") || die "the images cannot be built for this node (set PLATFORMS to override)"
	echo "linux/${arch}"
}

up() {
	need_docker
	check
	find_kind
	# The node image first: it builds every image tarball (images.sh all).
	if [[ ${KIND_NODE_IMAGE} == offline ]]; then offline_image; fi
	# The demo, example-controller and scrape images of this tree, under
	# ${DEMO_IMAGE}, ${CONTROLLER_IMAGE:-incluster-example-controller:dev} and
	# incluster.local/scrape:v1 (quick when up to date), for the node's
	# platform, or PLATFORMS (e.g. linux/amd64,linux/arm64).
	local node
	node=$(node_platform)
	if [[ -n ${PLATFORMS:-} && ",${PLATFORMS// /}," != *",${node},"* ]]; then
		warn "PLATFORMS=${PLATFORMS} does not include the node's platform ${node}: the images will not run there"
	fi
	PLATFORMS=${PLATFORMS:-${node}} "${HACK_DIR}/images.sh" demo
	local img tars=()
	for img in ${KIND_IMAGES}; do
		[[ -f ${IMAGES}/${img}.tar ]] || die "${IMAGES}/${img}.tar is missing: run hack/images.sh all"
		tars+=("${IMAGES}/${img}.tar")
	done

	mkdir -p "$(dirname "${KUBECONFIG_OUT}")"
	local config=${CONFIG}
	if ((KIND_WORKERS > 0)); then config=${WORKERS_CONFIG}; fi # written by check
	local create=(--config "${config}" --wait 3m)
	case ${KIND_NODE_IMAGE} in
	"") ;;
	offline)
		# ${OFFLINE_CONFIG} was written by check, above. No --wait: the
		# node is Ready only once offline_addons gives it a CNI.
		create=(--config "${OFFLINE_CONFIG}" --image "${OFFLINE_IMAGE}")
		;;
	*) create+=(--image "${KIND_NODE_IMAGE}") ;;
	esac
	local created=no
	if cluster_exists; then
		echo "kind.sh: cluster ${KIND_CLUSTER} exists"
	else
		"${KIND}" create cluster --name "${KIND_CLUSTER}" --kubeconfig "${KUBECONFIG_OUT}" "${create[@]}"
		created=yes
	fi
	"${KIND}" export kubeconfig --name "${KIND_CLUSTER}" --kubeconfig "${KUBECONFIG_OUT}"
	local tar
	for tar in "${tars[@]}"; do
		echo "kind.sh: loading ${tar}"
		"${KIND}" load image-archive --name "${KIND_CLUSTER}" "${tar}"
	done
	if [[ ${KIND_NODE_IMAGE} == offline && ${created} == yes ]]; then
		offline_addons
	fi
	echo "kind.sh: cluster ${KIND_CLUSTER} is up; KUBECONFIG=${KUBECONFIG_OUT}"
}

down() {
	need_docker
	find_kind
	"${KIND}" delete cluster --name "${KIND_CLUSTER}" --kubeconfig "${KUBECONFIG_OUT}"
	rm -f "${KUBECONFIG_OUT}"
	if [[ ${KIND_NODE_IMAGE} == offline ]] && "${HACK_DIR}/docker.sh" status >/dev/null 2>&1; then
		"${HACK_DIR}/docker.sh" down
	fi
}

restart_apiserver() {
	local node=${KIND_CLUSTER}-control-plane deadline old
	# SIGKILL, as hack/local-cluster.sh restart: a crash, and the kubelet
	# starts the static pod again (kind-config.yaml caps its back-off at 1 s).
	# This tests the clients, not the server's shutdown: on SIGTERM
	# kube-apiserver takes its address out of the kubernetes Service and waits
	# for open connections to drain, and kube-proxy lagged in putting it back,
	# which made the outage longer than a leader's renew deadline (10 s).
	old=$(docker exec "${node}" pgrep -x kube-apiserver) || die "no kube-apiserver process in ${node}"
	docker exec "${node}" kill -KILL "${old}" || die "could not kill kube-apiserver (pid ${old}) in ${node}"
	echo "kind.sh: kube-apiserver (pid ${old}) killed; kubelet starts it again"
	apiserver_back() { # a new process, and ready
		local pid
		pid=$(docker exec "${node}" pgrep -x kube-apiserver) && [[ ${pid} != "${old}" ]] &&
			[[ $(kc get --raw=/readyz 2>/dev/null) == ok ]]
	}
	deadline=$((SECONDS + 60))
	until apiserver_back; do
		((SECONDS < deadline)) || die "kube-apiserver is not ready 60 s after it was killed"
		sleep 0.1
	done
	echo "kind.sh: kube-apiserver is ready"
	# Pods reach it through the kubernetes Service. After a SIGKILL its
	# address stays in the Service's EndpointSlice; after a graceful stop it is
	# taken out and put back, and kube-proxy in kind then kept its
	# "default/kubernetes has no endpoints" REJECT rule for minutes, though
	# the EndpointSlice was back: every pod was refused. Wait until the node,
	# through the same rules, connects to the Service's IP; if it does not
	# within 10 s, restart kube-proxy (its DaemonSet makes a new pod, which
	# reads the EndpointSlice afresh) and say so.
	local svc t0=${SECONDS} kicked=''
	svc=$(kc get service kubernetes -n default -o 'jsonpath={.spec.clusterIP}:{.spec.ports[0].port}') ||
		die "cannot read the kubernetes Service"
	deadline=$((SECONDS + 70))
	until docker exec "${node}" timeout 1 bash -c "</dev/tcp/${svc%:*}/${svc#*:}" 2>/dev/null; do
		((SECONDS < deadline)) || die "the kubernetes Service (${svc}) refuses connections 70 s after kube-apiserver was ready"
		if [[ -z ${kicked} ]] && ((SECONDS - t0 >= 10)); then
			echo "kind.sh: the kubernetes Service (${svc}) still refuses connections 10 s after /readyz (kube-proxy has not seen the endpoint come back): restarting kube-proxy"
			kc -n kube-system delete pod -l k8s-app=kube-proxy --wait=false >/dev/null || warn "could not delete the kube-proxy pod"
			kicked=1
		fi
		sleep 0.2
	done
	echo "kind.sh: the kubernetes Service (${svc}) connects, $((SECONDS - t0)) s after /readyz${kicked:+ (kube-proxy restarted)}"
	# kube-controller-manager exits when it cannot renew its Lease for 10 s
	# (kind's restart can come close); the kubelet starts it again, and the
	# new one waits for the old Lease to expire (15 s). Meanwhile no
	# controller runs: a new namespace gets no kube-root-ca.crt. Return once
	# it renews its Lease again, so that what follows finds a whole control
	# plane.
	local renewed
	renewed=$(kc -n kube-system get lease kube-controller-manager -o 'jsonpath={.spec.renewTime}' 2>/dev/null) || renewed=''
	t0=${SECONDS}
	deadline=$((SECONDS + 90))
	until [[ $(kc -n kube-system get lease kube-controller-manager -o 'jsonpath={.spec.renewTime}' 2>/dev/null) != "${renewed}" ]]; do
		((SECONDS < deadline)) || die "kube-controller-manager has not renewed its Lease 90 s after kube-apiserver was ready (kubectl -n kube-system logs -l component=kube-controller-manager)"
		sleep 0.2
	done
	echo "kind.sh: kube-controller-manager renews its Lease again, $((SECONDS - t0)) s later"
}

# ---------------------------------------------------------------- rotate-ca
# The same rotation as hack/local-cluster.sh rotate-ca, through the node:
# kubeadm's PKI is /etc/kubernetes/pki, the control plane runs as static
# pods, the kubelet under systemd. trust.crt (beside kubeadm's ca.crt, which
# stays the client CA and signer) is what the API server's clients trust.
NODE_PKI=/etc/kubernetes/pki
ROTATION=${NODE_PKI}/rotation # the new CA and serving certificate, between start and finish

node_sh() { docker exec -i "${KIND_CLUSTER}-control-plane" sh -ec "$1"; }

# kubelet_healthy: the node's kubelet answers /healthz (no curl in the node).
kubelet_healthy() {
	docker exec "${KIND_CLUSTER}-control-plane" bash -c 'exec 3<>/dev/tcp/127.0.0.1/10248 &&
		printf "GET /healthz HTTP/1.0\r\n\r\n" >&3 && tail -n1 <&3 | grep -qx ok' 2>/dev/null
}

# trust_everywhere: every client of the API server trusts the node's
# trust.crt: the kubeconfigs in /etc/kubernetes (kubelet, scheduler,
# controller-manager, admins), _output/kind.kubeconfig, kube-controller-manager's
# --root-ca-file (so kube-root-ca.crt in every namespace), and the pods of
# kube-system that read ca.crt only when they start (kube-proxy, CoreDNS).
trust_everywhere() {
	local node=${KIND_CLUSTER}-control-plane b64 f t0
	b64=$(node_sh "base64 -w0 ${NODE_PKI}/trust.crt") || die "rotate-ca: cannot read ${NODE_PKI}/trust.crt in ${node}"
	for f in admin.conf super-admin.conf controller-manager.conf scheduler.conf kubelet.conf; do
		node_sh "f=/etc/kubernetes/${f}; [ -f \$f ] || exit 0
			grep -q '^ *certificate-authority-data:' \$f || { echo \"\$f has no certificate-authority-data\" >&2; exit 1; }
			sed 's|^\( *certificate-authority-data:\).*|\1 ${b64}|' \$f >\$f.tmp && mv \$f.tmp \$f" ||
			die "rotate-ca: could not write the new CA data into /etc/kubernetes/${f} in ${node}"
	done
	"${KIND}" export kubeconfig --name "${KIND_CLUSTER}" --kubeconfig "${KUBECONFIG_OUT}" 2>/dev/null ||
		die "rotate-ca: kind export kubeconfig failed"
	# kubeadm's manifest points --root-ca-file at ca.crt; the kubelet
	# restarts the static pod when its manifest changes.
	node_sh "m=/etc/kubernetes/manifests/kube-controller-manager.yaml
		grep -q -- '--root-ca-file=${NODE_PKI}/trust.crt' \$m && exit 0
		sed 's|--root-ca-file=.*|--root-ca-file=${NODE_PKI}/trust.crt|' \$m >/etc/kubernetes/kcm.yaml.tmp
		mv /etc/kubernetes/kcm.yaml.tmp \$m" || die "rotate-ca: could not point kube-controller-manager's --root-ca-file at trust.crt"
	t0=${SECONDS}
	docker exec "${node}" systemctl restart kubelet || die "rotate-ca: systemctl restart kubelet in ${node} failed"
	until kubelet_healthy; do
		((SECONDS - t0 < 60)) || die "rotate-ca: the kubelet in ${node} is not healthy 60 s after its restart (docker exec ${node} journalctl -u kubelet)"
		sleep 0.5
	done
	sleep 5 # the kubelet's first sync of the running pods, as local-cluster.sh
	# Static pods: a killed container is started again by the kubelet, and
	# reads its kubeconfig and --root-ca-file afresh.
	# (-f: a process's name, which pkill -x matches, is cut at 15 characters.)
	docker exec "${node}" pkill -f '^kube-scheduler ' || die "rotate-ca: no kube-scheduler process in ${node}"
	docker exec "${node}" pkill -f '^kube-controller-manager ' || true # being replaced if its manifest changed
	t0=${SECONDS}
	until [[ $(kc -n default get configmap kube-root-ca.crt -o 'jsonpath={.data.ca\.crt}' 2>/dev/null) == "$(node_sh "cat ${NODE_PKI}/trust.crt")" ]]; do
		((SECONDS - t0 < 90)) || die "rotate-ca: kube-root-ca.crt in default does not hold trust.crt 90 s after kube-controller-manager's restart (kubectl -n kube-system logs -l component=kube-controller-manager)"
		sleep 0.5
	done
	kc -n kube-system delete pod -l k8s-app=kube-proxy >/dev/null || die "rotate-ca: could not delete the kube-proxy pod"
	kc -n kube-system rollout restart deployment/coredns >/dev/null || die "rotate-ca: could not restart CoreDNS"
	kc -n kube-system rollout status daemonset/kube-proxy --timeout=90s >/dev/null ||
		die "rotate-ca: kube-proxy is not available again 90 s after its restart"
	kc -n kube-system rollout status deployment/coredns --timeout=90s >/dev/null ||
		die "rotate-ca: CoreDNS is not available again 90 s after its restart"
}

# rotate_ca start|finish: see local-cluster.sh rotate-ca.
#   start   a new CA and serving certificate (hack/cmd/servingca, on this
#           host), trusted beside the current CA everywhere (trust_everywhere),
#           then kube-apiserver restarted on the new certificate
#           (restart-apiserver). Pods get the new ca.crt at the kubelet's sync.
#   finish  trust the new CA only.
rotate_ca() {
	local step=${1:-} node=${KIND_CLUSTER}-control-plane tmp cn
	need_docker
	find_kind
	cluster_exists || die "rotate-ca: no cluster ${KIND_CLUSTER}; run $0 up"
	case ${step} in
	start)
		node_sh "test ! -e ${ROTATION}" ||
			die "rotate-ca start: a rotation is under way (${ROTATION} in ${node}); end it first: $0 rotate-ca finish"
		build_tool servingca
		tmp=$(mktemp -d)
		if ! { docker exec "${node}" cat "${NODE_PKI}/apiserver.crt" >"${tmp}/current.crt" &&
			cn=$("${TOOLS}/servingca" -current "${tmp}/current.crt" -out "${tmp}/rotation") &&
			docker cp "${tmp}/rotation" "${node}:${ROTATION}.tmp" >/dev/null &&
			node_sh "mv ${ROTATION}.tmp ${ROTATION}"; }; then
			rm -rf "${tmp}"
			die "rotate-ca start: could not make the new CA and copy it into ${node}"
		fi
		rm -rf "${tmp}"
		echo "kind.sh: rotate-ca start: new serving CA ${cn}; trusting it beside the current one"
		node_sh "cd ${NODE_PKI}; [ -f trust.crt ] || cp ca.crt trust.crt
			cat rotation/ca.crt trust.crt >trust.crt.tmp; mv trust.crt.tmp trust.crt"
		trust_everywhere
		echo "kind.sh: rotate-ca start: kube-apiserver switches to a certificate from ${cn}"
		node_sh "cd ${NODE_PKI}; cp rotation/apiserver.key apiserver.key.tmp; cp rotation/apiserver.crt apiserver.crt.tmp
			mv apiserver.key.tmp apiserver.key; mv apiserver.crt.tmp apiserver.crt"
		restart_apiserver
		echo "kind.sh: rotate-ca start: done; kube-apiserver serves a certificate from ${cn}. Once every pod has the new kube-root-ca.crt (the kubelet's sync, about a minute): $0 rotate-ca finish"
		;;
	finish)
		node_sh "test -d ${ROTATION}" || die "rotate-ca finish: no rotation under way; start one: $0 rotate-ca start"
		node_sh "cd ${NODE_PKI}; cp rotation/ca.crt trust.crt.tmp; mv trust.crt.tmp trust.crt"
		trust_everywhere
		node_sh "cd ${NODE_PKI}; mv rotation/ca.crt serving-ca.crt; mv rotation/ca.key serving-ca.key; rm -rf rotation"
		echo "kind.sh: rotate-ca finish: done; the old serving CA is trusted no more"
		;;
	*) die "usage: $0 rotate-ca start|finish (got '${step}')" ;;
	esac
}

HOST_STATE= # set by e2e when it starts the private dockerd: the host's state before

cleanup() { # EXIT trap of e2e: down, keeping the exit status
	local rc=$?
	trap - EXIT
	(down) || warn "could not delete cluster ${KIND_CLUSTER}"
	if [[ -n ${HOST_STATE} ]]; then
		"${HACK_DIR}/host-state.sh" snapshot "${HOST_STATE}/after"
		if ! "${HACK_DIR}/host-state.sh" compare "${HOST_STATE}/before" "${HOST_STATE}/after"; then
			echo "kind.sh: the host is not as it was before the private dockerd started (differences above)" >&2
			if ((rc == 0)); then rc=1; fi
		fi
		rm -rf "${HOST_STATE}"
	fi
	exit "${rc}"
}

e2e() {
	# Offline, with no Docker running: prove that down restores the host.
	if [[ ${KIND_NODE_IMAGE} == offline && ${KIND_KEEP:-} != 1 ]] && ! docker info >/dev/null 2>&1; then
		"${HACK_DIR}/docker.sh" deps
		HOST_STATE=$(mktemp -d /tmp/incluster-kind-host.XXXXXX)
		"${HACK_DIR}/host-state.sh" snapshot "${HOST_STATE}/before"
	fi
	need_docker
	if [[ ${KIND_KEEP:-} == 1 ]]; then
		echo "kind.sh: KIND_KEEP=1: the cluster stays up (hack/kind.sh down deletes it)"
	else
		# Whatever happens from here on, the cluster goes; the suite's exit
		# status is the script's.
		trap cleanup EXIT
		trap 'exit 130' INT
		trap 'exit 143' TERM
	fi
	up
	# A node can be stopped (TestMultiNodeShardedNodeStop) where there are
	# workers; without it hack/e2e.sh leaves out the cases that need it.
	local stop_node=''
	if ((KIND_WORKERS > 0)); then stop_node="${HACK_DIR}/kind.sh stop-node"; fi
	KUBECONFIG=${KUBECONFIG_OUT} KUBECTL_IMAGE=${KUBECTL_IMAGE} \
		E2E_RESTART_APISERVER="${HACK_DIR}/kind.sh restart-apiserver" \
		E2E_KILL_CONTAINER="${HACK_DIR}/kind.sh kill-container" \
		E2E_ROTATE_CA="${HACK_DIR}/kind.sh rotate-ca" \
		E2E_STOP_NODE="${stop_node}" \
		E2E_RESULTS=${E2E_RESULTS:-${ROOT}/_output/e2e-kind.results} "${HACK_DIR}/e2e.sh" suite
}

# kill_container ID: SIGKILL a pod's container (its containerID, with or
# without "containerd://") through the containerd of the node that runs it:
# a crash, for the e2e suite.
kill_container() {
	local id=${1#containerd://} node
	[[ ${id} =~ ^[0-9a-f]{64}$ ]] || die "kill-container: '${1:-}' is not a containerd container ID (a pod's status.containerStatuses[].containerID)"
	find_kind
	local tasks
	for node in $(nodes); do
		# Read first, then match: grep -q on the pipe would exit at the
		# match, ctr die of SIGPIPE, and pipefail fail the test.
		tasks=$(docker exec "${node}" ctr -n k8s.io task ls -q 2>/dev/null) || continue
		if grep -qxF "${id}" <<<"${tasks}"; then
			docker exec "${node}" ctr -n k8s.io task kill --signal SIGKILL "${id}" ||
				die "kill-container: ctr task kill ${id} in ${node} failed"
			echo "kind.sh: sent SIGKILL to container ${id} in ${node}"
			return 0
		fi
	done
	die "kill-container: no node of cluster ${KIND_CLUSTER} runs container ${id} (docker exec NODE ctr -n k8s.io task ls)"
}

# stop_node NAME: stop a worker node's container at once (SIGKILL: nothing
# in it shuts down gracefully), as a node that fails.
stop_node() {
	local node=${1:-}
	find_kind
	grep -qxF "${node}" <<<"$(nodes)" || die "stop-node: '${node}' is not a node of cluster ${KIND_CLUSTER} ($(nodes | tr '\n' ' '))"
	[[ ${node} != "${KIND_CLUSTER}-control-plane" ]] || die "stop-node: ${node} is the control plane; stop a worker"
	docker stop --time 0 "${node}" >/dev/null || die "stop-node: docker stop ${node} failed"
	echo "kind.sh: node ${node} stopped (docker stop --time 0); it stays down until the cluster is deleted (or docker start ${node})"
}

what=${1:-}
case ${what} in
up | down | e2e) "${what}" ;;
check) check "${2:-}" ;;
restart-apiserver) restart_apiserver ;;
rotate-ca) rotate_ca "${2:-}" ;;
kill-container) kill_container "${2:-}" ;;
stop-node) stop_node "${2:-}" ;;
*) die "usage: kind.sh up|down|e2e|check [FILE]|restart-apiserver|kill-container ID|stop-node NAME|rotate-ca start|finish (got '${what}')" ;;
esac
