#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# as-pod.sh SA_DIR COMMAND [ARG...]: run COMMAND on this host as if in a pod:
# in a private mount namespace where a tmpfs hides the host's /run and SA_DIR
# appears at /var/run/secrets/kubernetes.io/serviceaccount. Nothing on the
# host changes. The caller sets KUBERNETES_SERVICE_HOST/PORT. Root, or
# unprivileged user namespaces. Used by the e2e suite and by make bench.
set -euo pipefail
[[ $# -ge 2 && -d $1 ]] || { echo "usage: as-pod.sh SA_DIR COMMAND [ARG...] (SA_DIR: a folder with token, ca.crt, namespace)" >&2; exit 2; }
sa_dir=$1
shift
flags=(--mount --propagation private)
if ((EUID != 0)); then flags=(--user --map-root-user "${flags[@]}"); fi
# shellcheck disable=SC2016 # $0 and $@ belong to the inner shell
exec unshare "${flags[@]}" /bin/sh -c 'set -e
mount -t tmpfs -o size=1m,mode=755 tmpfs /run
mkdir -p /run/secrets/kubernetes.io/serviceaccount
mount --bind "$0" /run/secrets/kubernetes.io/serviceaccount
exec "$@"' "${sa_dir}" "$@"
