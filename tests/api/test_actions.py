"""The actions a job offers (pure): the one rule the UI renders."""

from __future__ import annotations

import pytest

from shunter.api.actions import Action, allowed_actions
from shunter.api.cancelling import decide_cancel
from shunter.api.schemas import JobPublic
from tests.support.builders import a_training_job

PHASES = ["queued", "starting", "running", "cancelling", "completed", "failed", "cancelled"]


@pytest.mark.parametrize("phase", PHASES)
@pytest.mark.parametrize("cancelled", [False, True])
def test_cancel_is_offered_exactly_when_a_cancel_would_be_carried_out(phase: str, cancelled: bool):
    builder = a_training_job("j").in_phase(phase)
    job = (builder.cancelled() if cancelled else builder).job()
    offered = Action.CANCEL in allowed_actions(job)
    assert offered == decide_cancel(job).send_patch
    assert offered == (phase in ("queued", "starting", "running") and not cancelled)


def test_a_new_job_without_a_phase_may_be_cancelled():
    assert allowed_actions(a_training_job("j").job()) == [Action.CANCEL]


def test_the_public_view_carries_the_actions_and_who_did_it():
    job = a_training_job("j").submitted_by("alice").in_phase("running").job()
    view = JobPublic.of(job)
    assert view.actions == ["cancel"]
    assert (view.submitted_by, view.cancelled_by) == ("alice", None)
    done = JobPublic.of(
        a_training_job("k").submitted_by("alice").cancelled(by="bob").in_phase("cancelled").job()
    )
    assert done.actions == []
    assert done.cancelled_by == "bob"
