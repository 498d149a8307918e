"""Node pools of the test's own: kwok GPU nodes with a label no other test uses.

A scheduling test selects its pool (`nodeSelector: {shunter.dev/node-pool: NAME}`),
so the shared 4 x 8-GPU nodes and other tests' Pods never change what it sees. The
nodes are deleted afterwards (with whatever ran there).
"""

from __future__ import annotations

import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from shunter.devcluster.nodes import POOL_LABEL, gpu_node
from tests.support.polling import wait_for


class NodePool:
    def __init__(self, api: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api)
        self.name = f"p-{uuid.uuid4().hex[:6]}"
        self.nodes: list[str] = []

    @property
    def selector(self) -> dict[str, str]:
        return {POOL_LABEL: self.name}

    def add(self, count: int = 1, *, gpus: int = 8) -> list[str]:
        """Add kwok nodes to the pool and wait until they are Ready."""
        names = [f"{self.name}-{len(self.nodes) + i}" for i in range(count)]
        for name in names:
            self.core.create_node(gpu_node(name, gpus=gpus, pool=self.name))
        self.nodes.extend(names)
        for name in names:
            wait_for(lambda n=name: self._ready(n), timeout=60, what=f"node {name} to be Ready")
        return names

    def _ready(self, name: str) -> bool:
        node = self.core.read_node(name)
        return any(c.type == "Ready" and c.status == "True" for c in node.status.conditions or [])

    def foreign_pod(self, namespace: str, node: str, *, gpus: int) -> dict[str, Any]:
        """A Pod that is not Shunter's, holding GPUs on a node of the pool."""
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"foreign-{uuid.uuid4().hex[:6]}", "namespace": namespace},
            "spec": {
                "nodeName": node,
                "containers": [{"name": "c", "image": "busy",
                                "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}],
                "tolerations": [{"operator": "Exists"}],
            },
        }  # fmt: skip
        return self.core.create_namespaced_pod(namespace, body).to_dict()  # type: ignore[no-any-return]

    def remove(self) -> None:
        for name in self.nodes:
            try:
                self.core.delete_node(name)
            except ApiException as exc:
                if exc.status != 404:
                    raise
        self.nodes.clear()
