"""The informer against the real API server: a client reading its own write."""

from __future__ import annotations

import asyncio
from pathlib import Path

from shunter.domain.model import Job, JobKey
from shunter.kube import Informer, Kube, connect
from shunter.kube.resources import TRAINING_JOBS
from tests.support.builders import a_training_job


async def test_a_write_is_visible_once_its_version_is_seen(
    kubeconfig: Path, namespace: str, crd: None
):
    kube = Kube(connect(kubeconfig))
    informer: Informer[JobKey, Job] = Informer(
        kube, TRAINING_JOBS, namespace=namespace, parse=Job.parse, key=lambda j: j.key
    )
    informer.start()
    try:
        await asyncio.wait_for(informer.synced.wait(), 30)
        manifest = a_training_job("rw", namespace).manifest()
        created = await kube.create(TRAINING_JOBS, manifest, namespace=namespace)
        assert await informer.wait_version(created["metadata"]["resourceVersion"], within=10)
        assert informer.get(JobKey(namespace, "rw")) is not None
        await kube.delete(TRAINING_JOBS, "rw", namespace=namespace)
        assert await informer.wait_until(JobKey(namespace, "rw"), lambda j: j is None, within=10)
    finally:
        await informer.stop()
        await kube.close()
