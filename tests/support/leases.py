"""Virtual time and a scripted Lease store, for unit tests of the elector's state machine.

`SimClock` runs asyncio tasks in virtual time: `sleep()` parks the caller until the
driver (`run_until`) advances the clock past its wake-up time, after every task has
run as far as it can. `LeaseServer` keeps one Lease with resourceVersions and
preconditions the way the API server does; each replica reaches it through its own
`Link`, whose latency, outage (requests time out) or hold (requests time out at the
client but reach the server when released, as bytes held by a network would) a test
scripts. This fakes the API server on purpose: these tests are about the state machine
under interleavings a real server cannot be made to produce on demand; the two-replica
tests in tests/faults run the real thing.
"""

from __future__ import annotations

import asyncio
import heapq
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from shunter.kube import Conflict, Unreachable
from shunter.kube.leases import LeaseRecord

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


class SimClock:
    def __init__(self) -> None:
        self.t = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = 0
        self.tasks: list[asyncio.Task[None]] = []

    def monotonic(self) -> float:
        return self.t

    def now(self) -> datetime:
        return EPOCH + timedelta(seconds=self.t)

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.t + max(0.0, seconds), self._seq, future))
        self._seq += 1
        await future

    def spawn(self, coro: object) -> asyncio.Task[None]:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self.tasks.append(task)
        return task

    def _parked(self) -> int:
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def settle(self) -> None:
        """Let every task run until each is parked in sleep() (or finished)."""
        for _ in range(10_000):
            await asyncio.sleep(0)
            live = sum(1 for t in self.tasks if not t.done())
            if self._parked() >= live:
                return
        raise AssertionError("tasks never settled: one is blocked outside the clock")

    async def run_until(self, until: float, *, check: Callable[[], None] = lambda: None) -> None:
        """Advance virtual time to `until`, waking sleepers in order; check after each."""
        while True:
            await self.settle()
            check()
            while self._sleepers and self._sleepers[0][2].done():
                heapq.heappop(self._sleepers)
            if not self._sleepers or self._sleepers[0][0] > until:
                self.t = max(self.t, until)
                check()
                return
            when, _, future = heapq.heappop(self._sleepers)
            self.t = max(self.t, when)
            future.set_result(None)

    async def stop(self) -> None:
        if all(t.done() for t in self.tasks):
            return
        for task in self.tasks:
            task.cancel()
        # A cancelled elector releases its Lease (sleeps of the clock run on).
        for _ in range(100):
            await self.settle()
            if all(t.done() for t in self.tasks):
                break
            await self.run_until(self.t + 1.0)
        await asyncio.gather(*self.tasks, return_exceptions=True)


@dataclass
class LeaseServer:
    """One Lease as the API server keeps it: a version bumped on every write."""

    clock: SimClock
    record: LeaseRecord | None = None
    version: int = 0
    # (time, record) of every accepted write; a hook runs on each (the invariants).
    writes: list[tuple[float, LeaseRecord]] = field(default_factory=list)
    on_write: Callable[[LeaseRecord], None] = lambda _: None

    def _commit(self, record: LeaseRecord) -> LeaseRecord:
        self.version += 1
        self.record = replace(record, version=str(self.version))
        self.writes.append((self.clock.t, self.record))
        self.on_write(self.record)
        return self.record

    def read(self) -> LeaseRecord | None:
        return self.record

    def create(self, record: LeaseRecord) -> LeaseRecord:
        if self.record is not None:
            raise Conflict("leases already exists", status=409, reason="AlreadyExists")
        return self._commit(record)

    def update(self, record: LeaseRecord) -> LeaseRecord:
        if self.record is None or record.version != self.record.version:
            raise Conflict("the object has been modified", status=409, reason="Conflict")
        return self._commit(record)


class Link:
    """One replica's connection to the LeaseServer (a LeaseStore)."""

    def __init__(self, server: LeaseServer, *, latency: float = 0.01) -> None:
        self.server = server
        self.clock = server.clock
        self.latency = latency
        self.down = False  # requests time out and never arrive
        self.holding = False  # requests time out at the client, arrive when released
        self.held: list[Callable[[], object]] = []
        self.calls = 0

    def release(self) -> list[object]:
        """Deliver the held requests now; their outcomes (records or errors)."""
        self.holding = False
        held, self.held = self.held, []
        outcomes: list[object] = []
        for call in held:
            try:
                outcomes.append(call())
            except Conflict as exc:
                outcomes.append(exc)
        return outcomes

    async def _call(
        self, op: Callable[[], LeaseRecord | None], seconds: float
    ) -> LeaseRecord | None:
        self.calls += 1
        if self.down or self.holding or self.latency > seconds:
            if self.holding:
                self.held.append(op)
            await self.clock.sleep(seconds)
            raise Unreachable("lease: TimeoutError")
        await self.clock.sleep(self.latency / 2)
        try:
            return op()  # the server acts halfway
        finally:
            await self.clock.sleep(self.latency / 2)

    async def read(self, *, seconds: float) -> LeaseRecord | None:
        return await self._call(self.server.read, seconds)

    async def create(self, record: LeaseRecord, *, seconds: float) -> LeaseRecord:
        result = await self._call(lambda: self.server.create(record), seconds)
        assert result is not None
        return result

    async def update(self, record: LeaseRecord, *, seconds: float) -> LeaseRecord:
        result = await self._call(lambda: self.server.update(record), seconds)
        assert result is not None
        return result


class SkewedClock:
    """The same virtual time with a wall clock that is off by `offset`."""

    def __init__(self, clock: SimClock, offset: timedelta) -> None:
        self.clock = clock
        self.offset = offset

    def monotonic(self) -> float:
        return self.clock.monotonic()

    def now(self) -> datetime:
        return self.clock.now() + self.offset

    async def sleep(self, seconds: float) -> None:
        await self.clock.sleep(seconds)
