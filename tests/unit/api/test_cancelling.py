"""The cancel decision (pure) and its race with a job finishing at the same moment.

The race needs a fault a real server will not produce on demand (a job completing
between our read and our patch), so a stand-in Cluster injects it: the first patch
meets a changed resourceVersion (409), exactly what the API server answers then.
"""

from __future__ import annotations

from typing import Any

import pytest

from shunter.api.auth import Principal
from shunter.api.service import TrainingService
from shunter.api.settings import ApiSettings
from shunter.domain.actions import decide_cancel
from shunter.domain.model import Job, JobKey
from shunter.kube import Conflict
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


class RacingKube:
    """Serves a running job; it completes just as the first cancel patch arrives (a
    race a real API server cannot be made to lose on demand)."""

    def __init__(self) -> None:
        self.running = a_training_job("race").in_phase("running").body()
        self.completed = a_training_job("race").in_phase("completed").body()
        self.completed["metadata"]["uid"] = self.running["metadata"]["uid"]
        self.completed["metadata"]["resourceVersion"] = "101"
        self.current = self.running
        self.patches: list[str] = []

    async def get(self, *_: Any, **__: Any) -> dict[str, Any]:
        return self.current

    def as_user(self, _identity: Any) -> RacingKube:
        return self  # the caller's writes race the same way

    async def patch(self, _resource: Any, _name: str, patch: dict[str, Any], **_: Any) -> Any:
        self.patches.append(patch["metadata"]["resourceVersion"])
        self.annotations = patch["metadata"]["annotations"]
        self.current = self.completed  # the trainer finished meanwhile
        raise Conflict("the object has been modified", status=409)


class StaleCache:
    """A watch cache that still shows the job running."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.job = Job.parse(body)

    def get(self, key: JobKey) -> Job:
        return self.job


async def test_a_job_finishing_during_the_cancel_gets_one_consistent_answer():
    kube = RacingKube()
    settings = ApiSettings(cancel_wait_seconds=0)
    service = TrainingService(kube, StaleCache(kube.running), None, settings)  # type: ignore[arg-type]
    outcome = await service.cancel(JobKey("default", "race"), caller=Principal("alice"))
    assert kube.patches == ["100"]  # one patch, with the version it read; refused
    assert kube.annotations == {"shunter.dev/cancelled-by": "alice"}  # in the same write
    assert (outcome.http_status, outcome.success, outcome.message) == (
        409,
        False,
        "Job already finished with status: completed",
    )
