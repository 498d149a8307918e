"""The operator's SIGUSR1 dump: every asyncio task with the line it waits on."""

from __future__ import annotations

import asyncio
import os
import signal
import tracemalloc

import pytest

from shunter.operator.main import dump_tasks


async def _waits_on_an_event(event: asyncio.Event) -> None:
    await event.wait()


def test_sigusr1_writes_each_task_and_where_it_waits(capsys: pytest.CaptureFixture[str]):
    async def scenario() -> None:
        event = asyncio.Event()
        task = asyncio.create_task(_waits_on_an_event(event), name="the-waiter")
        await asyncio.sleep(0)  # the task reaches its await
        previous = signal.signal(signal.SIGUSR1, dump_tasks)
        try:
            os.kill(os.getpid(), signal.SIGUSR1)
            await asyncio.sleep(0)  # the handler runs between two bytecodes
        finally:
            signal.signal(signal.SIGUSR1, previous)
        event.set()
        await task

    asyncio.run(scenario())
    out = capsys.readouterr().out
    assert "--- asyncio tasks (2) on SIGUSR1 ---" in out
    (waiter,) = [line for line in out.splitlines() if line.startswith("the-waiter: ")]
    assert "_waits_on_an_event (test_main.py:" in waiter
    assert out.rstrip().endswith("--- end of asyncio tasks ---")


def test_outside_a_loop_it_says_there_is_none(capsys: pytest.CaptureFixture[str]):
    dump_tasks()
    assert capsys.readouterr().out == (
        "--- asyncio tasks (0) on SIGUSR1 ---\n--- end of asyncio tasks ---\n"
    )


def test_when_memory_is_traced_it_names_the_largest_allocation_sites(
    capsys: pytest.CaptureFixture[str],
):
    tracemalloc.start()
    try:
        kept = [bytearray(4096) for _ in range(256)]  # 1 MiB from one line
        dump_tasks()
    finally:
        tracemalloc.stop()
    out = capsys.readouterr().out
    assert "--- memory: " in out
    memory = out.split("--- memory: ", 1)[1].splitlines()
    assert "test_main.py" in memory[1]  # the largest site is the line above
    assert memory[-1] == "--- end of memory ---"
    assert len(kept) == 256
