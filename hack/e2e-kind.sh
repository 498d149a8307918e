#!/usr/bin/env bash
# The e2e suite on kind, for machines with Docker (users' CI). It cannot run on our
# own machines (no Docker engine), where `make test` starts a local control plane
# instead; the suite is the same, pointed at kind through KUBECONFIG.
#
#   make e2e-kind                 # create, test, delete
#   KEEP_CLUSTER=1 make e2e-kind  # leave the cluster running afterwards
#
# Needs: docker, kind (https://kind.sigs.k8s.io), and this repo's `make controlplane`
# (for kwok, kubectl and helm; the kind cluster brings its own Kubernetes). The trainer
# image pulls pytorch/pytorch (several GB) on its first build.
set -euo pipefail
cd "$(dirname "$0")/.."
name=${KIND_CLUSTER:-shunter-e2e}
image=shunter/shunter:e2e
trainer_image=shunter/trainer:e2e
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

# 1. A kind cluster (its Kubernetes version is kind's node image's) with one worker:
#    the "real node" of the suite, labelled and tainted as `make test`'s local one is,
#    so tests/realnode selects it by label and runs unchanged.
if ! kind get clusters | grep -qx "$name"; then
  printf 'kind: Cluster\napiVersion: kind.x-k8s.io/v1alpha4\nnodes:\n- role: control-plane\n- role: worker\n' \
    | kind create cluster --name "$name" --wait 120s --config -
fi
kind get kubeconfig --name "$name" > "$kubeconfig"
worker="$name-worker"
"$bin/kubectl" --kubeconfig "$kubeconfig" label node "$worker" --overwrite shunter.dev/node-pool=real
"$bin/kubectl" --kubeconfig "$kubeconfig" taint node "$worker" --overwrite \
  shunter.dev/real-node=true:NoSchedule

# 2. The operator/API image and the trainer image, from the project's Dockerfiles as
#    they are (their public base images), loaded into the cluster's nodes.
docker build -t "$image" .
docker build -t "$trainer_image" trainer-image/
kind load docker-image "$image" "$trainer_image" --name "$name"

# 3. The chart, as users install it. Its operator serves one namespace only, so it
#    never competes with the operators the test suite starts in its own namespaces.
"$bin/helm" upgrade --install shunter charts/shunter --kubeconfig "$kubeconfig" \
  --namespace shunter-system --create-namespace \
  --set image.repository="${image%:*}" --set image.tag="${image#*:}" \
  --set image.pullPolicy=Never --set "admission.watchNamespaces={shunter-jobs}" \
  --wait --timeout 180s

# 4. kwok, run from here, adds fake GPU nodes and pod lifecycles to kind.
.venv/bin/shunter-dev cluster simulate --name "kind-$name" --kubeconfig "$kubeconfig"

# 5. The same e2e suite, against kind. The real-node tests reach the worker with
#    `docker exec` (crictl, its process table, stopping its kubelet).
KUBECONFIG="$kubeconfig" SHUNTER_IMAGE="$image" SHUNTER_TRAINER_IMAGE="$trainer_image" \
  SHUNTER_REAL_NODE_EXEC="docker exec $worker" make test
