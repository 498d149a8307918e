"""The Lease renewed from a thread of its own, against the real API server: a
controller loop busy for longer than the renew deadline keeps the Lease (at 60,000
jobs a pass or a relist holds the loop for seconds, and renewing from that loop lost
it, issue 26); a loop stuck past the stall limit gives it up to a standby."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from shunter.kube import Kube, connect
from shunter.kube.leases import KubeLeaseStore, LeaseRecord
from shunter.operator.leadership import ElectorThread, LeaderElector, Timing


def _elector(kubeconfig: Path, namespace: str, identity: str, timing: Timing,
             changes: list[bool]) -> tuple[LeaderElector, Kube]:  # fmt: skip
    kube = Kube(connect(kubeconfig), connections=1)
    store = KubeLeaseStore(kube, namespace=namespace, name="shunter-operator")
    return LeaderElector(store, identity=identity, timing=timing, on_change=changes.append), kube


async def _read(kubeconfig: Path, namespace: str) -> LeaseRecord:
    kube = Kube(connect(kubeconfig))
    try:
        store = KubeLeaseStore(kube, namespace=namespace, name="shunter-operator")
        record = await store.read(seconds=10)
    finally:
        await kube.close()
    assert record is not None
    return record


async def _until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds}s: {what}")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _leading(kubeconfig: Path, namespace: str, identity: str, timing: Timing,
                   changes: list[bool]) -> AsyncIterator[LeaderElector]:  # fmt: skip
    """An elector on its thread, as the operator runs it, once it holds the Lease."""
    elector, kube = _elector(kubeconfig, namespace, identity, timing, changes)
    thread = ElectorThread(elector, close=kube.close)
    thread.start()
    try:
        await _until(lambda: elector.is_leader, 10, "the Lease taken")
        yield elector
    finally:
        await thread.stop()


def _hold_the_loop(seconds: float) -> None:
    """What a long pass does to the controller's loop: nothing else runs on it."""
    time.sleep(seconds)


@pytest.fixture
def standby(kubeconfig: Path, namespace: str) -> Iterator[Callable[[Timing], LeaderElector]]:
    """A second replica on a thread and loop of its own, with nothing to say it is
    stuck: it takes the Lease once the first stops renewing."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(timing: Timing) -> LeaderElector:
        elector, kube = _elector(kubeconfig, namespace, "standby", timing, [])

        async def serve() -> None:
            task = asyncio.create_task(elector.run())
            await asyncio.to_thread(stop.wait)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await kube.close()

        thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
        thread.start()
        threads.append(thread)
        return elector

    yield start
    stop.set()
    for thread in threads:
        thread.join(timeout=30)


async def test_a_busy_controller_loop_keeps_the_lease(kubeconfig: Path, namespace: str) -> None:
    timing = Timing(lease=6, renew=1.0, deadline=3.0, stall=30.0)
    changes: list[bool] = []
    async with _leading(kubeconfig, namespace, "busy", timing, changes) as elector:
        before = await _read(kubeconfig, namespace)
        assert before.holder == "busy"
        _hold_the_loop(2 * timing.deadline)  # past the renew deadline
        assert elector.is_leader
        budget = elector.write_budget()
        assert budget is not None
        assert budget > timing.fence - 2 * timing.renew
        after = await _read(kubeconfig, namespace)
        assert after.holder == "busy"
        assert after.renewed_at is not None
        assert before.renewed_at is not None
        assert after.renewed_at > before.renewed_at  # renewed during the hold
        await asyncio.sleep(0.1)  # the changes reach this loop
        assert changes == [True]  # acquired once, never lost
    released = await _read(kubeconfig, namespace)
    assert released.holder == ""


async def test_a_stuck_controller_loop_gives_the_lease_to_a_standby(
    kubeconfig: Path, namespace: str, standby: Callable[[Timing], LeaderElector]
) -> None:
    timing = Timing(lease=4, renew=0.5, deadline=2.0, stall=3.0)
    changes: list[bool] = []
    async with _leading(kubeconfig, namespace, "stuck", timing, changes) as elector:
        other = standby(timing)
        # Stuck past the stall limit, then past the deadline and a whole lease.
        _hold_the_loop(timing.stall + timing.lease + 2 * timing.renew + 1.0)
        assert not elector.is_leader
        await _until(lambda: other.is_leader, 5, "the standby leads")
        record = await _read(kubeconfig, namespace)
        assert record.holder == "standby"
        await asyncio.sleep(2 * timing.lease)  # running again, it stands by
        assert not elector.is_leader
        assert other.is_leader
        assert changes == [True, False]
