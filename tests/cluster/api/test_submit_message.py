"""The 201 body's warning that a job cannot run comes from the API server's Nodes, not
from a watch that may lag: a node that came a moment ago counts. (The lag is injected:
a cache that has not seen the new node yet; the Nodes are the real API server's.)"""

from __future__ import annotations

from pathlib import Path

from shunter.api.service import TrainingService
from shunter.api.settings import ApiSettings
from shunter.domain.model import Job
from shunter.kube import Kube, connect
from tests.support.builders import a_training_job
from tests.support.nodes import NodePool


class LaggingCache:
    """A watch cache that has not yet seen the pool's node."""

    def __init__(self, warning: str) -> None:
        self.warning = warning

    def never_fits(self, job: Job) -> str | None:
        return self.warning


def a_job(pool: NodePool, gpus: int) -> Job:
    return a_training_job("j").with_gpus(gpus).with_spec(nodeSelector=pool.selector).job()


async def test_a_warning_from_a_lagging_cache_is_checked_against_the_api_server(
    kubeconfig: Path, node_pool: NodePool
):
    node_pool.add(1, gpus=8)
    lag = f"no node in pool {node_pool.name} matches its node selector and tolerations"
    kube = Kube(connect(kubeconfig))
    service = TrainingService(kube, LaggingCache(lag), None, ApiSettings())  # type: ignore[arg-type]
    try:
        assert await service.submit_message(a_job(node_pool, 8)) == "Job submitted"
        assert await service.submit_message(a_job(node_pool, 64)) == (
            "Job submitted, but it cannot run on this cluster as it is: needs 64 GPUs on one"
            f" node; the largest node in pool {node_pool.name} has 8; it waits until a node"
            " that fits appears"
        )
    finally:
        await kube.close()
