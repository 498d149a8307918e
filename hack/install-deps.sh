#!/usr/bin/env bash
# Installs the Debian packages a make target needs, only those missing (fast and
# silent when nothing is). Called by the Makefile, so `make demo` and `make test` work
# on a fresh Debian machine without a separate install step.
#
#   hack/install-deps.sh GROUP...
#     base      make, openssl, python3-venv (the venv, the control plane's certificates)
#     browser   chromium (the web UI's browser test; no browser downloads here)
#     realnode  what the real worker node and the image builds need: a C toolchain and
#               libseccomp-dev (runc), iptables, nftables and conntrack (kubelet,
#               kube-proxy, CNI), mmdebstrap (the images' base root filesystem)
#     bench     wrk (the API benchmark's HTTP load generator)
set -euo pipefail

packages() {
  case $1 in
    base) echo make openssl python3-venv ;;
    browser) echo chromium ;;
    realnode) echo gcc libc6-dev libseccomp-dev iptables nftables conntrack mmdebstrap ca-certificates ;;
    bench) echo wrk ;;
    *) echo "install-deps: unknown group $1" >&2; exit 2 ;;
  esac
}

missing=()
for group in "$@"; do
  for pkg in $(packages "$group"); do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing+=("$pkg")
  done
done
[ ${#missing[@]} -gt 0 ] || exit 0

if [ "$(id -u)" != 0 ]; then
  echo "install-deps: missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}" >&2
# Other jobs on the machine may hold the dpkg lock: wait for it rather than fail.
apt_opts=(-o DPkg::Lock::Timeout=600 -qq)
apt-get "${apt_opts[@]}" update >&2
DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y \
  "${missing[@]}" >&2
