"""Flights waiting in the gate's line (no API server: nothing here is sent)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import cast

import pytest

from shunter.operator.actions import Actions
from shunter.operator.book import JobBook
from shunter.operator.controller import Controller
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
