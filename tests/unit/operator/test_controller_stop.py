"""The controller's loop stops when cancelled, whenever the cancel lands: also right
after a wake-up, while the loop is about to resume (Python 3.11's asyncio.wait_for
returned there and the loop went on: an operator that SIGTERM did not stop)."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from shunter.operator.actions import Actions
from shunter.operator.book import JobBook
from shunter.operator.controller import Controller
from shunter.operator.settings import Settings


@pytest.mark.parametrize("turns", range(6))  # loop turns between the wake and the cancel
def test_the_loop_ends_on_cancel_right_after_a_wake(monkeypatch: pytest.MonkeyPatch, turns: int):
    monkeypatch.setenv("SHUNTER_NAMESPACE", "ml")
    controller = Controller(cast(Actions, None), JobBook(), Settings.from_env())
    controller.synced = lambda: False  # the loop only waits: no pass, no I/O

    async def scenario() -> bool:
        task = asyncio.create_task(controller.run())
        for _ in range(3):
            await asyncio.sleep(0)  # the loop reaches its wait
        controller.wake()
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=2)
        if not done:
            task.cancel()
            await asyncio.wait({task})
        return bool(done) and task.cancelled()

    assert asyncio.run(scenario()), "the controller's loop went on after its cancel"
