"""What a stop costs and the grace it gives (shunter.domain.workloss), and what an
attempt records of its trainer's checkpoints (stopping.record_attempt)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shunter.domain.model import format_time
from shunter.domain.workloss import grace_for, stop_cost
from shunter.operator.stopping import record_attempt
from tests.support.builders import a_training_job

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def running(*, write: float | None = None, on_stop: bool = False, saved_ago: int = 600,
            history: list[dict] | None = None, grace: int = 30):  # fmt: skip
    status: dict = {"attempts": 2, "runningSince": format_time(NOW - timedelta(hours=1)),
                    "history": history or []}  # fmt: skip
    if write is not None:
        saved = format_time(NOW - timedelta(seconds=saved_ago))
        status["checkpoint"] = {"step": 7, "attempt": 2, "writeSeconds": write, "time": saved,
                                "maxWriteSeconds": write, "onStop": on_stop}  # fmt: skip
        status["progress"] = {"step": 9, "attempt": 2, "resumedFromStep": 3,
                              "reportedAt": format_time(NOW)}  # fmt: skip
    return a_training_job("j").with_grace(grace).in_phase("running", **status).job()


def test_the_grace_grows_to_fit_the_longest_write_within_the_queues_bound():
    assert grace_for(running(), queue_max=None, cap=600) == 30  # never reported: fixed
    assert grace_for(running(write=4), queue_max=None, cap=600) == 30  # fits already
    assert grace_for(running(write=100), queue_max=None, cap=600) == 155  # 1.5 x + 5
    assert grace_for(running(write=100), queue_max=120, cap=600) == 120
    assert grace_for(running(write=1000), queue_max=None, cap=600) == 600
    assert grace_for(running(write=100), queue_max=None, cap=None) == 30  # sizing off


def test_what_a_stop_now_would_lose():
    quick = stop_cost(running(write=4, on_stop=True), now=NOW, grace=30)
    assert (quick.lost_seconds, quick.stop_seconds) == (0.0, 4)
    slow = stop_cost(running(write=90, on_stop=True), now=NOW, grace=30)
    assert (slow.lost_seconds, slow.stop_seconds) == (600, 30)  # killed before it saves
    periodic = stop_cost(running(write=20), now=NOW, grace=30)
    assert periodic.lost_seconds == 600
    silent = stop_cost(running(), now=NOW, grace=30)
    assert silent.lost_seconds == 3600  # everything since it started
    assert silent.gpu_seconds(4) == 4 * 3600


def test_a_promise_to_checkpoint_on_a_stop_is_not_believed_after_a_stop_that_broke_it():
    broke = [{"attempt": 1, "reason": "Preempted", "exitCode": 137}]
    assert stop_cost(running(write=4, on_stop=True, history=broke), now=NOW,
                     grace=30).lost_seconds == 600  # fmt: skip
    kept = [{"attempt": 1, "reason": "Preempted", "exitCode": 75}]
    assert stop_cost(running(history=kept), now=NOW, grace=30).lost_seconds == 0.0


def test_an_attempt_records_where_it_resumed_from_its_last_checkpoint_and_the_work_lost():
    run = record_attempt(running(write=4, saved_ago=90), reason="Preempted", now=NOW)[-1]
    assert (run.number, run.resumed_from_step, run.checkpoint_step) == (2, 3, 7)
    assert run.lost_seconds == 90
    silent = record_attempt(running(), reason="Preempted", now=NOW)[-1]
    assert silent.checkpoint_step is None
    assert silent.lost_seconds == 3600


def test_a_job_admitted_again_is_priced_from_its_admission_not_its_last_run():
    # Preempted an hour ago after 3 h of running, admitted again 5 s ago: starting.
    job = a_training_job("j").in_phase(
        "starting", attempts=2, runningSince=format_time(NOW - timedelta(hours=4)),
        admittedAt=format_time(NOW - timedelta(seconds=5))).job()  # fmt: skip
    assert stop_cost(job, now=NOW, grace=30).lost_seconds == 5
    assert record_attempt(job, reason="Preempted", now=NOW)[-1].lost_seconds == 5


def test_a_stop_keeps_the_grace_it_began_with():
    from shunter.domain.model import StopCause
    from shunter.operator.rules import Rules
    from shunter.operator.stopping import StopView, stop
    from tests.support.builders import a_pod_of, pods

    job = running(write=100)  # sized: 155 s
    pod = a_pod_of(job)
    first = stop(job, StopView(pods(pod), grace=30), cause=StopCause.PREEMPT, now=NOW,
                 rules=Rules())  # fmt: skip
    assert first.delete_pods[0].grace_seconds == 30
    assert first.status.termination.grace == 30
    raw = {k: v for k, v in first.status.to_raw().items() if v is not None and k != "phase"}
    raw["checkpoint"] = {"step": 9, "attempt": 2, "time": format_time(NOW),
                         "maxWriteSeconds": 400, "writeSeconds": 400}  # fmt: skip
    later = a_training_job("j").in_phase("stopping", **raw).job()
    # A checkpoint reported mid-stop does not move its deadline.
    again = stop(later, StopView(pods(pod)), cause=StopCause.PREEMPT,
                 now=NOW + timedelta(seconds=35), rules=Rules())  # fmt: skip
    assert again.wake_at == NOW + timedelta(seconds=40)  # 30 s + the 10 s margin
