"""The cancel decision (pure) and its race with a job finishing at the same moment.

The race needs a fault a real server will not produce on demand (a job completing
between our read and our patch), so a stand-in Cluster injects it: the first patch
meets a changed resourceVersion (409), exactly what the API server answers then.
"""

from __future__ import annotations

from typing import Any

import pytest

from shunter.api.cancelling import decide_cancel
from shunter.api.cluster import Conflict
from shunter.api.service import TrainingService
from shunter.api.settings import ApiSettings
from shunter.operator.model import Job, JobKey
from tests.support.builders import a_training_job


@pytest.mark.parametrize(
    ("phase", "cancelled", "expected"),
    [
        ("queued", False, (200, True, "queued", "Job removed from queue and cancelled")),
        ("running", False, (200, True, "running", "Job cancelled (was running)")),
        ("starting", False, (200, True, "starting", "Job cancelled (was starting)")),
        ("running", True, (409, False, "cancelling", "Job is already being cancelled")),
        ("cancelling", True, (409, False, "cancelling", "Job is already being cancelled")),
        (
            "completed",
            False,
            (409, False, "completed", "Job already finished with status: completed"),
        ),
        (
            "cancelled",
            True,
            (409, False, "cancelled", "Job already finished with status: cancelled"),
        ),
        ("failed", False, (409, False, "failed", "Job already finished with status: failed")),
    ],
)
def test_decision_table(phase: str, cancelled: bool, expected: tuple[Any, ...]):
    builder = a_training_job("j").in_phase(phase)
    job = (builder.cancelled() if cancelled else builder).job()
    outcome = decide_cancel(job)
    assert (
        outcome.http_status,
        outcome.success,
        outcome.previous_status,
        outcome.message,
    ) == expected
    assert outcome.send_patch == (expected[0] == 200)


def test_unknown_job():
    outcome = decide_cancel(None)
    assert (outcome.http_status, outcome.previous_status, outcome.message) == (
        404,
        None,
        "Job not found",
    )


class RacingCluster:
    """Serves a running job; it completes just as the first cancel patch arrives."""

    def __init__(self) -> None:
        self.running = a_training_job("race").in_phase("running").body()
        self.completed = a_training_job("race").in_phase("completed").body()
        self.completed["metadata"]["uid"] = self.running["metadata"]["uid"]
        self.completed["metadata"]["resourceVersion"] = "101"
        self.current = self.running
        self.patches: list[str] = []

    def get_job(self, key: JobKey) -> dict[str, Any]:
        return self.current

    def request_cancel(self, key: JobKey, *, resource_version: str) -> dict[str, Any]:
        self.patches.append(resource_version)
        self.current = self.completed  # the trainer finished meanwhile
        raise Conflict("the object has been modified", status=409)


class Cache:
    def put(self, body: dict[str, Any]) -> Job:
        return Job.parse(body)

    def jobs(self, namespace: str | None = None) -> list[Job]:
        return []


def test_a_job_finishing_during_the_cancel_gets_one_consistent_answer():
    cluster = RacingCluster()
    service = TrainingService(cluster, Cache(), None, ApiSettings(cancel_wait_seconds=0))  # type: ignore[arg-type]
    outcome = service.cancel(JobKey("default", "race"))
    assert cluster.patches == ["100"]  # one patch, with the version it read; refused
    assert (outcome.http_status, outcome.success, outcome.message) == (
        409,
        False,
        "Job already finished with status: completed",
    )
