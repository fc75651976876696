#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# kind-node-image.sh: build a kind node image for Kubernetes (hack/versions) from what
# these machines can reach (Debian's packages and the Go module proxy), with
# no Docker and no registry. `kind build node-image` cannot do it offline: it
# always fetches etcd, CoreDNS, pause and kindnetd from registries.
#
# Output, in ${INCLUSTER_CACHE:-/var/cache/incluster}/kind-node-${KUBERNETES_VERSION}/:
#   node.tar    the node's root file system, for
#               `docker import -c 'ENTRYPOINT [...]' node.tar incluster.local/kind-node:${KUBERNETES_VERSION}`
#               (hack/kind.sh does it, with the ENTRYPOINT and ENV of kind's base image)
#   node.stamp  a hash of every input; node.tar is rebuilt only when it changes
#
# What goes in, the way kind's own images/base/Dockerfile and node-image
# builder lay it out (kind's files come from sigs.k8s.io/kind in hack/go.mod):
#   - a Debian bookworm rootfs (debootstrap) with systemd, containerd, runc,
#     CNI plugins (in /opt/cni/bin), iptables, nftables, conntrack, iproute2;
#   - kind's base files: /usr/local/bin/entrypoint, /kind/, the systemd units
#     of containerd and kubelet, /etc/containerd/config.toml, cri-base.json;
#     crictl at the version kind's base image pins (CRICTL_VERSION in its
#     Dockerfile), built from the Go module proxy;
#   - kubeadm, kubelet, kubectl in /usr/bin and /kind/version, from
#     hack/build-k8s.sh (the local cluster's pinned sources);
#   - the images kubeadm expects, under the names and tags it expects
#     (`kubeadm config images list`), preloaded into containerd's k8s.io
#     namespace: kube-apiserver, kube-controller-manager, kube-scheduler,
#     kube-proxy (with Debian's iptables, nft and conntrack), etcd
#     (registry.k8s.io/etcd:3.7.0-0 holds etcd v3.7.3, as in the local
#     cluster), pause (3.10.2 for kubeadm, 3.10 for kind's containerd config);
#     and the local cluster's CoreDNS image (incluster.local/coredns:${COREDNS_VERSION}),
#     which hack/kind.sh deploys in place of kubeadm's CoreDNS addon.
#   - one change for these machines: containerd's unit asks for
#     OOMScoreAdjust=-999, which needs CAP_SYS_RESOURCE (absent here); a
#     drop-in sets 0.
#
# Root is needed (debootstrap, chroot). About 2 minutes the first time (Debian
# packages: 1 minute), seconds when only the Kubernetes binaries changed.
set -euo pipefail

# shellcheck source=hack/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh" # HACK_DIR, ROOT, hack/versions, log/warn/die; bash 4.4+
SELF=${HACK_DIR}/$(basename "${BASH_SOURCE[0]}")
K8S_VERSION=${KUBERNETES_VERSION}
CACHE=${INCLUSTER_CACHE}
OUT=${CACHE}/kind-node-${K8S_VERSION}
SUITE=bookworm
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PACKAGES=systemd,jq,containerd,runc,containernetworking-plugins,conntrack,iptables,nftables,iproute2,ethtool,kmod,libseccomp2,pigz,ca-certificates,procps


[[ ${EUID} -eq 0 ]] || die "must run as root (debootstrap and chroot). Try: sudo $0"
"${HACK_DIR}/debs.sh" debootstrap jq containerd
# shellcheck source=hack/go-env.sh
. "${HACK_DIR}/go-env.sh"

# Inputs: the Kubernetes binaries and the image tarballs of the local cluster.
"${HACK_DIR}/images.sh" all # runs hack/build-k8s.sh first
KIND_DIR=$(cd "${HACK_DIR}" && go list -m -f '{{.Dir}}' sigs.k8s.io/kind) ||
	die "sigs.k8s.io/kind is not in the module cache: run (cd hack && go mod download)"
KIND_FILES=${KIND_DIR}/images/base/files
[[ -f ${KIND_FILES}/usr/local/bin/entrypoint ]] || die "${KIND_FILES}/usr/local/bin/entrypoint is missing"

