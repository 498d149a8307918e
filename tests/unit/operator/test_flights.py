"""Flights waiting in the gate's line (no API server: nothing here is sent)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from typing import cast

import pytest

from shunter.domain.model import Job
from shunter.operator.actions import Actions
from shunter.operator.book import JobBook
from shunter.operator.controller import AHEAD, Controller, rank
from shunter.operator.decisions import Decision, Event
from shunter.operator.gate import Gate, Rank
from shunter.operator.lifecycle import Context, reconcile_job, stale_stop
from shunter.operator.settings import Settings
from tests.support.builders import a_pod_of, a_training_job, pods

QUEUED = Event("Normal", "Queued", "Waiting for a free slot")


def test_a_renumbering_replaced_in_line_keeps_its_events_once(monkeypatch: pytest.MonkeyPatch):
    """A job not numbered yet is decided again every pass until its number is written,
    each time with the same Queued Event: the one flight that finally goes posts it
    once, and keeps an Event it had that the new decision does not repeat."""
    monkeypatch.setenv("SHUNTER_NAMESPACE", "ml")
    job = a_training_job("waits", "ml").job()
    controller = Controller(cast(Actions, None), JobBook.of([job]), Settings.from_env())
    note = Event("Normal", "Note", "said once, before")

    async def scenario() -> tuple[Event, ...]:
        controller._gate = Gate(1)
        controller._gate.line(Rank.START, lambda: None)  # every slot is taken
        numbered = replace(job.status, phase=None, queue_position=3, sequence=1)
        controller._send(job, Decision(status=numbered, events=(QUEUED, note)))
        for position in (2, 1):
            again = replace(numbered, queue_position=position)
            controller._send(job, Decision(status=again, events=(QUEUED,)))
        (flight,) = controller._flights.values()
        assert not flight.sent
        assert flight.decision.status.queue_position == 1
        return flight.decision.events

    assert asyncio.run(scenario()) == (QUEUED, note)


def test_grounding_stops_a_flight_that_took_off_at_once_and_drops_those_in_line(
    monkeypatch: pytest.MonkeyPatch,
):
    """A flight handed a slot the moment it was sent is in the air: grounding cancels
    its task and waits for it (it must not be taken for one still in line, whose
    write would then go on after the operator stopped)."""
    monkeypatch.setenv("SHUNTER_NAMESPACE", "ml")
    flying, waiting = a_training_job("flying", "ml").job(), a_training_job("waiting", "ml").job()
    controller = Controller(cast(Actions, None), JobBook.of([flying, waiting]), Settings.from_env())

    async def scenario() -> tuple[bool, bool, int]:
        controller._gate = Gate(1)
        never = asyncio.Event()

        async def carry_out(flight: object) -> None:
            await never.wait()  # a write the API server never answers

        controller._carry_out = carry_out  # type: ignore[assignment,method-assign]
        started = replace(flying.status, phase=None, queue_position=1, sequence=1)
        controller._send(flying, Decision(status=started))
        controller._send(waiting, Decision(status=replace(started, queue_position=2)))
        air = controller._flights[flying.key]
        assert air.sent
        assert not controller._flights[waiting.key].sent
        await asyncio.sleep(0)  # the flight's task is running its write
        await controller.ground()
        assert air.task is not None
        return air.task.cancelled(), air.task.done(), len(controller._flights)

    assert asyncio.run(scenario()) == (True, True, 0)


def test_the_next_pass_waits_while_many_urgent_writes_wait(monkeypatch: pytest.MonkeyPatch):
    """Paced: with more than AHEAD urgent writes waiting for a slot, the loop's next
    pass waits until half as many do; with AHEAD or fewer it goes at once."""
    monkeypatch.setenv("SHUNTER_NAMESPACE", "ml")
    controller = Controller(cast(Actions, None), JobBook(), Settings.from_env())

    async def scenario() -> None:
        gate = controller._gate = Gate(1)
        gate.line(Rank.START, lambda: None)  # the one slot is taken
        for _ in range(AHEAD):
            gate.line(Rank.START, lambda: None)
        await asyncio.wait_for(controller._caught_up(), 1)  # AHEAD wait: at once
        gate.line(Rank.START, lambda: None)
        pacing = asyncio.create_task(controller._caught_up())
        await asyncio.sleep(0)  # it waits: AHEAD + 1 wait
        assert not pacing.done()
        while gate.urgent_waiting > AHEAD // 2 + 1:
            gate.release(Rank.START)  # one lands, the next starts
            await asyncio.sleep(0)
            assert not pacing.done()
        gate.release(Rank.START)
        await asyncio.wait_for(pacing, 1)
        assert gate.urgent_waiting == AHEAD // 2

    asyncio.run(scenario())


def test_each_decision_waits_in_the_gates_line_of_what_it_does():
    """Decided by the lifecycle: a user's cancel (queued or running) answers first; a
    preemption, `running` and a finish settle the job, ahead of the admissions in the
    gate; a waiting job's new position is a renumbering."""
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    running = a_training_job("r").in_phase("running", runningSince="2026-03-01T11:00:00Z",
                                           placement=["gpu-node-0"]).job()  # fmt: skip
    starting = a_training_job("s").in_phase("starting", admittedAt="2026-03-01T11:59:00Z",
                                            placement=["gpu-node-0"]).job()  # fmt: skip
    queued = a_training_job("q").in_phase("queued", sequence=4, queuePosition=2).job()
    cancelled = a_training_job("c").cancelled().in_phase("queued", sequence=5).job()
    cancelled_running = replace(running, spec=replace(running.spec, cancelled=True))

    def decided(job: Job, **ctx: object) -> Rank:
        return rank(job, reconcile_job(job, Context(now=now, **ctx)))  # type: ignore[arg-type]

    assert decided(cancelled_running, pods=pods(a_pod_of(running))) is Rank.ANSWER
    assert decided(cancelled) is Rank.ANSWER
    assert decided(replace(running, spec=replace(running.spec, suspended=True)),
                   pods=pods(a_pod_of(running))) is Rank.ANSWER  # fmt: skip
    assert decided(running, pods=pods(a_pod_of(running)), preempt="p") is Rank.SETTLE
    assert decided(running, pods=pods(a_pod_of(running, phase="Succeeded"))) is Rank.SETTLE
    assert decided(starting, pods=pods(a_pod_of(starting))) is Rank.SETTLE  # -> running
    assert decided(queued, admit=("gpu-node-0",)) is Rank.START
    assert decided(queued, queue_position=1) is Rank.RENUMBER


