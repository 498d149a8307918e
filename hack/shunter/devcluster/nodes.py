"""Fake GPU nodes for kwok: Node objects whose status advertises nvidia.com/gpu.

The scheduler counts GPU limits against `allocatable` for real, so a pod asking for
more GPUs than remain stays Pending exactly as on a GPU cluster.
"""

from __future__ import annotations

from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
POOL_LABEL = "shunter.dev/node-pool"


def gpu_node(
    name: str, *, gpus: int, cpu: str = "64", memory: str = "512Gi", pool: str = "gpu"
) -> dict[str, Any]:
    """A Node manifest that kwok manages (selected by its annotation)."""
    resources = {"cpu": cpu, "memory": memory, "pods": "110", GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "nvidia.com/gpu.present": "true",
                "type": "kwok",
                POOL_LABEL: pool,
            },
        },
        "spec": {},
        "status": {"allocatable": dict(resources), "capacity": dict(resources)},
    }


def gpu_nodes(count: int, *, gpus: int, prefix: str = "gpu-node") -> list[dict[str, Any]]:
    return [gpu_node(f"{prefix}-{i}", gpus=gpus) for i in range(count)]
