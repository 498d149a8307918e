"""Fenced writes against the real API server: a status write carries the version its
decision saw and is refused (409) once anyone wrote the job since; a replica that
does not lead sends nothing at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from shunter.domain.model import JobKey
from shunter.domain.podspec import build_pod
from shunter.kube import Conflict, Kube, connect
from shunter.operator.actions import Actions, Fenced
from tests.support.builders import a_training_job
from tests.support.operator import Jobs


async def test_a_status_write_from_a_stale_version_is_refused(kubeconfig: Path, jobs: Jobs):
    kube = Kube(connect(kubeconfig))
    actions = Actions(kube)
    key = JobKey(jobs.namespace, "fenced")
    created = jobs.create(a_training_job("fenced"))
    try:
        first = await actions.patch_job_status(
            key, {"phase": "queued", "sequence": 1}, version=created["metadata"]["resourceVersion"]
        )
        seen = first["metadata"]["resourceVersion"]
        jobs.patch_spec("fenced", {"priority": 5})  # someone writes the job meanwhile

        with pytest.raises(Conflict):
            await actions.patch_job_status(key, {"phase": "starting"}, version=seen)
        assert jobs.phase("fenced") == "queued"

        # Decided again from the newer version, the same write goes through.
        newer = jobs.get("fenced")["metadata"]["resourceVersion"]
        await actions.patch_job_status(key, {"phase": "starting"}, version=newer)
        assert jobs.phase("fenced") == "starting"
    finally:
        await kube.close()


async def test_a_replica_that_does_not_lead_sends_no_write(kubeconfig: Path, jobs: Jobs):
    kube = Kube(connect(kubeconfig))
    follower = Actions(kube, budget=lambda: None)
    created = jobs.create(a_training_job("follower"))
    key = JobKey(jobs.namespace, "follower")
    try:
        with pytest.raises(Fenced):
            await follower.patch_job_status(
                key, {"phase": "queued"}, version=created["metadata"]["resourceVersion"]
            )
        job = a_training_job("follower", jobs.namespace).with_gpus(0).job()
        with pytest.raises(Fenced):
            await follower.create(build_pod(job))
        with pytest.raises(Fenced):
            await follower.delete_pod(jobs.namespace, "follower-trainer", grace_seconds=0)
        # A write window about to close is not even tried either.
        closing = Actions(kube, budget=lambda: 0.05)
        with pytest.raises(Fenced):
            await closing.create(build_pod(job))
        assert jobs.status("follower") == {}
        assert jobs.pod_names() == []
    finally:
        await kube.close()