def test_a_stop_whose_job_finished_while_it_waited_is_not_sent(monkeypatch: pytest.MonkeyPatch):
    """A preemption decided while the job's Pod ran, its Pod succeeding before the
    stop had a slot: nothing is written (sent, it would queue done work to run again)
    and the job is decided again, which completes it. A user's cancel is sent."""
    monkeypatch.setenv("SHUNTER_NAMESPACE", "ml")
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    job = a_training_job("victim", "ml").in_phase(
        "running", runningSince="2026-03-01T11:00:00Z", placement=["gpu-node-0"]).job()  # fmt: skip
    ran = a_pod_of(job)
    book = JobBook.of([job])
    book.put_pod(ran)
    written: list[str] = []

    class Writes:
        async def patch_status(self, *args: object, **kwargs: object) -> None:
            written.append("status")
            raise AssertionError("a stale stop's status was written")

    controller = Controller(cast(Actions, Writes()), book, Settings.from_env())
    preempted = reconcile_job(job, Context(now=now, pods=pods(ran), preempt="p"))
    cancelled = replace(job, spec=replace(job.spec, cancelled=True))
    cancel = reconcile_job(cancelled, Context(now=now, pods=pods(ran)))
    assert preempted.delete_pods  # both stop the Pod as decided
    assert cancel.delete_pods

    async def scenario() -> bool:
        controller._gate = Gate(1)
        controller._gate.line(Rank.START, lambda: None)  # every slot is taken
        controller._send(job, preempted)
        flight = controller._flights[job.key]
        book.put_pod(replace(ran, phase="Succeeded"))  # it finished while the stop waited
        book.dirty.clear()
        controller._gate.release(Rank.START)  # the stop's turn
        await controller.settled()
        return job.key in book.dirty and flight.again

    assert asyncio.run(scenario())
    assert written == []
    done = reconcile_job(job, Context(now=now, pods=pods(replace(ran, phase="Succeeded"))))
    assert done.status.phase == "completed"
    assert stale_stop(job, preempted, pods(replace(ran, phase="Succeeded")))
    assert not stale_stop(cancelled, cancel, pods(replace(ran, phase="Succeeded")))
    assert not stale_stop(job, preempted, pods(ran))


