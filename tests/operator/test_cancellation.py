"""Grace-then-force cancellation of a job with a Pod (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shunter.operator.admission import Limits
from shunter.operator.book import JobBook
from shunter.operator.decisions import DeletePod
from shunter.operator.lifecycle import Context, reconcile_job
from shunter.operator.model import CANCELLED_BY_USER, Job, Phase, PodView, TerminationStep
from shunter.operator.planning import plan_pass
from tests.support.builders import a_pod_of, a_training_job

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MARGIN = timedelta(seconds=10)


def step(job: Job, pod: PodView | None, now: datetime) -> tuple[Job, object]:
    decision = reconcile_job(job, pod, Context(now=now, grace_margin=MARGIN))
    return replace(job, status=decision.status), decision


def test_cancel_running_deletes_the_pod_with_its_grace_period_first():
    job = a_training_job("j").with_grace(20).cancelled().in_phase("running").job()
    decision = reconcile_job(job, a_pod_of(job), Context(now=NOW, grace_margin=MARGIN))
    assert decision.status.phase is Phase.CANCELLING
    assert decision.status.termination is not None
    assert decision.status.termination.step is TerminationStep.GRACEFUL
    assert decision.status.termination.graceful_delete_at == NOW
    assert decision.delete_pod == DeletePod("default", "j-trainer", 20)
    assert decision.logs == (
        "[Terminate] Attempting graceful termination of pod default/j-trainer",
    )
    assert decision.wake_at == NOW + timedelta(seconds=30)


def test_pod_gone_within_grace_ends_cancelled_gracefully():
    job = a_training_job("j").with_grace(20).cancelled().in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    job, _ = step(job, a_pod_of(job, deleting=True), NOW + timedelta(seconds=5))
    assert job.phase is Phase.CANCELLING
    done = reconcile_job(job, None, Context(now=NOW + timedelta(seconds=6), grace_margin=MARGIN))
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
        job, hanging, Context(now=NOW + timedelta(seconds=29), grace_margin=MARGIN)
    )
    assert just_before.delete_pod is None
    assert just_before.status == job.status

    forced = reconcile_job(
        job, hanging, Context(now=NOW + timedelta(seconds=30), grace_margin=MARGIN)
    )
    assert forced.delete_pod == DeletePod("default", "j-trainer", 0)
    assert forced.status.termination is not None
    assert forced.status.termination.step is TerminationStep.FORCED
    assert forced.logs == (
        "[Terminate] Pod default/j-trainer did not terminate gracefully, forcing deletion",
    )
    assert [e.type for e in forced.events] == ["Warning"]

    job = replace(job, status=forced.status)
    done = reconcile_job(job, None, Context(now=NOW + timedelta(seconds=31), grace_margin=MARGIN))
    assert done.status.phase is Phase.CANCELLED
    assert done.status.termination is not None
    assert done.status.termination.outcome == "forced"
    assert done.logs == ("[Terminate] Pod default/j-trainer force deleted",)


def test_restart_between_recording_and_deleting_sends_the_delete_again():
    job = a_training_job("j").with_grace(20).cancelled().in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    # The operator died after writing status: the Pod was never asked to stop.
    again = reconcile_job(
        job, a_pod_of(job), Context(now=NOW + timedelta(seconds=3), grace_margin=MARGIN)
    )
    assert again.delete_pod == DeletePod("default", "j-trainer", 20)
    assert again.status == job.status


def test_force_delete_is_repeated_while_the_pod_still_shows_up():
    job = a_training_job("j").with_grace(0).cancelled().in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    job, _ = step(job, a_pod_of(job, deleting=True), NOW + timedelta(seconds=10))
    assert job.status.termination is not None
    assert job.status.termination.step is TerminationStep.FORCED
    soon = reconcile_job(
        job,
        a_pod_of(job, deleting=True),
        Context(now=NOW + timedelta(seconds=11), grace_margin=MARGIN),
    )
    assert soon.delete_pod is None
    later = reconcile_job(
        job,
        a_pod_of(job, deleting=True),
        Context(now=NOW + timedelta(seconds=16), grace_margin=MARGIN),
    )
    assert later.delete_pod == DeletePod("default", "j-trainer", 0)


def test_cancelling_twice_changes_nothing_more():
    job = a_training_job("j").cancelled().in_phase("running").job()
    job, _first = step(job, a_pod_of(job), NOW)
    second = reconcile_job(
        job,
        a_pod_of(job, deleting=True),
        Context(now=NOW + timedelta(seconds=1), grace_margin=MARGIN),
    )
    assert second.status == job.status
    assert second.delete_pod is None
    assert not second.events


def test_force_delete_on_a_node_that_is_not_ready_says_the_process_still_runs():
    job = (
        a_training_job("j").with_grace(20).cancelled().in_phase("running", nodeName="node-a").job()
    )
    job, _ = step(job, a_pod_of(job, node_name="node-a"), NOW)
    hanging = a_pod_of(job, deleting=True, node_name="node-a")
    lost = Context(now=NOW + timedelta(seconds=30), grace_margin=MARGIN, node_ready=False)

    forced = reconcile_job(job, hanging, lost)

    assert forced.delete_pod == DeletePod("default", "j-trainer", 0)
    assert forced.logs == (
        "[Terminate] Pod default/j-trainer did not terminate gracefully, forcing deletion;"
        " node node-a is not Ready: its process keeps running until the node returns and its"
        " kubelet stops it",
    )
    [event] = forced.events
    assert (event.type, event.reason) == ("Warning", "ForceDeleting")
    assert "node node-a is not Ready" in event.message
    assert "its process keeps running until the node returns" in event.message

    job = replace(job, status=forced.status)
    done = reconcile_job(
        job, None, replace(lost, now=NOW + timedelta(seconds=31))
    )  # the object is gone; the node is still away
    assert done.status.phase is Phase.CANCELLED
    assert done.status.message == CANCELLED_BY_USER
    assert done.status.termination is not None
    assert done.status.termination.outcome == "forced"
    assert done.logs == (
        "[Terminate] Pod default/j-trainer force deleted; node node-a is not Ready: its process"
        " keeps running until the node returns and its kubelet stops it",
    )
    [event] = done.events
    assert (event.type, event.reason) == ("Warning", "Cancelled")
    assert "while node node-a is not Ready" in event.message


def test_a_ready_node_keeps_the_guides_three_lines():
    job = (
        a_training_job("j").with_grace(20).cancelled().in_phase("running", nodeName="node-a").job()
    )
    lines: list[str] = []
    for pod, seconds in ((a_pod_of(job), 0), (a_pod_of(job, deleting=True), 30), (None, 31)):
        decision = reconcile_job(
            job,
            pod,
            Context(now=NOW + timedelta(seconds=seconds), grace_margin=MARGIN, node_ready=True),
        )
        job = replace(job, status=decision.status)
        lines.extend(decision.logs)
    assert lines == [
        "[Terminate] Attempting graceful termination of pod default/j-trainer",
        "[Terminate] Pod default/j-trainer did not terminate gracefully, forcing deletion",
        "[Terminate] Pod default/j-trainer force deleted",
    ]


def test_plan_pass_looks_up_the_readiness_of_the_pods_node():
    job = (
        a_training_job("j")
        .with_grace(0)
        .cancelled()
        .in_phase(
            "cancelling",
            nodeName="node-a",
            termination={"step": "graceful", "gracefulDeleteAt": "2026-03-01T12:00:00Z"},
        )
        .job()
    )
    book = JobBook.of([job], [a_pod_of(job, deleting=True, node_name="node-a")])
    later = NOW + timedelta(seconds=30)
    limits = Limits(max_running=1)
    lost = plan_pass(book, now=later, limits=limits, grace_margin=MARGIN,
                     not_ready_nodes={"node-a"})  # fmt: skip
    assert "node node-a is not Ready" in lost.decisions[job.key].logs[0]
    other = plan_pass(book, now=later, limits=limits, grace_margin=MARGIN,
                      not_ready_nodes={"node-b"})  # fmt: skip
    assert other.decisions[job.key].logs == (
        "[Terminate] Pod default/j-trainer did not terminate gracefully, forcing deletion",
    )


def test_the_trainers_exit_code_is_kept_while_its_pod_stops():
    job = a_training_job("j").with_grace(20).cancelled().in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    exited = a_pod_of(job, phase="Failed", deleting=True, exit_code=75)
    job, _ = step(job, exited, NOW + timedelta(seconds=2))
    assert job.status.exit_code == 75
    done = reconcile_job(job, None, Context(now=NOW + timedelta(seconds=3), grace_margin=MARGIN))
    assert done.status.phase is Phase.CANCELLED
    assert done.status.exit_code == 75
    assert done.status.termination is not None
    assert done.status.termination.outcome == "graceful"
    assert (
        done.events[0].message == "Pod j-trainer stopped gracefully (exit code 75); job cancelled"
    )


def test_a_trainer_killed_at_the_end_of_its_grace_is_named_in_the_event():
    job = a_training_job("j").with_grace(3).cancelled().in_phase("running").job()
    job, _ = step(job, a_pod_of(job), NOW)
    job, _ = step(job, a_pod_of(job, phase="Failed", deleting=True, exit_code=137), NOW)
    done = reconcile_job(job, None, Context(now=NOW + timedelta(seconds=4), grace_margin=MARGIN))
    assert done.status.exit_code == 137
    assert done.logs == ("[Terminate] Pod default/j-trainer terminated gracefully",)
    assert "ignored SIGTERM and was killed when the grace period ran out (exit code 137)" in (
        done.events[0].message
    )