# crictl, as kind's base image has it (kind export logs uses it).
CRICTL_VERSION=$(sed -n 's/^ARG CRICTL_VERSION="\(.*\)"$/\1/p' "${KIND_DIR}/images/base/Dockerfile")
[[ ${CRICTL_VERSION} =~ ^v[0-9.]+$ ]] || die "no CRICTL_VERSION in ${KIND_DIR}/images/base/Dockerfile"
CRICTL=${OUT}/crictl-${CRICTL_VERSION}/crictl
if [[ ! -x ${CRICTL} ]]; then
	log "building crictl ${CRICTL_VERSION} (Go module proxy)"
	GOBIN=$(dirname "${CRICTL}") CGO_ENABLED=0 go install -trimpath -ldflags "-s -w" \
		"sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION}" || die "go install sigs.k8s.io/cri-tools/cmd/crictl@${CRICTL_VERSION} failed"
fi

stamp() {
	echo "${SUITE} ${MIRROR} ${PACKAGES}"
	cat "${CACHE}/k8s-${K8S_VERSION}/stamp"
	sha256sum "${TOOLS}/pause" "${TOOLS}/mkimage" "${CRICTL}" "${SELF}" | cut -d" " -f1 # not the paths: any clone, same stamp
	cat "${ROOT}/_output/images/coredns.digest"
	(cd "${KIND_DIR}/images/base" && find files -type f -print0 | sort -z | xargs -0 sha256sum)
}
mkdir -p "${OUT}"
want=$(stamp | sha256sum | cut -d' ' -f1)
if [[ -f ${OUT}/node.tar && -f ${OUT}/node.stamp && $(<"${OUT}/node.stamp") == "${want}" ]]; then
	log "${OUT}/node.tar is up to date"
	exit 0
fi
start=${SECONDS}
# progress N WHAT: one line per step, with the time so far, so that a long
# first build shows it is working.
progress() { log "[$1/4] $2 (+$((SECONDS - start)) s)"; }

