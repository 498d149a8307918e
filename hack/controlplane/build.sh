#!/usr/bin/env bash
# Builds the local control plane's binaries (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok) and helm from the Go modules pinned in
# the go.mod files beside this script, into $SHUNTER_BIN_DIR (default
# ~/.cache/shunter/bin). Each module is rebuilt only when its go.mod/go.sum change: a
# stamp holding their hash sits beside the binaries.
#
#   build.sh              the control plane
#   build.sh --realnode   the control plane, then the real worker node's parts
#                         (build-realnode.sh: kubelet, kube-proxy, containerd, runc, ...)
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/build-lib.sh"

build_module etcd etcd "-s -w" etcd=go.etcd.io/etcd/server/v3
build_module kwok kwok "-s -w" kwok=sigs.k8s.io/kwok/cmd/kwok
helm_version=$(sed -nE 's/^require helm\.sh\/helm\/v3 (v[0-9.]+)$/\1/p' "$here/helm/go.mod")
# Helm's default Kubernetes version (for `helm template` and lint) follows its client-go.
helm_k8s_minor=$(sed -nE 's/^\s*k8s\.io\/client-go v0\.([0-9]+)\..*/\1/p' "$here/helm/go.mod" | head -1)
helm_ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version"
for pkg in helm.sh/helm/v3/pkg/chartutil helm.sh/helm/v3/pkg/lint/rules; do
  helm_ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$helm_k8s_minor"
done
build_module helm helm "$helm_ldflags" \
  helm=helm.sh/helm/v3/cmd/helm
build_module kubernetes kubernetes "$ldflags_k8s" \
  kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kube-controller-manager=k8s.io/kubernetes/cmd/kube-controller-manager \
  kube-scheduler=k8s.io/kubernetes/cmd/kube-scheduler \
  kubectl=k8s.io/kubernetes/cmd/kubectl

if [ "${1:-}" = --realnode ]; then
  exec "$here/build-realnode.sh"
fi
