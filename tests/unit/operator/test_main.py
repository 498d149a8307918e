"""The operator's SIGUSR1 dump: every asyncio task with the line it waits on, and
where the process's memory is; glibc's allocator tuned and trimmed; the process
started without the Kubernetes client libraries kopf would import."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import subprocess
import sys
import tracemalloc

import pytest

from shunter.operator import memory
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
    assert "--- end of asyncio tasks ---\n--- process memory ---\nrss " in out
    assert out.rstrip().endswith("--- end of process memory ---")


def test_outside_a_loop_it_says_there_is_none(capsys: pytest.CaptureFixture[str]):
    dump_tasks()
    assert capsys.readouterr().out.startswith(
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


def _section(out: str) -> dict[str, str]:
    """The process memory lines of a dump, by their first word."""
    lines = out.split("--- process memory ---\n", 1)[1].split("--- end of process memory", 1)[0]
    return {line.split(" ", 1)[0]: line for line in lines.splitlines()}


def _mib(line: str, after: str) -> float:
    return float(line.split(after, 1)[1].split()[0].rstrip(",;"))


def test_the_dump_says_where_the_memory_is(capsys: pytest.CaptureFixture[str]):
    dump_tasks()
    before = _section(capsys.readouterr().out)
    kept = [[i] for i in range(1_000_000)]  # about 100 MiB of small Python objects
    dump_tasks()
    after = _section(capsys.readouterr().out)
    assert set(after) == {"rss", "glibc", "python"}
    grown = _mib(after["python"], "objects ") - _mib(before["python"], "objects ")
    assert 60 < grown < 200, (before, after)
    assert len(kept) == 1_000_000


def _rss_mib() -> float:
    found = memory.rss_mib()
    assert found is not None  # Linux: /proc
    return found


def test_glibc_gives_back_the_free_pages_it_keeps_when_trimmed():
    assert memory.tune()  # this is glibc (Debian, the chart's image)
    # 100 MiB of 2 KiB blocks (above Python's small-object limit: glibc's heap), all
    # freed but the last, which keeps the heap's top where it is: glibc keeps the
    # rest until trimmed.
    blocks = [bytearray(2048) for _ in range(50_000)]
    last = blocks[-1]
    del blocks
    held = _rss_mib()
    assert memory.trim()
    assert held - _rss_mib() > 50
    assert len(last) == 2048


def test_the_collectors_time_is_counted_by_generation():
    clock = memory.CollectionClock()
    enabled = gc.isenabled()
    gc.disable()  # only the collections below (an automatic one could come in the loop)
    gc.callbacks.append(clock)
    try:
        garbage = []
        for _ in range(20_000):  # cycles only the collector frees
            cycle: list[object] = []
            cycle.append(cycle)
            garbage.append(cycle)
        del garbage, cycle
        gc.collect()
        gc.collect(0)
    finally:
        gc.callbacks.remove(clock)
        if enabled:
            gc.enable()
    assert clock.count[2] == 1
    assert clock.count[0] >= 1
    assert 0 < clock.longest[2] <= clock.seconds[2]
    assert sum(clock.collected) >= 20_000  # the cycles
    lines = clock.lines()
    assert lines[0].startswith("gc generation 2: 1 collections, ")
    assert [line.split(":")[0] for line in lines] == [f"gc generation {g}" for g in (2, 1, 0)]


# main() in a process of its own, up to the point where kopf would take over (asyncio.run
# is replaced by a report of what the process imported and what kopf found installed).
_STARTED = """
import asyncio, gc, json, sys
from shunter.operator import main

def report(coroutine):
    coroutine.close()
    from kopf._cogs.helpers import thirdparty
    print(json.dumps({
        "imported": sorted(n for n, m in sys.modules.items() if m is not None and
                           n.split(".")[0] in main.CLIENT_LIBRARIES),
        "kopf_sees_kubernetes": thirdparty.V1ObjectMetaSync is not None,
        "handlers": "shunter.operator.handlers" in sys.modules,
        "gc_thresholds": list(gc.get_threshold()),
    }))

asyncio.run = report
sys.exit(main.main([]))
"""


def _started(*, leave_out: bool) -> dict[str, object]:
    code = _STARTED if leave_out else _STARTED.replace(
        "from shunter.operator import main\n",
        "from shunter.operator import main\nmain.leave_out_client_libraries = lambda: None\n",
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHUNTER_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120, check=True)  # fmt: skip
    return dict(json.loads(done.stdout.splitlines()[-1]))


def test_the_operator_starts_without_the_kubernetes_client_libraries_and_with_its_gc_thresholds():
    started = _started(leave_out=True)
    assert started == {"imported": [], "kopf_sees_kubernetes": False, "handlers": True,
                       "gc_thresholds": list(memory.GC_THRESHOLDS)}  # fmt: skip
    # What it leaves out: installed here, and imported by kopf otherwise.
    assert "kubernetes" in _started(leave_out=False)["imported"]
