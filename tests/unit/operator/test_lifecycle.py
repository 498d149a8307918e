"""Phase transitions of one job (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shunter.domain.model import CANCELLED_BY_USER, Phase
from shunter.operator.lifecycle import RUNNING_HOLD, Context, reconcile_job
from tests.support.builders import a_pod_of, a_training_job, pods

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
PLACED = ("gpu-node-0",)


def test_a_new_job_is_queued_with_its_position():
    job = a_training_job("j").job()
    decision = reconcile_job(job, Context(pods=pods(None), now=NOW, queue_position=3))
    assert decision.status.phase is Phase.QUEUED
    assert decision.status.queue_position == 3
    assert [e.reason for e in decision.events] == ["Queued"]
    assert decision.create_pods == ()


def test_admission_moves_to_starting_and_creates_the_pod():
    job = a_training_job("j").in_phase("queued", queuePosition=1).job()
    decision = reconcile_job(job, Context(pods=pods(None), now=NOW, admit=PLACED))
    assert decision.status.phase is Phase.STARTING
    assert decision.status.queue_position is None
    assert decision.status.pod_name == "j-trainer"
    assert decision.status.admitted_at == NOW
    assert decision.create_pods != ()
    assert decision.create_pods[0]["metadata"]["name"] == "j-trainer"


def test_a_running_pod_makes_the_job_running():
    job = a_training_job("j").in_phase("starting").job()
    started = NOW - timedelta(seconds=3)
    decision = reconcile_job(job, Context(pods=pods(a_pod_of(job, started_at=started)), now=NOW))
    assert decision.status.phase is Phase.RUNNING
    assert decision.status.started_at == started
    assert decision.status.node_name == "gpu-node-0"


def test_running_waits_a_moment_so_a_job_that_ends_at_once_is_written_once():
    """Its Pod started (whole seconds, by the node's clock) less than RUNNING_HOLD ago:
    nothing is written yet and the job is looked at again when the hold ends; a Pod
    that succeeds meanwhile takes the job from `starting` straight to `completed`."""
    job = a_training_job("j").in_phase("starting").job()
    started = NOW - timedelta(seconds=1)
    held = reconcile_job(job, Context(pods=pods(a_pod_of(job, started_at=started)), now=NOW))
    assert held.status == job.status
    assert held.wake_at == started + RUNNING_HOLD
    later = started + RUNNING_HOLD
    running = reconcile_job(job, Context(pods=pods(a_pod_of(job, started_at=started)), now=later))
    assert running.status.phase is Phase.RUNNING
    done = a_pod_of(job, phase="Succeeded", started_at=started, exit_code=0, reason="Completed")
    assert reconcile_job(job, Context(pods=pods(done), now=NOW)).status.phase is Phase.COMPLETED


def test_a_node_clock_ahead_never_holds_running_longer_than_the_hold():
    job = a_training_job("j").in_phase("starting").job()
    ahead = NOW + timedelta(seconds=30)
    decision = reconcile_job(job, Context(pods=pods(a_pod_of(job, started_at=ahead)), now=NOW))
    assert decision.status.phase is Phase.RUNNING


@pytest.mark.parametrize(
    ("pod_phase", "job_phase", "reason"),
    [("Succeeded", Phase.COMPLETED, "Completed"), ("Failed", Phase.FAILED, "OOMKilled")],
)
def test_a_finished_pod_finishes_the_job(pod_phase: str, job_phase: Phase, reason: str):
    job = a_training_job("j").in_phase("running").job()
    pod = a_pod_of(
        job, phase=pod_phase, exit_code=0 if job_phase is Phase.COMPLETED else 137, reason=reason
    )
    decision = reconcile_job(job, Context(pods=pods(pod), now=NOW))
    assert decision.status.phase is job_phase
    assert decision.status.reason == reason
    assert decision.status.completed_at == NOW
    assert decision.released


@pytest.mark.parametrize("stop", ["preempt", "time_slice", "suspend"])
def test_a_job_done_before_the_operators_own_stop_completes_instead(stop: str):
    """Chosen as a victim (or its slice over, or suspended) after its Pod succeeded:
    it completes; stopped, it would be queued to run its done work again."""
    job = a_training_job("j").in_phase("running").job()
    if stop == "suspend":
        job = replace(job, spec=replace(job.spec, suspended=True))
    extra = {} if stop == "suspend" else {stop: "a waiting job of priority 200"}
    done = a_pod_of(job, phase="Succeeded", exit_code=0, reason="Completed")
    decision = reconcile_job(job, Context(pods=pods(done), now=NOW, **extra))  # type: ignore[arg-type]
    assert decision.status.phase is Phase.COMPLETED
    assert decision.delete_pods == ()
    still = reconcile_job(job, Context(pods=pods(a_pod_of(job)), now=NOW, **extra))  # type: ignore[arg-type]
    assert still.status.phase is Phase.STOPPING


def test_a_cancel_of_a_job_whose_pod_just_succeeded_is_still_a_cancel():
    job = a_training_job("j").cancelled().in_phase("running").job()
    done = a_pod_of(job, phase="Succeeded", exit_code=0, reason="Completed")
    assert reconcile_job(job, Context(pods=pods(done), now=NOW)).status.phase is Phase.CANCELLING


def test_a_failed_pod_explains_itself():
    job = a_training_job("j").in_phase("running").job()
    pod = a_pod_of(job, phase="Failed", exit_code=1, reason="Error", message="loss is NaN")
    decision = reconcile_job(job, Context(pods=pods(pod), now=NOW))
    assert decision.status.message == "Trainer exited with code 1 (Error): loss is NaN"
    assert decision.status.exit_code == 1


def test_a_pod_that_vanishes_from_a_running_job_fails_it():
    job = a_training_job("j").in_phase("running").job()
    decision = reconcile_job(job, Context(pods=pods(None), now=NOW))
    assert decision.status.phase is Phase.FAILED
    assert decision.status.reason == "PodVanished"
    assert "j-trainer disappeared" in (decision.status.message or "")


def test_a_starting_job_without_its_pod_creates_it_again():
    job = a_training_job("j").in_phase("starting").job()
    decision = reconcile_job(job, Context(pods=pods(None), now=NOW))
    assert decision.status == job.status
    assert decision.create_pods != ()


def test_a_pod_created_but_not_yet_seen_is_neither_recreated_nor_missed():
    for phase in ("starting", "running"):
        job = a_training_job("j").in_phase(phase).job()
        decision = reconcile_job(job, Context(pods=pods(None), now=NOW, unobserved={0}))
        assert decision.status == job.status
        assert decision.create_pods == ()


@pytest.mark.parametrize("phase", ["completed", "failed", "cancelled"])
def test_terminal_phases_never_change_even_when_cancelled_late(phase: str):
    job = a_training_job("j").cancelled().in_phase(phase, message="done").job()
    decision = reconcile_job(job, Context(pods=pods(None), now=NOW, admit=PLACED))
    assert decision.status == job.status
    assert decision.create_pods == ()
    assert decision.delete_pods == ()
    assert not decision.events


def test_a_cancelled_queued_job_leaves_the_queue_at_once():
    job = a_training_job("j").cancelled().in_phase("queued", queuePosition=2).job()
    decision = reconcile_job(job, Context(pods=pods(None), now=NOW, admit=PLACED, queue_position=1))
    assert decision.status.phase is Phase.CANCELLED
    assert decision.status.message == CANCELLED_BY_USER
    assert decision.status.queue_position is None
    assert decision.status.completed_at == NOW
    assert decision.create_pods == ()
    assert decision.logs == ("[Cancel] Job default/j removed from queue and cancelled",)


@pytest.mark.parametrize("phase", ["cancelled", "failed", "completed"])
def test_a_live_pod_of_a_finished_job_is_deleted_and_the_job_stays_as_it_is(phase: str):
    """E.g. a create that reached the API server late, from a replica that had lost
    its Lease while the network held the request."""
    job = a_training_job("j").with_grace(7).in_phase(phase, sequence=1).job()
    late = a_pod_of(job, phase="Pending")
    decision = reconcile_job(job, Context(now=NOW, pods=pods(late)))
    assert decision.status == job.status
    assert [(d.name, d.grace_seconds) for d in decision.delete_pods] == [("j-trainer", 7)]
    assert [e.reason for e in decision.events] == ["OrphanPod"]
    assert decision.logs == (f"[Orphan] Pod default/j-trainer of job default/j, already {phase}:"
                             " deleting it",)  # fmt: skip


@pytest.mark.parametrize("pod", ["Succeeded", "Failed", "deleting"])
def test_a_finished_jobs_finished_or_departing_pod_is_left_alone(pod: str):
    job = a_training_job("j").in_phase("completed", sequence=1).job()
    found = (
        a_pod_of(job, phase="Running", deleting=True)
        if pod == "deleting"
        else a_pod_of(job, phase=pod)
    )
    decision = reconcile_job(job, Context(now=NOW, pods=pods(found)))
    assert decision.delete_pods == ()
    assert decision.events == ()
