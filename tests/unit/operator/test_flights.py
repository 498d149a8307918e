"""Flights waiting in the gate's line (no API server: nothing here is sent)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import cast

import pytest

from shunter.operator.actions import Actions
from shunter.operator.book import JobBook
from shunter.operator.controller import AHEAD, Controller
from shunter.operator.decisions import Decision, Event
from shunter.operator.gate import Gate
from shunter.operator.settings import Settings
from tests.support.builders import a_training_job

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
        controller._gate.line(urgent=True, start=lambda: None)  # every slot is taken
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
        gate.line(urgent=True, start=lambda: None)  # the one slot is taken
        for _ in range(AHEAD):
            gate.line(urgent=True, start=lambda: None)
        await asyncio.wait_for(controller._caught_up(), 1)  # AHEAD wait: at once
        gate.line(urgent=True, start=lambda: None)
        pacing = asyncio.create_task(controller._caught_up())
        await asyncio.sleep(0)  # it waits: AHEAD + 1 wait
        assert not pacing.done()
        while gate.urgent_waiting > AHEAD // 2 + 1:
            gate.release(urgent=True)  # one lands, the next starts
            await asyncio.sleep(0)
            assert not pacing.done()
        gate.release(urgent=True)
        await asyncio.wait_for(pacing, 1)
        assert gate.urgent_waiting == AHEAD // 2

    asyncio.run(scenario())