def test_a_start_in_line_whose_job_the_user_changed_is_dropped_and_decided_again(
    monkeypatch: pytest.MonkeyPatch,
):
    """A job admitted by the operator, its admission still waiting for a slot, and its
    user cancels it: the admission is never sent (it would be refused, decided from
    the version before the cancel), and the job is decided again from what is stored:
    removed from the queue, without an attempt. A decision about the same version
    (a timer's) leaves the admission in line."""
    monkeypatch.setenv("SHUNTER_NAMESPACE", "ml")
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    job = a_training_job("late", "ml").in_phase("queued", sequence=4, queuePosition=1).job()
    book = JobBook.of([job])
    controller = Controller(cast(Actions, None), book, Settings.from_env())
    admit = reconcile_job(job, Context(now=now, admit=("gpu-node-0",)))
    assert admit.create

    async def scenario() -> None:
        gate = controller._gate = Gate(1)
        gate.line(Rank.START, lambda: None)  # every slot is taken
        controller._send(job, admit)
        flight = controller._flights[job.key]
        assert flight.rank is Rank.START
        assert book.jobs[job.key].phase == "starting"  # assumed: its slot is held
        assumed = book.jobs[job.key]
        controller._send(job, reconcile_job(assumed, Context(now=now)))  # a timer's
        assert controller._flights[job.key] is flight
        assert flight.again
        cancelled = replace(job, spec=replace(job.spec, cancelled=True), resource_version="101")
        book.put_job(cancelled)
        book.dirty.clear()
        known = book.known(job.key)
        assert known is not None
        controller._send(known, reconcile_job(book.jobs[job.key], Context(now=now)))
        assert job.key not in controller._flights
        assert flight.ticket is not None
        assert flight.ticket.cancelled
        assert job.key in book.dirty
        stored = book.jobs[job.key]
        assert stored.phase == "queued"  # the admission is forgotten, its slot free
        again = reconcile_job(stored, Context(now=now))
        assert again.status.phase == "cancelled"
        assert again.create == ()
        assert again.status.attempts == 0

    asyncio.run(scenario())


