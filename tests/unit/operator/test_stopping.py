"""Grace-then-force cancellation of a job with a Pod (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shunter.domain.model import CANCELLED_BY_USER, Job, Phase, PodView, TerminationStep
from shunter.operator.book import JobBook
from shunter.operator.decisions import DeletePod
from shunter.operator.lifecycle import Context, reconcile_job
from shunter.operator.planning import plan_pass
from shunter.operator.rules import Rules
from tests.support.builders import a_node, a_pod_of, a_training_job, pods

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MARGIN = timedelta(seconds=10)
RULES = Rules(grace_margin=MARGIN)


def step(job: Job, pod: PodView | None, now: datetime) -> tuple[Job, object]:
    decision = reconcile_job(job, Context(pods=pods(pod), now=now, rules=RULES))
    return replace(job, status=decision.status), decision


def test_cancel_running_deletes_the_pod_with_its_grace_period_first():
    job = a_training_job("j").with_grace(20).cancelled().in_phase("running").job()
    decision = reconcile_job(job, Context(pods=pods(a_pod_of(job)), now=NOW, rules=RULES))
    assert decision.status.phase is Phase.CANCELLING
    assert decision.status.termination is not None
    assert decision.status.termination.step is TerminationStep.GRACEFUL
    assert decision.status.termination.graceful_delete_at == NOW
    assert decision.delete_pods == (DeletePod("default", "j-trainer", 20),)
    assert decision.logs == (
        "[Terminate] Attempting graceful termination of pod default/j-trainer",
    )
    assert decision.wake_at == NOW + timedelta(seconds=30)


def test_pod_gone_within_grace_ends_cancelled_gracefully():
    job = a_training_job("j").with_grace(20).cancelled().in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    job, _ = step(job, a_pod_of(job, deleting=True), NOW + timedelta(seconds=5))
    assert job.phase is Phase.CANCELLING
    done = reconcile_job(job, Context(pods=pods(None), now=NOW + timedelta(seconds=6), rules=RULES))
    assert done.status.phase is Phase.CANCELLED
    assert done.status.message == CANCELLED_BY_USER
    assert done.status.completed_at == NOW + timedelta(seconds=6)
    assert done.status.termination is not None
    assert done.status.termination.outcome == "graceful"
    assert done.logs == ("[Terminate] Pod default/j-trainer terminated gracefully",)
    assert done.released


def test_pod_still_there_after_grace_and_margin_is_force_deleted():
    job = a_training_job("j").with_grace(20).cancelled().in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    hanging = a_pod_of(job, deleting=True)
    just_before = reconcile_job(
        job, Context(pods=pods(hanging), now=NOW + timedelta(seconds=29), rules=RULES)
    )
    assert just_before.delete_pods == ()
    assert just_before.status == job.status

    forced = reconcile_job(
        job, Context(pods=pods(hanging), now=NOW + timedelta(seconds=30), rules=RULES)
    )
    assert forced.delete_pods == (DeletePod("default", "j-trainer", 0),)
    assert forced.status.termination is not None
    assert forced.status.termination.step is TerminationStep.FORCED
    assert forced.logs == (
        "[Terminate] Pod default/j-trainer did not terminate gracefully, forcing deletion",
    )
    assert [e.type for e in forced.events] == ["Warning"]

    job = replace(job, status=forced.status)
    done = reconcile_job(
        job, Context(pods=pods(None), now=NOW + timedelta(seconds=31), rules=RULES)
    )
    assert done.status.phase is Phase.CANCELLED
    assert done.status.termination is not None
    assert done.status.termination.outcome == "forced"
    assert done.logs == ("[Terminate] Pod default/j-trainer force deleted",)


def test_restart_between_recording_and_deleting_sends_the_delete_again():
    job = a_training_job("j").with_grace(20).cancelled().in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    # The operator died after writing status: the Pod was never asked to stop.
    again = reconcile_job(
        job, Context(pods=pods(a_pod_of(job)), now=NOW + timedelta(seconds=3), rules=RULES)
    )
    assert again.delete_pods == (DeletePod("default", "j-trainer", 20),)
    assert again.status == job.status


def test_force_delete_is_repeated_while_the_pod_still_shows_up():
    job = a_training_job("j").with_grace(0).cancelled().in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    job, _ = step(job, a_pod_of(job, deleting=True), NOW + timedelta(seconds=10))
    assert job.status.termination is not None
    assert job.status.termination.step is TerminationStep.FORCED
    soon = reconcile_job(
        job,
        Context(
            pods=pods(a_pod_of(job, deleting=True)), now=NOW + timedelta(seconds=11), rules=RULES
        ),
    )
    assert soon.delete_pods == ()
    later = reconcile_job(
        job,
        Context(
            pods=pods(a_pod_of(job, deleting=True)), now=NOW + timedelta(seconds=16), rules=RULES
        ),
    )
    assert later.delete_pods == (DeletePod("default", "j-trainer", 0),)


def test_cancelling_twice_changes_nothing_more():
    job = a_training_job("j").cancelled().in_phase("running").job()
    job, _first = step(job, a_pod_of(job), NOW)
    second = reconcile_job(
        job,
        Context(
            pods=pods(a_pod_of(job, deleting=True)), now=NOW + timedelta(seconds=1), rules=RULES
        ),
    )
    assert second.status == job.status
    assert second.delete_pods == ()
    assert not second.events


def test_the_cancelled_event_names_the_user_and_the_status_keeps_the_guides_message():
    job = a_training_job("j").cancelled(by="alice").in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    done = reconcile_job(job, Context(pods=pods(None), now=NOW + timedelta(seconds=1), rules=RULES))
    assert [(e.reason, e.message) for e in done.events] == [
        ("Cancelled", "Cancelled by user alice: pod j-trainer stopped gracefully")
    ]
    assert done.status.message == CANCELLED_BY_USER

    queued = a_training_job("q").cancelled(by="bob").in_phase("queued").job()
    decision = reconcile_job(queued, Context(pods=pods(None), now=NOW, rules=RULES))
    assert [e.message for e in decision.events] == ["Cancelled by user bob: removed from the queue"]
    assert decision.status.message == CANCELLED_BY_USER


def test_without_a_recorded_user_the_event_names_nobody():
    queued = a_training_job("q").cancelled().in_phase("queued").job()
    decision = reconcile_job(queued, Context(pods=pods(None), now=NOW, rules=RULES))
    assert [e.message for e in decision.events] == ["Cancelled by user: removed from the queue"]


def test_force_delete_on_a_node_that_is_not_ready_says_the_process_still_runs():
    job = a_training_job("j").with_grace(20).cancelled().in_phase(
        "running", nodeName="node-a", placement=["node-a"]).job()  # fmt: skip
    job, _ = step(job, a_pod_of(job, node_name="node-a"), NOW)
    hanging = a_pod_of(job, deleting=True, node_name="node-a")
    lost = Context(pods=pods(hanging), now=NOW + timedelta(seconds=30), rules=RULES,
                   not_ready={"node-a"})  # fmt: skip

    forced = reconcile_job(job, lost)

    assert forced.delete_pods == (DeletePod("default", "j-trainer", 0),)
    assert forced.logs == (
        "[Terminate] Pod default/j-trainer did not terminate gracefully, forcing deletion;"
        " node node-a is not Ready: its process keeps running until the node returns and its"
        " kubelet stops it",
    )
    [event] = forced.events
    assert (event.type, event.reason) == ("Warning", "ForceDeleting")
    assert "node node-a is not Ready" in event.message

    job = replace(job, status=forced.status)
    gone = replace(lost, pods={}, now=NOW + timedelta(seconds=31))  # the node is still away
    done = reconcile_job(job, gone)
    assert done.status.phase is Phase.CANCELLED
    assert done.status.message == CANCELLED_BY_USER
    assert done.logs == (
        "[Terminate] Pod default/j-trainer force deleted; node node-a is not Ready: its process"
        " keeps running until the node returns and its kubelet stops it",
    )
    [event] = done.events
    assert (event.type, event.reason) == ("Warning", "Cancelled")
    assert "its process keeps running until the node returns" in event.message


def test_plan_pass_takes_readiness_from_the_node_watch():
    job = a_training_job("j").with_grace(0).cancelled().in_phase(
        "cancelling", nodeName="node-a", placement=["node-a"],
        termination={"step": "graceful", "gracefulDeleteAt": "2026-03-01T12:00:00Z"},
    ).job()  # fmt: skip
    hanging = a_pod_of(job, deleting=True, node_name="node-a")
    later = NOW + timedelta(seconds=30)
    for ready, expected in ((False, "node node-a is not Ready"), (True, "forcing deletion")):
        book = JobBook.of([job], [hanging], nodes=[a_node("node-a", ready=ready)])
        result = plan_pass(book, now=later, rules=RULES)
        assert result.decisions[job.key].logs[0].endswith(expected) or (
            expected in result.decisions[job.key].logs[0]
        )


def test_the_trainers_exit_code_is_kept_while_its_pod_stops():
    job = a_training_job("j").with_grace(20).cancelled().in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    exited = a_pod_of(job, phase="Failed", deleting=True, exit_code=75)
    job, _ = step(job, exited, NOW + timedelta(seconds=2))
    assert job.status.exit_code == 75
    done = reconcile_job(job, Context(pods={}, now=NOW + timedelta(seconds=3), rules=RULES))
    assert done.status.phase is Phase.CANCELLED
    assert done.status.exit_code == 75
    assert (
        done.events[0].message
        == "Cancelled by user: pod j-trainer stopped gracefully (exit code 75)"
    )


def test_a_trainer_killed_at_the_end_of_its_grace_is_named_in_the_event():
    job = a_training_job("j").with_grace(3).cancelled().in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    job, _ = step(job, a_pod_of(job, phase="Failed", deleting=True, exit_code=137), NOW)
    done = reconcile_job(job, Context(pods={}, now=NOW + timedelta(seconds=4), rules=RULES))
    assert done.status.exit_code == 137
    assert done.logs == ("[Terminate] Pod default/j-trainer terminated gracefully",)
    assert "ignored SIGTERM and was killed when the grace period ran out (exit code 137)" in (
        done.events[0].message
    )
