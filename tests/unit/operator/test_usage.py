"""Accounting of one run (shunter.domain.usage) and the times the operator records."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from shunter.domain.model import Attempt, Job, Phase, PodView
from shunter.domain.usage import (
    STEPS,
    WAIT_BOUNDS,
    AttemptUsage,
    bucket_of,
    buckets,
    outcome_of,
    spread,
    usage_of,
    wait_bucket,
)
from shunter.operator.decisions import Decision
from shunter.operator.lifecycle import Context, reconcile_job
from shunter.operator.rules import Rules
from tests.support.builders import a_pod_of, a_training_job, pods

T0 = datetime(2026, 3, 1, 0, 0, tzinfo=UTC)
HOUR, DAY = STEPS["hour"], STEPS["day"]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def a_run(**fields: object) -> AttemptUsage:
    base = AttemptUsage(gpus=4, queued_at=at(0), admitted_at=at(10), running_at=at(12),
                        finished_at=at(70), lost_seconds=600.0, outcome="preempted")  # fmt: skip
    return replace(base, **fields)  # type: ignore[arg-type]


def test_a_run_holds_its_gpus_from_admission_and_runs_from_when_its_pods_run():
    run = a_run()
    assert run.allocated_seconds == 60 * 60
    assert run.run_seconds == 58 * 60
    assert run.wait_seconds == 10 * 60
    assert run.lost_gpu_seconds == 4 * 600


def test_a_run_that_never_ran_lost_nothing_it_ran_and_a_completed_run_loses_nothing():
    assert a_run(running_at=None, lost_seconds=None).run_seconds == 0
    assert a_run(running_at=None, lost_seconds=None).lost_gpu_seconds == 0
    assert a_run(lost_seconds=None).lost_gpu_seconds == 4 * 58 * 60  # the whole run
    assert a_run(outcome="completed", lost_seconds=None).lost_gpu_seconds == 0
    assert a_run(queued_at=None).wait_seconds is None


def test_outcomes_name_how_a_run_ended():
    assert [outcome_of(r) for r in ("Completed", "Preempted", "PodVanished", None, "Odd")] == [
        "completed", "preempted", "failed", "other", "other"]  # fmt: skip


def test_a_run_recorded_before_accounting_counts_from_its_start():
    old = Attempt(1, 0, "Completed", started_at=at(5), finished_at=at(65))
    usage = usage_of(old, gpus=2)
    assert usage is not None
    assert (usage.allocated_seconds, usage.run_seconds, usage.wait_seconds) == (3600, 3600, None)
    assert usage_of(Attempt(2, started_at=at(5)), gpus=2) is None  # still going


def test_buckets_are_aligned_on_utc_midnight_and_cover_the_window():
    assert bucket_of(at(90), HOUR) == at(60)
    assert bucket_of(at(90), DAY) == T0
    assert bucket_of(at(-1), DAY) == T0 - DAY
    assert buckets(at(30), at(180), HOUR) == [at(0), at(60), at(120)]
    assert buckets(at(30), at(30), HOUR) == []


def test_a_run_spanning_midnight_is_split_between_the_days():
    found = dict(spread(at(23 * 60), at(26 * 60), DAY, since=T0 - DAY, until=T0 + 7 * DAY))
    assert found == {T0: 3600.0, T0 + DAY: 7200.0}


def test_spread_is_clipped_to_the_window():
    found = dict(spread(at(0), at(300), HOUR, since=at(90), until=at(200)))
    assert found == {at(60): 1800.0, at(120): 3600.0, at(180): 1200.0}


@given(
    start=st.integers(0, 10_000),
    length=st.integers(0, 10_000),
    step=st.sampled_from(["hour", "day"]),
)
def test_spread_adds_up_to_the_interval_within_the_window(start: int, length: int, step: str):
    since, until = at(1_000), at(8_000)
    begin, end = at(start), at(start + length)
    pieces = list(spread(begin, end, STEPS[step], since=since, until=until))
    inside = max(0.0, (min(end, until) - max(begin, since)).total_seconds())
    assert abs(sum(s for _, s in pieces) - inside) < 1e-6
    assert all(0 < s <= STEPS[step].total_seconds() for _, s in pieces)
    assert len({b for b, _ in pieces}) == len(pieces)


def test_wait_buckets_end_with_an_unbounded_one():
    assert wait_bucket(0) == 0
    assert wait_bucket(WAIT_BOUNDS[0]) == 0
    assert wait_bucket(WAIT_BOUNDS[0] + 1) == 1
    assert wait_bucket(10**9) == len(WAIT_BOUNDS)


# -- the times the operator records on each run ------------------------------------

RULES = Rules(grace_margin=timedelta(seconds=2), backoff_base=timedelta(seconds=10))


def step(job: Job, now: datetime, *found: PodView | None) -> tuple[Job, Decision]:
    decision = reconcile_job(job, Context(now=now, rules=RULES, pods=pods(*found)))
    return replace(job, status=decision.status), decision


def test_a_first_run_waits_from_creation_and_runs_from_its_pods_running():
    job = a_training_job("j").created_at(at(0)).in_phase(
        "running", attempts=1, admittedAt="2026-03-01T00:10:00Z",
        runningSince="2026-03-01T00:12:00Z", placement=["gpu-node-0"]).job()  # fmt: skip
    done = a_pod_of(job, phase="Succeeded", exit_code=0)
    job, _ = step(job, at(70), done)
    (run,) = job.status.history
    assert (run.queued_at, run.admitted_at, run.running_at) == (at(0), at(10), at(12))
    assert run.reason == "Completed"


def test_a_retry_holds_its_gpus_from_the_failure_and_never_waited():
    job = a_training_job("flaky").created_at(at(0)).with_spec(backoffLimit=1).in_phase(
        "running", attempts=1, admittedAt="2026-03-01T00:10:00Z",
        runningSince="2026-03-01T00:11:00Z", placement=["gpu-node-0"]).job()  # fmt: skip
    failed = a_pod_of(job, phase="Failed", exit_code=3, reason="Error")
    job, _ = step(job, at(20), failed)
    job, _ = step(job, at(20.1))  # the Pod is gone: retry after the backoff
    job, _ = step(job, at(21))  # the retry starts its Pod
    second = replace(failed, attempt=2)
    job, _ = step(job, at(30), second)
    first, retry = job.status.history
    assert first.finished_at is not None
    assert retry.queued_at == retry.admitted_at == first.finished_at
    assert retry.running_at is None  # its Pod never ran


def test_a_preempted_job_waits_again_from_its_stop():
    first = Attempt(1, 143, "Preempted", started_at=at(10), finished_at=at(40),
                    queued_at=at(0), admitted_at=at(10))  # fmt: skip
    job = a_training_job("p").created_at(at(0)).in_phase(
        "running", attempts=2, admittedAt="2026-03-01T01:00:00Z",
        runningSince="2026-03-01T01:01:00Z", placement=["gpu-node-0"],
        history=[first.to_raw()]).job()  # fmt: skip
    job, _ = step(job, at(90), a_pod_of(job, phase="Succeeded", exit_code=0, attempt=2))
    assert job.status.phase is Phase.COMPLETED
    second = job.status.history[-1]
    assert (second.queued_at, second.admitted_at, second.running_at) == (at(40), at(60), at(61))
    assert Attempt.parse(second.to_raw()) == second
