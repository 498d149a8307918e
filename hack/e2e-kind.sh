#!/usr/bin/env bash
# The e2e suite on kind, for machines with Docker (users' CI). It cannot run on our
# own machines (no Docker engine), where `make test` starts a local control plane
# instead; the suite is the same, pointed at kind through KUBECONFIG.
#
#   make e2e-kind                 # create, test, delete
#   KEEP_CLUSTER=1 make e2e-kind  # leave the cluster running afterwards
#
# Needs: docker, kind (https://kind.sigs.k8s.io), and this repo's `make controlplane`
# (for kwok and helm; the kind cluster brings its own Kubernetes).
set -euo pipefail
cd "$(dirname "$0")/.."
name=${KIND_CLUSTER:-shunter-e2e}
image=shunter/shunter:e2e
kubeconfig=${HOME}/.cache/shunter/kind-${name}.kubeconfig
bin=${SHUNTER_BIN_DIR:-$HOME/.cache/shunter/bin}

for tool in docker kind; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: $tool is required" >&2; exit 2; }
done

cleanup() {
  .venv/bin/shunter-dev cluster down --name "kind-$name" || true
  [ -n "${KEEP_CLUSTER:-}" ] || kind delete cluster --name "$name" || true
}
trap cleanup EXIT

# 1. A kind cluster (its Kubernetes version is kind's node image's).
kind get clusters | grep -qx "$name" || kind create cluster --name "$name" --wait 120s
kind get kubeconfig --name "$name" > "$kubeconfig"

# 2. The operator/API image, loaded into the cluster's nodes.
docker build -t "$image" .
kind load docker-image "$image" --name "$name"

# 3. The chart, as users install it. Its operator serves one namespace only, so it
#    never competes with the operators the test suite starts in its own namespaces.
"$bin/helm" upgrade --install shunter charts/shunter --kubeconfig "$kubeconfig" \
  --namespace shunter-system --create-namespace \
  --set image.repository="${image%:*}" --set image.tag="${image#*:}" \
  --set image.pullPolicy=Never --set admission.watchNamespace=shunter-jobs \
  --wait --timeout 180s

# 4. kwok, run from here, adds fake GPU nodes and pod lifecycles to kind.
.venv/bin/shunter-dev cluster simulate --name "kind-$name" --kubeconfig "$kubeconfig"

# 5. The same e2e suite, against kind.
KUBECONFIG="$kubeconfig" make test
