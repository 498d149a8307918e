"""shunter.kube.tasks.stop: the task ends; its cancellation is not raised, its own
failure is; and a cancel of the caller while it waits reaches the caller."""

from __future__ import annotations

import asyncio

import pytest

from shunter.kube import tasks


async def _forever() -> None:
    await asyncio.Event().wait()


async def _ignoring_one_cancel(released: asyncio.Event) -> None:
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await released.wait()  # it takes its time to end


def test_a_cancelled_task_is_stopped_quietly():
    async def scenario() -> asyncio.Task[None]:
        task = asyncio.create_task(_forever())
        await asyncio.sleep(0)
        await tasks.stop(task)
        return task

    assert asyncio.run(scenario()).cancelled()


def test_a_task_that_failed_raises_its_failure():
    async def failing() -> None:
        raise ValueError("its own failure")

    async def scenario() -> None:
        task = asyncio.create_task(failing())
        await asyncio.sleep(0)
        await tasks.stop(task)

    with pytest.raises(ValueError, match="its own failure"):
        asyncio.run(scenario())


def test_a_cancel_of_the_caller_while_it_waits_reaches_the_caller():
    async def scenario() -> tuple[bool, bool]:
        released = asyncio.Event()
        task = asyncio.create_task(_ignoring_one_cancel(released))
        await asyncio.sleep(0)
        caller = asyncio.create_task(tasks.stop(task))
        await asyncio.sleep(0)  # the caller waits for the task
        caller.cancel()
        done, _ = await asyncio.wait({caller}, timeout=5)
        released.set()
        await asyncio.wait({task, caller})
        return bool(done) and caller.cancelled(), task.done()

    assert asyncio.run(scenario()) == (True, True)