def test_a_quick_look_decides_a_cancel_and_a_finish_before_the_next_pass(
    monkeypatch: pytest.MonkeyPatch,
):
    """Between passes, the jobs the watches changed are decided at once where no
    queue's walk takes part: a waiting job's cancel (its admission, still in line,
    dropped first) and a running job's finish, each in the line of stops and finishes.
    A new job waits for the pass that numbers it. All stay marked, and the pass that
    follows finds them decided: it neither drops nor repeats their writes."""
    monkeypatch.setenv("SHUNTER_NAMESPACE", "ml")
    now = datetime.now(UTC)
    waiting = a_training_job("late", "ml").in_phase("queued", sequence=4, queuePosition=1).job()
    running = a_training_job("done", "ml").in_phase(
        "running", sequence=1, runningSince="2026-03-01T11:00:00Z", placement=["gpu-node-0"],
        nodeName="gpu-node-0", podsReady=1).job()  # fmt: skip
    pod = a_pod_of(running)
    fresh = a_training_job("new", "ml").job()
    book = JobBook.of([waiting, running])
    book.put_pod(pod)
    controller = Controller(cast(Actions, None), book, Settings.from_env())
    admit = reconcile_job(waiting, Context(now=now, admit=("gpu-node-0",)))

    async def scenario() -> None:
        controller._gate = Gate(1)
        controller._gate.line(Rank.START, lambda: None)  # every slot is taken: nothing flies
        controller._send(waiting, admit)  # a pass admitted it
        admission = controller._flights[waiting.key]
        book.take_due(now)  # and took what had changed
        assert book.take_news() == set()
        book.put_job(replace(waiting, spec=replace(waiting.spec, cancelled=True),
                             resource_version="101"))  # fmt: skip
        book.put_pod(replace(pod, phase="Succeeded"))
        book.put_job(fresh)
        controller.quick()
        assert admission.ticket is not None
        assert admission.ticket.cancelled
        cancel = controller._flights[waiting.key]
        assert cancel is not admission
        assert (cancel.decision.status.phase, cancel.rank) == ("cancelled", Rank.ANSWER)
        assert cancel.decision.status.attempts == 0  # a waiting job's cancel: no attempt
        finish = controller._flights[running.key]
        assert (finish.decision.status.phase, finish.rank) == ("completed", Rank.SETTLE)
        assert fresh.key not in controller._flights  # numbered by the pass, not here
        assert {waiting.key, running.key, fresh.key} <= book.dirty
        await controller.reconcile_once()
        assert controller._flights[waiting.key] is cancel
        assert controller._flights[running.key] is finish
        assert controller._flights[fresh.key].decision.status.sequence == 5
        assert not cancel.again  # the pass decided nothing more
        assert not finish.again

    asyncio.run(scenario())


def test_a_cancel_a_pass_saw_first_is_decided_by_the_quick_look_not_the_next_pass(
    monkeypatch: pytest.MonkeyPatch,
):
    """The pass takes the user's cancel first: deciding from the admission it laid
    over the job, it drops that admission (still in line) and its own decision. The
    quick look that follows the pass decides the cancel from what is stored, without
    waiting for the next pass (at 60,000 jobs, seconds), even if the job's first
    number was never written (there it waits many minutes behind the others'). A
    flight already sent when its user changes the job is looked at again as it lands."""
    monkeypatch.setenv("SHUNTER_NAMESPACE", "ml")
    now = datetime.now(UTC)
    waiting = a_training_job("late", "ml").job()  # as stored: not numbered yet
    book = JobBook.of([waiting])
    controller = Controller(cast(Actions, None), book, Settings.from_env())
    admit = reconcile_job(waiting, Context(now=now, admit=("gpu-node-0",)))

    async def scenario() -> None:
        controller._gate = Gate(1)
        controller._gate.line(Rank.START, lambda: None)  # every slot is taken
        controller._send(waiting, admit)
        admission = controller._flights[waiting.key]
        book.take_due(now)
        book.put_job(replace(waiting, spec=replace(waiting.spec, cancelled=True),
                             resource_version="101"))  # fmt: skip
        await controller.reconcile_once()  # the pass sees it first
        assert admission.ticket is not None
        assert admission.ticket.cancelled
        assert waiting.key not in controller._flights  # nothing decided yet
        assert controller._news.is_set()
        controller.quick()
        cancel = controller._flights[waiting.key]
        assert (cancel.decision.status.phase, cancel.rank) == ("cancelled", Rank.ANSWER)
        assert cancel.decision.status.sequence is None
        cancel.sent = True  # being written, when its user changes the job again
        book.put_job(replace(waiting, spec=replace(waiting.spec, cancelled=True, priority=7),
                             resource_version="102"))  # fmt: skip
        controller.quick()
        assert controller._flights[waiting.key] is cancel
        assert cancel.again  # decided again once it lands

    asyncio.run(scenario())
