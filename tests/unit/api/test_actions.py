"""The actions a job offers (pure): the one rule the UI renders.

An action is offered exactly when its route would carry it out: the same decision
functions answer both, checked here over every phase and request flag.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from shunter.api.schemas import JobPublic
from shunter.domain.actions import (
    Action,
    allowed_actions,
    decide_cancel,
    decide_resume,
    decide_suspend,
    guarded_patch,
)
from shunter.domain.model import CANCELLED_BY, Phase
from tests.support.builders import TrainingJobBuilder, a_training_job, an_appraisal

AT = an_appraisal()

DECIDE = {Action.CANCEL: decide_cancel, Action.SUSPEND: decide_suspend,
          Action.RESUME: decide_resume}  # fmt: skip


def a_job(phase: str, *, cancelled: bool = False, suspended: bool = False) -> TrainingJobBuilder:
    builder = a_training_job("j").in_phase(phase)
    if suspended:
        builder = builder.with_spec(suspended=True)
    return builder.cancelled() if cancelled else builder


@pytest.mark.parametrize("phase", [p.value for p in Phase])
@pytest.mark.parametrize("cancelled", [False, True])
@pytest.mark.parametrize("suspended", [False, True])
def test_an_action_is_offered_exactly_when_its_route_would_carry_it_out(
    phase: str, cancelled: bool, suspended: bool
):
    job = a_job(phase, cancelled=cancelled, suspended=suspended).job()
    offered = allowed_actions(job)
    assert set(offered) == {a for a, decide in DECIDE.items() if decide(job).send_patch}
    assert offered == sorted(offered, key=list(Action).index)  # a stable order for the UI


@pytest.mark.parametrize(
    ("builder", "expected"),
    [
        (a_training_job("new"), ["suspend", "cancel"]),
        (a_job("queued"), ["suspend", "cancel"]),
        (a_job("running"), ["suspend", "cancel"]),
        (a_job("running", cancelled=True), []),
        (a_job("suspended", suspended=True), ["resume", "cancel"]),
        (a_job("completed"), []),
        (a_job("cancelled", cancelled=True), []),
    ],
)
def test_what_users_see(builder: TrainingJobBuilder, expected: list[str]):
    assert allowed_actions(builder.job()) == expected


def test_the_public_view_carries_the_actions_and_who_did_it():
    job = a_training_job("j").submitted_by("alice").in_phase("running").job()
    view = JobPublic.of(job, at=AT)
    assert view.actions == ["suspend", "cancel"]
    assert (view.submitted_by, view.cancelled_by) == ("alice", None)
    done = JobPublic.of(
        a_training_job("k").submitted_by("alice").cancelled(by="bob").in_phase("cancelled").job(),
        at=AT,
    )
    assert done.actions == []
    assert done.cancelled_by == "bob"


def _stopping(cause: str, **status: object) -> TrainingJobBuilder:
    termination = {"step": "graceful", "cause": cause, "requestedAt": "2026-03-01T12:00:00Z"}
    return a_training_job("j").in_phase("stopping", termination=termination, **status)


@pytest.mark.parametrize(
    ("builder", "suspend"),
    [
        (_stopping("deadline"),
         (409, "Job is stopping: it ran past its maxRuntimeSeconds and ends failed")),
        (_stopping("failure"),
         (409, "Job is stopping: a Pod failed with no retry left and it ends failed")),
        (_stopping("failure").with_spec(backoffLimit=1), (200, "Job suspended (was stopping)")),
        (_stopping("preempt"), (200, "Job suspended (was stopping)")),
        (_stopping("start-timeout"),
         (409, "Job is stopping: it did not start in time; ask again once it is back in the"
               " queue")),
    ],
)  # fmt: skip
def test_a_suspend_during_a_stop_is_promised_only_where_the_stop_leads_back(
    builder: TrainingJobBuilder, suspend: tuple[int, str]
):
    answer = decide_suspend(builder.job())
    assert (answer.http_status, answer.message) == suspend
    assert (Action.SUSPEND in allowed_actions(builder.job())) == (suspend[0] == 200)


def test_a_cancel_is_guarded_by_uid_generation_and_phase_once_the_job_has_a_phase():
    """(The patch itself on the API server: tests/cluster/api/test_cancel_guard.py.)"""
    cancel, by = {"cancelled": True}, {CANCELLED_BY: "alice"}
    queued = replace(a_training_job("q").submitted_by("alice").in_phase("queued").job(),
                     generation=1)  # fmt: skip
    ops = guarded_patch(queued, cancel, by)
    assert ops is not None
    assert [o for o in ops if o["op"] == "test"] == [
        {"op": "test", "path": "/metadata/uid", "value": queued.uid},
        {"op": "test", "path": "/metadata/generation", "value": 1},
        {"op": "test", "path": "/status/phase", "value": "queued"},
    ]
    assert {"op": "add", "path": "/metadata/annotations/shunter.dev~1cancelled-by",
            "value": "alice"} in ops  # fmt: skip
    assert guarded_patch(replace(queued, status=replace(queued.status, phase=None)), cancel,
                         by) is None  # fmt: skip
    bare = guarded_patch(replace(queued, annotated=False), cancel, by)
    assert bare is not None
    assert bare[-2:] == [{"op": "test", "path": "/metadata/annotations", "value": None},
                         {"op": "add", "path": "/metadata/annotations", "value": by}]  # fmt: skip
