#!/usr/bin/env bash
# Builds the real worker node's parts into $SHUNTER_BIN_DIR (default
# ~/.cache/shunter/bin), each from a Go module pinned beside this script and only when
# its pins changed or a binary is missing (stamps, as in build.sh):
#   kubelet, kube-proxy    k8s.io/kubernetes (the control plane's module)
#   containerd, containerd-shim-runc-v2, ctr
#   runc                   cgo + libseccomp (Pods with seccompProfile RuntimeDefault)
#   cni/{bridge,host-local,loopback}
#   buildkitd, buildctl    builds the project's images (make images)
#   crictl                 inspects and cleans up the node's containers
#   pause                  the Pod sandbox's process, from the kubernetes module's pause.c
# Installs the Debian packages it needs first (hack/install-deps.sh realnode).
set -euo pipefail
. "$(cd "$(dirname "$0")" && pwd)/build-lib.sh"
"$here/../install-deps.sh" realnode

mod_version() { sed -nE "s#^require $1 (v[0-9.]+)\$#\\1#p" "$here/$2/go.mod"; }

build_module kubernetes kubernetes-node "$ldflags_k8s" \
  kubelet=k8s.io/kubernetes/cmd/kubelet \
  kube-proxy=k8s.io/kubernetes/cmd/kube-proxy

v=$(mod_version github.com/containerd/containerd/v2 containerd)
build_module containerd containerd \
  "-s -w -X github.com/containerd/containerd/v2/version.Version=$v -X github.com/containerd/containerd/v2/version.Package=github.com/containerd/containerd/v2" \
  containerd=github.com/containerd/containerd/v2/cmd/containerd \
  containerd-shim-runc-v2=github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2 \
  ctr=github.com/containerd/containerd/v2/cmd/ctr

# runc needs cgo (its nsenter) and libseccomp: without the seccomp tag, a Pod asking
# for seccompProfile RuntimeDefault (restricted Pod Security) cannot start.
v=$(mod_version github.com/opencontainers/runc runc)
CGO=1 TAGS="seccomp urfave_cli_no_docs" build_module runc runc \
  "-s -w -X main.version=${v#v}" runc=github.com/opencontainers/runc

v=$(mod_version github.com/containernetworking/plugins cni-plugins)
cni=github.com/containernetworking/plugins
build_module cni-plugins cni-plugins \
  "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$v" \
  cni/bridge=$cni/plugins/main/bridge \
  cni/loopback=$cni/plugins/main/loopback \
  cni/host-local=$cni/plugins/ipam/host-local

v=$(mod_version github.com/moby/buildkit buildkit)
TAGS="osusergo netgo static_build seccomp" build_module buildkit buildkit \
  "-s -w -X github.com/moby/buildkit/version.Version=$v -X github.com/moby/buildkit/version.Package=github.com/moby/buildkit" \
  buildkitd=github.com/moby/buildkit/cmd/buildkitd \
  buildctl=github.com/moby/buildkit/cmd/buildctl

v=$(mod_version sigs.k8s.io/cri-tools cri-tools)
build_module cri-tools cri-tools "-s -w -X sigs.k8s.io/cri-tools/pkg/version.Version=$v" \
  crictl=sigs.k8s.io/cri-tools/cmd/crictl

# The sandbox ("pause") process: a static C program shipped in the kubernetes module.
pause_src=$(cd "$here/kubernetes" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
want=$(cat "$pause_src" | sha256sum | cut -d' ' -f1)
if [ ! -x "$SHUNTER_BIN_DIR/pause" ] || [ "$(cat "$SHUNTER_BIN_DIR/.pause.stamp" 2>/dev/null)" != "$want" ]; then
  gcc -Os -Wall -Werror -static -DVERSION="$k8s_version" -o "$SHUNTER_BIN_DIR/pause" "$pause_src"
  strip "$SHUNTER_BIN_DIR/pause"
  echo "$want" > "$SHUNTER_BIN_DIR/.pause.stamp"
  echo "build: pause built"
else
  echo "build: pause is up to date"
fi
echo "build: real-node parts done"