progress 1 "the Debian rootfs"
# 1. The Debian rootfs, kept between builds while the package list is the same.
BASE=${OUT}/debian
if [[ ! -f ${BASE}.done || $(<"${BASE}.done") != "${SUITE} ${MIRROR} ${PACKAGES}" ]]; then
	log "debootstrap ${SUITE} with ${PACKAGES} (about 1 minute; log: ${OUT}/debootstrap.log)"
	rm -rf "${BASE}" "${BASE}.done"
	debootstrap --variant=minbase --include="${PACKAGES}" "${SUITE}" "${BASE}" "${MIRROR}" \
		>"${OUT}/debootstrap.log" 2>&1 || die "debootstrap failed; log: ${OUT}/debootstrap.log"
	rm -rf "${BASE}"/var/cache/apt/archives/*.deb "${BASE}"/var/lib/apt/lists/* \
		"${BASE}"/usr/share/doc "${BASE}"/usr/share/man "${BASE}"/usr/share/locale
	echo "${SUITE} ${MIRROR} ${PACKAGES}" >"${BASE}.done"
fi

progress 2 "the node's tree"
# 2. The node's tree: a copy of the rootfs, then kind's layout.
NODE=${OUT}/node
rm -rf "${NODE}"
cp -a "${BASE}" "${NODE}"
CTR_PID=
cleanup() {
	if [[ -n ${CTR_PID} ]]; then
		kill "${CTR_PID}" 2>/dev/null || true
		wait "${CTR_PID}" 2>/dev/null || true
	fi
	rm -rf "${NODE}" "${OUT}/images" "${OUT}/kube-proxy-root" "${OUT}/containerd-state" "${OUT}/node.tar.tmp"
}
trap cleanup EXIT

# As kind's images/base/Dockerfile.
install -m 0755 "${KIND_FILES}"/usr/local/bin/* "${NODE}/usr/local/bin/"
mkdir -p "${NODE}/kind/bin" "${NODE}/LICENSES" "${NODE}/etc/kubernetes/manifests" "${NODE}/etc/systemd/system/kubelet.service.d"
cp -r "${KIND_FILES}/kind/." "${NODE}/kind/"
chmod -R u=rwX,go=rX "${NODE}/kind"
chmod 0755 "${NODE}"/kind/bin/*
cp "${KIND_FILES}"/LICENSES/* "${NODE}/LICENSES/"
for d in etc etc/containerd etc/default etc/sysctl.d etc/systemd/system etc/systemd/system/kubelet.service.d; do
	mkdir -p "${NODE}/${d}"
	find "${KIND_FILES}/${d}" -maxdepth 1 -type f -exec install -m 0644 {} "${NODE}/${d}/" \;
done
find "${NODE}/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
rm -f "${NODE}"/lib/systemd/system/multi-user.target.wants/* "${NODE}"/etc/systemd/system/*.wants/* \
	"${NODE}"/lib/systemd/system/local-fs.target.wants/* "${NODE}"/lib/systemd/system/sockets.target.wants/*udev* \
	"${NODE}"/lib/systemd/system/sockets.target.wants/*initctl* "${NODE}"/lib/systemd/system/basic.target.wants/*
echo "ReadKMsg=no" >>"${NODE}/etc/systemd/journald.conf"
ln -sf /usr/lib/systemd/systemd "${NODE}/sbin/init"
chroot "${NODE}" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1 ||
	die "systemctl enable in the node's rootfs failed"
chroot "${NODE}" systemctl mask systemd-binfmt.service >/dev/null 2>&1

# kind runs containerd from /usr/local/bin and the CNI plugins from /opt/cni/bin.
for b in containerd ctr containerd-shim-runc-v2; do ln -sf "/usr/bin/${b}" "${NODE}/usr/local/bin/${b}"; done
install -m 0755 "${CRICTL}" "${NODE}/usr/local/bin/crictl"
mkdir -p "${NODE}/opt/cni"
ln -sfn /usr/lib/cni "${NODE}/opt/cni/bin"
ctr oci spec |
	jq '.hooks.createContainer[.hooks.createContainer | length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
	jq 'del(.process.rlimits)' >"${NODE}/etc/containerd/cri-base.json"

# These machines: no CAP_SYS_RESOURCE, so no negative OOM score for containerd.
mkdir -p "${NODE}/etc/systemd/system/containerd.service.d"
cat >"${NODE}/etc/systemd/system/containerd.service.d/10-incluster.conf" <<'EOF'
# incluster (hack/kind-node-image.sh): kind's unit asks for OOMScoreAdjust=-999,
# which needs CAP_SYS_RESOURCE; the project's machines do not grant it.
[Service]
OOMScoreAdjust=0
EOF

# As kind's node-image builder: the Kubernetes binaries and version.
for b in kubeadm kubelet kubectl; do install -m 0755 "${K8S_BIN}/${b}" "${NODE}/usr/bin/${b}"; done
echo "${K8S_VERSION}" >"${NODE}/kind/version"

progress 3 "the images kubeadm expects"
# 3. The images kubeadm expects, written by mkimage (one binary each, root,
# as the official images; kubeadm's static pods name the command in PATH).
IMG=${OUT}/images
mkdir -p "${IMG}"
mk() { # mk NAME REF ARGS...
	local nm=$1 ref=$2
	shift 2
	"${TOOLS}/mkimage" -ref "${ref}" -out "${IMG}/${nm}.tar" -user 0:0 \
		-env PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@" >/dev/null || die "mkimage ${ref} failed"
}
expected=$("${K8S_BIN}/kubeadm" config images list --kubernetes-version "${K8S_VERSION}") ||
	die "kubeadm config images list failed"
ref_of() { grep -E "/$1:" <<<"${expected}" || die "kubeadm does not list an image named $1: ${expected//$'\n'/ }"; }
for c in kube-apiserver kube-controller-manager kube-scheduler; do
	mk "${c}" "$(ref_of "${c}")" -binary "${K8S_BIN}/${c}" -path "/usr/local/bin/${c}"
done
mk etcd "$(ref_of etcd)" -binary "${K8S_BIN}/etcd" -path /usr/local/bin/etcd
mk pause "$(ref_of pause)" -binary "${TOOLS}/pause" -path /pause
sandbox=$(sed -n 's/^ *sandbox_image *= *"\(.*\)"/\1/p' "${NODE}/etc/containerd/config.toml")
[[ -n ${sandbox} ]] || die "no sandbox_image in kind's containerd config.toml"
mk sandbox "${sandbox}" -binary "${TOOLS}/pause" -path /pause
cp "${ROOT}/_output/images/coredns.tar" "${IMG}/coredns.tar" # from images.sh all

# kube-proxy programs iptables: its image holds kube-proxy plus Debian's
# iptables (nft backend, as the node's), nft and conntrack with their
# libraries, like the official distroless-iptables base.
KP=${OUT}/kube-proxy-root
mkdir -p "${KP}/usr/local/bin" "${KP}/usr/sbin" "${KP}/usr/lib/x86_64-linux-gnu" "${KP}/usr/lib64" "${KP}/tmp" "${KP}/run"
for l in bin sbin lib lib64; do ln -s "usr/${l}" "${KP}/${l}"; done
install -m 0755 "${K8S_BIN}/kube-proxy" "${KP}/usr/local/bin/kube-proxy"
progs=(/usr/sbin/xtables-nft-multi /usr/sbin/nft /usr/sbin/conntrack)
libs=$(for p in "${progs[@]}" /usr/lib/x86_64-linux-gnu/xtables/*.so; do chroot "${NODE}" ldd "${p}"; done |
	grep -oE '/[^ ]+\.so[^ ]*' | sed -E 's#^/(lib|lib64)/#/usr/\1/#' | sort -u)
for f in ${libs}; do
	mkdir -p "${KP}$(dirname "${f}")"
	cp -L "${NODE}${f}" "${KP}${f}"
done
for p in "${progs[@]}"; do cp "${NODE}${p}" "${KP}${p}"; done
cp -r "${NODE}/usr/lib/x86_64-linux-gnu/xtables" "${KP}/usr/lib/x86_64-linux-gnu/"
for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore \
	iptables-nft iptables-nft-save iptables-nft-restore ip6tables-nft ip6tables-nft-save ip6tables-nft-restore; do
	ln -s xtables-nft-multi "${KP}/usr/sbin/${n}"
done
chmod 1777 "${KP}/tmp"
mk kube-proxy "$(ref_of kube-proxy)" -rootfs "${KP}" -path /usr/local/bin/kube-proxy

# Preload them as kind's builder does: a containerd (this machine's, the same
# Debian release as the node's) on the node's /var/lib/containerd imports the
# tarballs without unpacking; the node's containerd unpacks them on first use.
ST=${OUT}/containerd-state
mkdir -p "${ST}"
cat >"${ST}/config.toml" <<EOF
version = 2
root = "${NODE}/var/lib/containerd"
state = "${ST}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.internal.v1.opt", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "${ST}/containerd.sock"
[ttrpc]
  address = "${ST}/containerd.sock.ttrpc"
EOF
containerd --config "${ST}/config.toml" >"${ST}/containerd.log" 2>&1 &
CTR_PID=$!
for ((i = 0; i < 100; i++)); do
	ctr -a "${ST}/containerd.sock" version >/dev/null 2>&1 && break
	kill -0 "${CTR_PID}" 2>/dev/null || { cat "${ST}/containerd.log" >&2; die "containerd for the preload exited"; }
	sleep 0.1
done
for t in "${IMG}"/*.tar; do
	ctr -a "${ST}/containerd.sock" -n k8s.io images import --no-unpack --all-platforms "${t}" >/dev/null ||
		die "ctr images import ${t} failed"
done
# Pinned, as kind's builder does: kubelet's image GC never removes them.
refs=$(ctr -a "${ST}/containerd.sock" -n k8s.io images ls -q)
for r in ${refs}; do
	ctr -a "${ST}/containerd.sock" -n k8s.io images label "${r}" io.cri-containerd.pinned=pinned >/dev/null
done
log "preloaded: $(grep -v '^sha256:' <<<"${refs}" | tr '\n' ' ')"
kill "${CTR_PID}"
wait "${CTR_PID}" 2>/dev/null || true
CTR_PID=
rm -rf "${NODE}/var/lib/containerd/io.containerd.runtime.v2.task" "${NODE}/var/lib/containerd/tmpmounts"

progress 4 "the tarball"
# 4. One tarball of the tree; the stamp last, so a half-built image is never taken.
tar --numeric-owner -C "${NODE}" -cf "${OUT}/node.tar.tmp" .
mv "${OUT}/node.tar.tmp" "${OUT}/node.tar"
echo "${want}" >"${OUT}/node.stamp"
log "${OUT}/node.tar ($(du -m "${OUT}/node.tar" | cut -f1) MB) built in $((SECONDS - start)) s"
