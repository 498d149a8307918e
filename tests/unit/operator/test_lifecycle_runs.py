"""Start timeouts, deadlines, retries, suspend/resume and multi-node jobs (pure)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shunter.domain.model import Job, JobStatus, Phase, PodView, StopCause
from shunter.operator.decisions import Decision
from shunter.operator.lifecycle import Context, reconcile_job, stamped_when_sent
from shunter.operator.rules import Rules
from tests.support.builders import a_pod_of, a_training_job, pods

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = Rules(grace_margin=timedelta(seconds=2), start_timeout=timedelta(seconds=60),
              start_attempts=2, backoff_base=timedelta(seconds=10))  # fmt: skip


def step(job: Job, now: datetime, *found: PodView | None, **ctx: object) -> tuple[Job, Decision]:
    context = Context(now=now, rules=RULES, pods=pods(*found), **ctx)  # type: ignore[arg-type]
    decision = reconcile_job(job, context)
    return replace(job, status=decision.status), decision


def test_a_start_that_times_out_goes_back_to_the_queue_then_fails():
    job = a_training_job("slow").in_phase("starting", admittedAt="2026-03-01T12:00:00Z",
                                          placement=["gpu-node-0"], attempts=1).job()  # fmt: skip
    why = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu"
    pending = a_pod_of(job, phase="Pending", node_name=None, unschedulable=why)
    job, waiting = step(job, NOW + timedelta(seconds=10), pending)
    assert waiting.status.message == (
        "Admitted; pod slow-trainer is not scheduled yet:"
        " 0/4 nodes are available: 4 Insufficient nvidia.com/gpu"
    )
    assert waiting.wake_at == NOW + timedelta(seconds=60)
    job, stopping = step(job, NOW + timedelta(seconds=60), pending)
    assert stopping.status.phase is Phase.STOPPING
    assert stopping.delete_pods
    job, requeued = step(job, NOW + timedelta(seconds=61))
    assert requeued.status.phase is Phase.QUEUED
    assert requeued.status.reason == "StartTimeout"
    assert requeued.status.not_before == NOW + timedelta(seconds=71)
    assert requeued.released
    # Admitted again, timed out again: the second of two attempts fails the job.
    job = replace(job, status=replace(job.status, phase=Phase.STARTING, attempts=2,
                                      admitted_at=NOW + timedelta(seconds=80)))  # fmt: skip
    job, _ = step(job, NOW + timedelta(seconds=140), pending)
    job, failed = step(job, NOW + timedelta(seconds=141))
    assert failed.status.phase is Phase.FAILED
    assert failed.status.reason == "StartTimeout"
    assert failed.status.message == "Did not start within 60s in 2 attempts; giving up"


def test_max_runtime_is_enforced_by_the_operator():
    job = a_training_job("long").with_spec(maxRuntimeSeconds=30).in_phase(
        "running", runningSince="2026-03-01T12:00:00Z", placement=["gpu-node-0"]).job()  # fmt: skip
    _, before = step(job, NOW + timedelta(seconds=29), a_pod_of(job))
    assert before.wake_at == NOW + timedelta(seconds=30)
    job, stopping = step(job, NOW + timedelta(seconds=30), a_pod_of(job))
    assert stopping.status.termination is not None
    assert stopping.status.termination.cause is StopCause.DEADLINE
    _, done = step(job, NOW + timedelta(seconds=31))
    assert done.status.phase is Phase.FAILED
    assert done.status.reason == "DeadlineExceeded"


def test_a_failed_run_is_retried_within_the_backoff_limit():
    job = a_training_job("flaky").with_spec(backoffLimit=1).in_phase(
        "running", attempts=1, placement=["gpu-node-0"]).job()  # fmt: skip
    failed_pod = a_pod_of(job, phase="Failed", exit_code=3, reason="Error")
    job, stopping = step(job, NOW, failed_pod)
    assert stopping.status.termination is not None
    assert stopping.status.termination.cause is StopCause.FAILURE
    assert [d.name for d in stopping.delete_pods] == ["flaky-trainer"]  # the name is reused
    job, waiting = step(job, NOW + timedelta(seconds=1))
    assert waiting.status.phase is Phase.STARTING
    assert waiting.status.reason == "Retrying"
    assert [a.exit_code for a in waiting.status.history] == [3]
    job, _ = step(job, NOW + timedelta(seconds=5))  # still backing off
    job, again = step(job, NOW + timedelta(seconds=11))
    assert again.status.attempts == 2
    assert [m["metadata"]["labels"]["shunter.dev/attempt"] for m in again.create_pods] == ["2"]
    second = replace(failed_pod, attempt=2)
    job, last = step(job, NOW + timedelta(seconds=20), second)
    assert last.status.phase is Phase.FAILED  # one Pod: nothing else to stop
    assert [a.exit_code for a in last.status.history] == [3, 3]


def test_suspend_stops_gracefully_and_resume_queues_in_the_same_place():
    job = a_training_job("s").with_spec(suspended=True).in_phase(
        "running", sequence=7, placement=["gpu-node-0"]).job()  # fmt: skip
    job, stopping = step(job, NOW, a_pod_of(job))
    assert stopping.status.phase is Phase.STOPPING
    assert stopping.logs == (
        "[Terminate] Attempting graceful termination of pod default/s-trainer (suspended)",
    )
    job, suspended = step(job, NOW + timedelta(seconds=1))
    assert suspended.status.phase is Phase.SUSPENDED
    assert suspended.released
    job = replace(job, spec=replace(job.spec, suspended=False))
    _, resumed = step(job, NOW + timedelta(seconds=5))
    assert resumed.status.phase is Phase.QUEUED
    assert resumed.status.sequence == 7  # its original place


def test_a_gang_runs_when_every_pod_runs_and_fails_when_one_fails():
    job = a_training_job("g").with_spec(nodes=3).in_phase(
        "starting", attempts=1, placement=["n0", "n1", "n2"]).job()  # fmt: skip
    gang = [replace(a_pod_of(job, node_name=f"n{i}"), name=f"g-trainer-{i}", index=i)
            for i in range(3)]  # fmt: skip
    job, partly = step(job, NOW, gang[0], gang[1], replace(gang[2], phase="Pending"))
    assert partly.status.phase is Phase.STARTING
    assert partly.status.pods_ready == 2
    job, all_up = step(job, NOW, *gang)
    assert all_up.status.phase is Phase.RUNNING
    broken = replace(gang[1], phase="Failed", exit_code=1, reason="Error")
    job, stopping = step(job, NOW, gang[0], broken, gang[2])
    assert sorted(d.name for d in stopping.delete_pods) == ["g-trainer-0", "g-trainer-2"]
    job, failed = step(job, NOW + timedelta(seconds=1), broken)
    assert failed.status.phase is Phase.FAILED
    assert failed.status.message == "Pod g-trainer-1 failed with exit code 1 (Error)"


def test_a_start_counts_from_when_its_write_is_sent_not_from_when_it_was_decided():
    """An admission that waited in the operator's own line of writes (more decided
    than the API server takes) gets its whole start timeout from when its status is
    sent: counted from the decision it timed out before its Pod existed."""
    new = a_training_job("late").job()
    job, admitted = step(new, NOW, admit=("gpu-node-0",))
    assert admitted.status.phase is Phase.STARTING
    assert admitted.status.admitted_at == NOW
    sent_at = NOW + timedelta(seconds=400)  # six minutes in line
    written = stamped_when_sent(new.status, admitted.status, sent_at)
    assert written.admitted_at == sent_at
    assert replace(written, admitted_at=NOW) == admitted.status  # nothing else moved
    job = replace(job, status=written)
    pending = a_pod_of(job, phase="Pending", node_name=None)
    _, waiting = step(job, sent_at + timedelta(seconds=10), pending)
    assert waiting.status.phase is Phase.STARTING
    assert waiting.wake_at == sent_at + RULES.start_timeout
    # Decided and counted from the decision, the same moment would have stopped it.
    unstamped = replace(job, status=admitted.status)
    _, stopped = step(unstamped, sent_at + timedelta(seconds=10), pending)
    assert stopped.status.phase is Phase.STOPPING


def test_a_sent_status_keeps_a_backoff_still_ahead_and_the_times_it_did_not_set():
    before = JobStatus(phase=Phase.STOPPING, admitted_at=NOW)
    backoff = replace(before, phase=Phase.QUEUED, not_before=NOW + timedelta(seconds=30))
    early = stamped_when_sent(before, backoff, NOW + timedelta(seconds=5))
    assert early == backoff  # a backoff's end still ahead; admitted_at not set by it
    late = stamped_when_sent(before, backoff, NOW + timedelta(seconds=45))
    assert late.not_before == NOW + timedelta(seconds=45)  # passed: the same as now
    assert late.admitted_at == NOW
