"""The cancel's write on the real API server (shunter.domain.actions.guarded_patch): it
holds the job to the uid, spec and phase its answer was decided on, not to the whole
object. A position the operator moved since the read does not refuse it (no retry);
a new phase or a changed spec does (the API reads the job again and decides anew)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from shunter.domain.actions import guarded_patch
from shunter.domain.model import CANCELLED_BY, GROUP, PLURAL, VERSION, Job
from shunter.kube import Invalid, Kube, connect
from shunter.kube.client import JSON_PATCH
from shunter.kube.resources import TRAINING_JOBS
from tests.support.builders import a_training_job
from tests.support.operator import Jobs


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[Kube]:
    client = Kube(connect(kubeconfig))
    yield client
    await client.close()


async def _cancel(kube: Kube, jobs: Jobs, read: Job) -> dict[str, Any]:
    ops = guarded_patch(read, {"cancelled": True}, {CANCELLED_BY: "alice"})
    assert ops is not None
    return await kube.patch(TRAINING_JOBS, read.key.name, ops, namespace=jobs.namespace,
                            content_type=JSON_PATCH)  # fmt: skip


async def test_a_moved_position_does_not_refuse_a_cancel(kube: Kube, jobs: Jobs):
    jobs.create(a_training_job("q").submitted_by("alice"))
    jobs.patch_status("q", {"phase": "queued", "queuePosition": 3})
    read = Job.parse(jobs.get("q"))
    jobs.patch_status("q", {"queuePosition": 2, "message": "Waiting in queue"})
    assert Job.parse(jobs.get("q")).resource_version != read.resource_version

    body = await _cancel(kube, jobs, read)
    assert body["spec"]["cancelled"] is True
    assert body["metadata"]["annotations"][CANCELLED_BY] == "alice"
    assert body["status"]["queuePosition"] == 2  # the operator's write stays


async def test_a_job_without_annotations_gets_them_unless_some_came_meanwhile(
    kube: Kube, jobs: Jobs
):
    for name in ("bare", "annotated-meanwhile"):
        jobs.create(a_training_job(name))  # as kubectl creates it: no annotations
        jobs.patch_status(name, {"phase": "queued", "queuePosition": 1})
    bare, meanwhile = (Job.parse(jobs.get(n)) for n in ("bare", "annotated-meanwhile"))
    assert not bare.annotated
    body = await _cancel(kube, jobs, bare)
    assert body["metadata"]["annotations"] == {CANCELLED_BY: "alice"}

    jobs.custom.patch_namespaced_custom_object(
        GROUP, VERSION, jobs.namespace, PLURAL, "annotated-meanwhile",
        {"metadata": {"annotations": {"team.example/owner": "bob"}}},
    )  # fmt: skip
    with pytest.raises(Invalid):  # theirs would have been replaced: refused, read again
        await _cancel(kube, jobs, meanwhile)
    assert jobs.get("annotated-meanwhile")["metadata"]["annotations"] == {
        "team.example/owner": "bob"
    }


async def test_a_new_phase_or_a_changed_spec_refuses_a_cancel(kube: Kube, jobs: Jobs):
    for name in ("admitted", "reprioritised"):
        jobs.create(a_training_job(name).submitted_by("alice"))
        jobs.patch_status(name, {"phase": "queued", "queuePosition": 1})
    admitted, reprioritised = (Job.parse(jobs.get(n)) for n in ("admitted", "reprioritised"))
    jobs.patch_status("admitted", {"phase": "starting", "queuePosition": None})
    jobs.patch_spec("reprioritised", {"priority": 5})
    for read in (admitted, reprioritised):
        with pytest.raises(Invalid):  # the API then reads the job live and decides again
            await _cancel(kube, jobs, read)
        assert not jobs.get(read.key.name)["spec"].get("cancelled")
