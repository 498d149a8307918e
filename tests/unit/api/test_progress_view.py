"""What trainers report, as the API shows it (pure): progress, the last checkpoint and
its age, and "work lost if stopped now", which is shunter.domain.workloss's figure
(the one preemption ranks victims by) with the queue's bound and the operator's cap."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from shunter.api.rendering import Renderer
from shunter.api.schemas import AttemptRow, HistoryRow, JobPublic
from shunter.domain.model import format_time
from shunter.domain.queues import QueueView
from shunter.domain.record import record_of
from shunter.domain.workloss import grace_for, stop_cost
from shunter.operator.mirror import AttemptRow as MirroredAttempt
from tests.support.builders import TrainingJobBuilder, a_training_job, an_appraisal

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STARTED = NOW - timedelta(minutes=60)


def a_trainer(name: str = "j", *, phase: str = "running", **status: object) -> TrainingJobBuilder:
    return (
        a_training_job(name)
        .with_gpus(2)
        .with_spec(nodes=2, queue="research", terminationGracePeriodSeconds=30)
        .in_phase(phase, attempts=1, runningSince=format_time(STARTED), **status)
    )


def test_progress_and_checkpoint_are_shown_as_reported():
    job = (
        a_trainer()
        .with_progress(420, totalSteps=1000, loss=0.75, throughput=3.5, attempt=1,
                       losses=[1.0, 0.9, 0.75], reportedAt=format_time(NOW),
                       resumedFromStep=300)
        .with_checkpoint(400, at=NOW - timedelta(seconds=90), sizeBytes=2_000_000,
                         writeSeconds=4.5, attempt=1, maxWriteSeconds=6.0, onStop=True)
        .job()
    )  # fmt: skip
    view = JobPublic.of(job, at=an_appraisal(NOW)).model_dump(mode="json")
    assert view["progress"] == {
        "step": 420, "total_steps": 1000, "loss": 0.75, "throughput": 3.5,
        "reported_at": "2026-03-01T12:00:00Z", "losses": [1.0, 0.9, 0.75], "percent": 42,
        "resumed_from_step": 300,
    }  # fmt: skip
    assert view["checkpoint"] == {
        "step": 400, "time": "2026-03-01T11:58:30Z", "age_seconds": 90.0,
        "size_bytes": 2_000_000, "write_seconds": 4.5,
    }  # fmt: skip
    # The row's own fields say the same (what the history keeps).
    assert (view["progress_step"], view["total_steps"], view["checkpoint_step"]) == (420, 1000, 400)
    assert view["checkpointed_at"] == "2026-03-01T11:58:30Z"
    # It checkpoints on a stop, in about its longest write: it loses nothing, and the stop
    # holds its 4 GPUs for that write.
    assert view["work_lost_if_stopped"] == {
        "gpu_seconds": 24.0, "lost_seconds": 0.0, "stop_seconds": 6.0,
        "basis": "checkpoints on a stop in about 6s",
    }  # fmt: skip


def test_work_lost_is_the_domains_figure_with_the_queues_bound_and_the_cap():
    job = (
        a_trainer()
        .with_progress(10)
        .with_checkpoint(8, at=NOW - timedelta(minutes=20), writeSeconds=100.0, attempt=1,
                         maxWriteSeconds=100.0, onStop=True)
        .job()
    )  # fmt: skip
    bounded = QueueView("research", max_grace=60)
    cases = [
        (an_appraisal(NOW), 600),  # no bound: sized to 1.5 x 100 s + 5, under the cap
        (an_appraisal(NOW, bounded), 60),  # the queue's bound wins
        (an_appraisal(NOW, max_sized_grace=0), None),  # sizing off: the job's own 30 s
    ]
    for at, cap in cases:
        lost = JobPublic.of(job, at=at).work_lost_if_stopped
        queue_max = 60 if at.queues else None
        grace = grace_for(job, queue_max=queue_max, cap=cap)
        cost = stop_cost(job, now=NOW, grace=grace)
        assert lost is not None
        assert (lost.gpu_seconds, lost.lost_seconds, lost.stop_seconds, lost.basis) == (
            cost.gpu_seconds(4), cost.lost_seconds, cost.stop_seconds, cost.basis)  # fmt: skip
    sized = JobPublic.of(job, at=cases[0][0]).work_lost_if_stopped
    assert sized is not None
    assert sized.lost_seconds == 0.0
    bound = JobPublic.of(job, at=cases[1][0]).work_lost_if_stopped
    assert bound is not None
    assert (bound.lost_seconds, bound.stop_seconds) == (20 * 60.0, 60.0)  # killed mid-write
    assert "takes longer than the grace (60s)" in bound.basis


def test_a_trainer_that_reports_nothing_loses_everything_since_it_started():
    view = JobPublic.of(a_trainer().job(), at=an_appraisal(NOW))
    assert view.progress is None
    assert view.checkpoint is None
    assert view.work_lost_if_stopped is not None
    assert view.work_lost_if_stopped.lost_seconds == 3600.0
    assert view.work_lost_if_stopped.gpu_seconds == 4 * 3600.0
    assert "reports no checkpoints" in view.work_lost_if_stopped.basis


def test_only_a_running_job_not_being_stopped_has_work_to_lose():
    checkpoint = {"step": 5, "time": format_time(NOW - timedelta(seconds=30))}
    stopping = {"step": "graceful", "cause": "cancel", "requestedAt": format_time(NOW)}
    for job in (
        a_trainer(phase="queued").job(),
        a_trainer(phase="starting").job(),
        a_trainer(phase="cancelling", termination=stopping, checkpoint=checkpoint).job(),
        a_trainer(phase="completed", checkpoint=checkpoint).job(),
    ):
        view = JobPublic.of(job, at=an_appraisal(NOW))
        assert view.work_lost_if_stopped is None, job.phase
    finished = JobPublic.of(a_trainer(phase="completed", checkpoint=checkpoint).job(),
                            at=an_appraisal(NOW))  # fmt: skip
    assert finished.checkpoint is not None
    assert finished.checkpoint.age_seconds == 30.0


def test_a_body_is_reused_within_its_second_and_rendered_again_after():
    renderer = Renderer()
    running = a_trainer().job()
    queued = a_trainer("q", phase="queued").job()
    first = renderer.job(running, at=an_appraisal(NOW))
    assert renderer.job(running, at=an_appraisal(NOW)) is first
    later = renderer.job(running, at=an_appraisal(NOW + timedelta(seconds=1)))
    assert later != first  # one second more of work to lose
    assert b'"lost_seconds":3601.0' in later
    waiting = renderer.job(queued, at=an_appraisal(NOW))
    assert renderer.job(queued, at=an_appraisal(NOW + timedelta(hours=1))) is waiting


def test_the_history_rows_and_attempts_carry_the_reported_fields():
    job = a_trainer(
        history=[{"attempt": 1, "exitCode": 143, "reason": "Preempted", "resumedFromStep": 0,
                  "checkpointStep": 300, "lostSeconds": 42.5}],
    ).with_progress(420, totalSteps=1000).with_checkpoint(400, at=NOW).job()  # fmt: skip
    record = record_of(job)
    assert (record.progress_step, record.total_steps) == (420, 1000)
    assert (record.checkpoint_step, record.checkpointed_at) == (400, NOW)
    assert {"progress_step", "total_steps", "checkpoint_step", "checkpointed_at"} <= set(
        HistoryRow.model_fields
    )
    # GET /jobs/{id}/attempts reads the mirror's columns by the API's names.
    assert set(AttemptRow.model_fields) <= set(MirroredAttempt.__dataclass_fields__)
    run = job.status.history[0]
    assert (run.resumed_from_step, run.checkpoint_step, run.lost_seconds) == (0, 300, 42.5)
