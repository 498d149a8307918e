"""The operator's book: written status laid over the watch, and the queue kept in order."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shunter.domain.model import JobStatus, Phase
from shunter.operator.book import JobBook
from tests.support.builders import a_training_job

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_written_status_holds_until_the_watch_shows_that_version():
    job = a_training_job("a").in_phase("queued", sequence=1).job()
    book = JobBook.of([job])
    admitted = JobStatus(phase=Phase.STARTING, sequence=1, pod_name="a-trainer")
    book.written(job, admitted, resource_version="150")

    # The next write's precondition is the version this write produced.
    assert book.jobs[job.key].resource_version == "150"

    book.put_job(replace(job, resource_version="120"))  # an older event arrives late
    assert book.jobs[job.key].phase is Phase.STARTING
    assert book.jobs[job.key].resource_version == "150"
    assert job.key in book.active
    assert book.queued_count == 0

    book.put_job(replace(job, resource_version="150", status=admitted))
    assert book.jobs[job.key].status == admitted


def test_forgetting_writes_goes_back_to_what_the_watch_shows():
    job = a_training_job("a").in_phase("queued", sequence=1).job()
    book = JobBook.of([job])
    book.written(job, JobStatus(phase=Phase.STARTING, sequence=1), resource_version="150")
    book.forget_writes()
    assert book.jobs[job.key].phase is Phase.QUEUED
    assert [j.key for j in book.waiting()] == [job.key]


def test_the_queue_follows_priority_changes_and_leaves_with_cancel():
    a = a_training_job("a").created_at(T0).in_phase("queued", sequence=1).job()
    b = a_training_job("b").created_at(T0 + timedelta(seconds=1)).in_phase("queued", sequence=2)
    book = JobBook.of([a, b.job()])
    assert [j.key.name for j in book.waiting()] == ["a", "b"]
    book.put_job(b.with_priority(5).job())
    assert [j.key.name for j in book.waiting()] == ["b", "a"]
    book.put_job(replace(a, spec=replace(a.spec, cancelled=True)))
    assert [j.key.name for j in book.waiting()] == ["b"]
    book.remove_job(b.job().key)
    assert list(book.waiting()) == []
    assert book.queued_count == 0


def test_timers_come_due_once():
    job = a_training_job("t").in_phase("running").job()
    book = JobBook.of([job])
    book.take_due(T0)
    book.wake_at(job.key, T0 + timedelta(seconds=5))
    book.wake_at(job.key, T0 + timedelta(seconds=9))  # a later look is implied
    assert book.take_due(T0 + timedelta(seconds=4)) == set()
    assert book.take_due(T0 + timedelta(seconds=5)) == {job.key}
    assert book.take_due(T0 + timedelta(seconds=60)) == set()


def test_a_write_answered_after_the_watch_showed_a_later_change_keeps_the_watchs_job():
    # Admitted at 150; the user's cancel (160) reaches the watch before the answer to
    # the admission's write does. The book must keep 160 as the next precondition: 150
    # would meet a 409 on every write, and no watch event would ever correct it.
    job = a_training_job("a").in_phase("queued", sequence=1).job()
    book = JobBook.of([job])
    admitted = JobStatus(phase=Phase.STARTING, sequence=1, pod_name="a-trainer")
    cancelled = a_training_job("a").cancelled().in_phase("starting", sequence=1).job()
    book.put_job(replace(cancelled, uid=job.uid, resource_version="160", status=admitted))
    book.written(job, admitted, resource_version="150")
    shown = book.jobs[job.key]
    assert (shown.resource_version, shown.spec.cancelled) == ("160", True)
    book.put_job(replace(shown, resource_version="170"))
    assert book.jobs[job.key].resource_version == "170"


def test_a_status_in_flight_holds_over_watch_events_until_it_settles():
    job = a_training_job("a").in_phase("queued", sequence=1).job()
    book = JobBook.of([job])
    book.take_due(T0)
    admitted = JobStatus(phase=Phase.STARTING, sequence=1, pod_name="a-trainer")
    book.assume(job, admitted)
    assert book.jobs[job.key].phase is Phase.STARTING
    assert job.key in book.active
    assert book.queued_count == 0
    assert book.take_due(T0) == set()  # looked at again when the flight lands, not before

    # A user's change arrives meanwhile: kept under the status in flight.
    changed = replace(job, resource_version="130", spec=replace(job.spec, priority=7))
    book.put_job(changed)
    assert book.jobs[job.key].phase is Phase.STARTING
    assert book.jobs[job.key].spec.priority == 7
    assert book.known(job.key) == changed
    assert book.watched(job.key) == changed

    # The write failed: back to what the watch shows, nothing left of the decision.
    book.settle(job.key)
    assert book.jobs[job.key] == changed
    assert job.key not in book.active
    assert [j.key for j in book.waiting()] == [job.key]


def test_a_status_in_flight_that_lands_becomes_a_written_status():
    job = a_training_job("a").in_phase("queued", sequence=1).job()
    book = JobBook.of([job])
    admitted = JobStatus(phase=Phase.STARTING, sequence=1, pod_name="a-trainer")
    book.assume(job, admitted)
    book.written(job, admitted, resource_version="150")
    assert book.jobs[job.key].status == admitted
    assert book.jobs[job.key].resource_version == "150"
    book.put_job(replace(job, resource_version="140"))  # older than the write
    assert book.jobs[job.key].phase is Phase.STARTING
    assert book.known(job.key) == book.jobs[job.key]


def test_forgetting_writes_also_drops_the_status_in_flight():
    job = a_training_job("a").in_phase("queued", sequence=1).job()
    book = JobBook.of([job])
    book.assume(job, JobStatus(phase=Phase.STARTING, sequence=1))
    book.forget_writes()
    assert book.jobs[job.key].phase is Phase.QUEUED


def test_what_moves_the_versions_kept_walks_are_checked_against():
    """A queue's version moves with its queued jobs, a cohort's with any of its jobs
    (a write in flight and its taking back too), the structure with the queues;
    a trainer's progress alone moves nothing (no kept walk reads it)."""
    from shunter.domain.model import Progress
    from shunter.domain.queues import QueueView

    queued = a_training_job("a").with_spec(queue="q").in_phase("queued", sequence=1).job()
    running = a_training_job("b").with_spec(queue="r").in_phase("running", sequence=2).job()
    book = JobBook.of([queued, running], queues=[QueueView("q", cohort="c"),
                                                 QueueView("r", cohort="c")])  # fmt: skip
    cohort = ("cohort", "c")

    def versions():
        return (book.queue_versions.get("q", 0), book.queue_versions.get("r", 0),
                book.group_versions.get(cohort, 0), book.structure)  # fmt: skip

    before = versions()
    progress = Progress(step=5, reported_at=T0)
    book.put_job(replace(running, status=replace(running.status, progress=progress)),
                 quiet=True)  # fmt: skip
    assert versions() == before
    book.put_job(replace(running, status=replace(running.status, message="new")))
    assert versions()[:2] == before[:2]  # no queued job of q or r changed
    assert versions()[2] > before[2]
    before = versions()
    book.assume(queued, JobStatus(phase=Phase.STARTING, sequence=1))
    assert versions()[0] > before[0]
    assert versions()[2] > before[2]
    before = versions()
    book.settle(queued.key)
    assert versions()[0] > before[0]
    assert versions()[2] > before[2]
    before = versions()
    book.put_queue(QueueView("q", cohort="c", gpu_quota=8))
    assert versions()[3] > before[3]


def test_the_book_knows_which_jobs_show_an_estimate() -> None:
    """The estimates' writer takes an estimate away from every job that shows one and
    should not (shunter.operator.estimating.Estimator.write): the book keeps who shows
    one, so that is not a look at every job's status."""
    job = a_training_job("a").job()
    at = datetime(2026, 1, 1, tzinfo=UTC)
    shown = replace(job, status=replace(job.status, estimated_start=at))
    book = JobBook.of([job, a_training_job("b").job()])
    assert book.estimated == set()
    book.put_job(shown)
    assert book.estimated == {job.key}
    book.put_job(job)  # written without it
    assert book.estimated == set()
    book.put_job(shown)
    book.remove_job(job.key)
    assert book.estimated == set()
