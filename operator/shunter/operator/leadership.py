"""Leader election on a coordination.k8s.io Lease: one replica acts at a time.

kopf's peering pauses operators by priority and freezes them all when priorities are
equal, so Shunter follows client-go's Lease protocol instead, with its timing rules:

- the holder renews every `renew` seconds; each update carries the resourceVersion it
  last read or wrote, so of two writers of one version only one succeeds;
- a candidate may take the Lease when it is released (no holder), or when the record
  it observes has not changed for the record's `leaseDurationSeconds`, measured on the
  candidate's own monotonic clock from when it first saw that record. Never from
  `renewTime`: comparing another machine's wall clock with ours would let a skewed
  clock take a live Lease (renewTime is written for people and other tools);
- the holder acts only while its last successful renew is younger than `deadline`
  (shorter than the lease), and it fences its writes: a write may take until
  `sent + fence`, where `sent` is when that renew was sent and `fence` lies halfway
  between the deadline and the lease duration. A candidate sees the renew no earlier
  than it was sent and then waits a whole lease, so every write of the old holder has
  ended, or been abandoned by its timeout, before a new holder exists. The other half
  of the gap is the safety margin (clock rates, the server's own processing). A write
  that still lands late (its bytes held by the network) is refused by the resourceVersion
  precondition the controller puts on status writes.

Identities must be unique: a replica that finds its own identity in the Lease takes it
back at once (a restarted Pod keeps its name).

The state machine is tested with a fake clock and a scripted store
(tests/unit/operator/test_leadership.py); `Clock` and `LeaseStore` are its only inputs.

The operator runs it on a thread of its own (`ElectorThread`), as client-go renews
from a goroutine of its own: the controller's event loop can be busy for seconds (a
pass over 60,000 jobs, a relist), and renewing from that loop lost the Lease at that
scale, each loss making the next pass look at every job again (issue 26).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Protocol

from shunter.kube import Conflict, KubeError
from shunter.kube.leases import LeaseRecord, LeaseStore

log = logging.getLogger("shunter.operator.leadership")


@dataclass(frozen=True)
class Timing:
    lease: int = 15  # leaseDurationSeconds, written to the Lease
    renew: float = 2.0  # between two attempts
    deadline: float = 10.0  # the holder stops acting when its last renew is this old
    # Renewed from a thread of its own, the Lease would outlive a controller whose loop
    # is stuck for good: no renew (nor take) once that loop has not run for this long.
    stall: float = 60.0

    def __post_init__(self) -> None:
        if not 0 < self.renew < self.deadline < self.lease:
            raise ValueError(
                f"leader election needs 0 < renew ({self.renew}) < renew deadline"
                f" ({self.deadline}) < lease duration ({self.lease})"
            )
        if self.stall <= self.deadline:
            raise ValueError(f"the stall limit ({self.stall}) must exceed the renew"
                             f" deadline ({self.deadline})")  # fmt: skip

    @property
    def fence(self) -> float:
        """How long after the renew it relies on was sent a write must have ended."""
        return (self.deadline + self.lease) / 2


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def now(self) -> datetime: ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class LeaderElector:
    def __init__(
        self,
        store: LeaseStore,
        *,
        identity: str,
        timing: Timing | None = None,
        clock: Clock | None = None,
        on_change: Callable[[bool], None] = lambda _: None,
        name: str = "lease",
    ) -> None:
        self.store = store
        self.identity = identity
        self.timing = timing or Timing()
        self.clock: Clock = clock or SystemClock()
        self.on_change = on_change
        self.name = name
        # Where the controller hears of changes and renewals: at once on one loop; the
        # controller's loop, through call_soon_threadsafe, from ElectorThread.
        self.dispatch: Callable[[Callable[[], None]], None] = lambda call: call()
        # Whether the controller still runs (ElectorThread: its loop's heartbeat).
        self.alive: Callable[[], bool] = lambda: True
        self._stalled = False
        self._observed: LeaseRecord | None = None
        self._observed_at = 0.0  # monotonic: when the observed record was first seen
        self._sent: float | None = None  # monotonic: the last successful renew was sent
        self._reported = False
        self._renewed = asyncio.Event()  # set by every successful renew

    # -- what the controller asks --------------------------------------------------

    # `_sent` is written by the elector's thread and read here once per question.

    @property
    def is_leader(self) -> bool:
        sent = self._sent
        return sent is not None and self.clock.monotonic() < sent + self.timing.deadline

    def write_budget(self) -> float | None:
        """Seconds a write starting now may take (None: not the leader, do not write)."""
        sent, now = self._sent, self.clock.monotonic()
        if sent is None or now >= sent + self.timing.deadline:
            return None
        return sent + self.timing.fence - now

    async def fresh(self) -> None:
        """Return when a write starting now has the budget of a recent renew: at once
        when the last renew is at most two renew periods old (or this replica does not
        lead: its writes are fenced anyway); else once the next renew has succeeded,
        or the deadline has passed. A long reconcile pass holds the event loop, and
        this loop's renew with it when both share the loop: its writes would all be
        fenced without this."""
        sent = self._sent
        if sent is None or self.clock.monotonic() - sent <= 2 * self.timing.renew:
            return
        self._renewed.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.timing.deadline):
                await self._renewed.wait()

    @property
    def fence_end(self) -> float | None:
        """When the last write this replica may make must have ended (monotonic)."""
        sent = self._sent
        return None if sent is None else sent + self.timing.fence

    # -- the loop ------------------------------------------------------------------

    async def run(self) -> None:
        try:
            while True:
                try:
                    await self.step()
                except KubeError as exc:
                    log.warning("%s: %s", self.name, exc)
                except Exception:
                    # Whatever happens, the loop goes on: a dead elector is a dead operator.
                    log.exception("%s: unexpected error", self.name)
                self._report()
                await self.clock.sleep(self._pause())
        finally:
            if self._sent is not None:
                await asyncio.shield(self.release())

    async def step(self) -> None:
        """One attempt: renew what we hold, or take the Lease if we may."""
        if not self.alive():
            if not self._stalled:
                log.warning("%s: the controller's loop has not run for %.0fs: not renewing",
                            self.name, self.timing.stall)  # fmt: skip
            self._stalled = True
            return
        self._stalled = False
        mine = self._observed is not None and self._observed.holder == self.identity
        if mine and self._sent is not None:
            assert self._observed is not None
            try:
                await self._write(self._observed)
                return
            except Conflict:
                pass  # changed since our last write: read it and decide again
        record = await self.store.read(seconds=self._call_seconds())
        self._observe(record)
        try:
            if record is None:
                await self._create()
            elif self._may_take(record):
                await self._write(record)
        except Conflict:
            pass  # another replica wrote first; the next attempt reads what it wrote

    async def release(self) -> None:
        """Stop acting, then hand the Lease back so a successor need not wait for it to
        expire. Call it once the controller's writes have stopped."""
        record, self._sent = self._observed, None
        self._report()
        if record is None or record.holder != self.identity:
            return
        released = replace(record, holder="", lease_seconds=1, renewed_at=self.clock.now())
        try:
            self._observed = await self.store.update(released, seconds=self.timing.renew)
            log.info("released %s", self.name)
        except KubeError as exc:
            log.warning("could not release %s: %s", self.name, exc)

    # -- the rules -----------------------------------------------------------------

    def _may_take(self, record: LeaseRecord) -> bool:
        if record.holder in ("", self.identity):
            return True
        return self.clock.monotonic() >= self._observed_at + record.lease_seconds

    def _observe(self, record: LeaseRecord | None) -> None:
        if record is None or self._observed is None or record.version != self._observed.version:
            previous = self._observed.holder if self._observed is not None else None
            if record is not None and record.holder not in ("", self.identity, previous):
                log.info("%s is held by %s; %s standing by", self.name, record.holder,
                         self.identity)  # fmt: skip
            self._observed, self._observed_at = record, self.clock.monotonic()
        if record is not None and record.holder != self.identity:
            self._sent = None  # someone else holds it: stop acting now, not at the deadline

    async def _create(self) -> None:
        now = self.clock.now()
        record = LeaseRecord(holder=self.identity, lease_seconds=self.timing.lease,
                             acquired_at=now, renewed_at=now)  # fmt: skip
        sent = self.clock.monotonic()
        self._won(await self.store.create(record, seconds=self._call_seconds()), sent)

    async def _write(self, record: LeaseRecord) -> None:
        now = self.clock.now()
        taking_over = record.holder != self.identity
        written = replace(
            record,
            holder=self.identity,
            lease_seconds=self.timing.lease,
            acquired_at=now if taking_over else record.acquired_at or now,
            renewed_at=now,
            transitions=record.transitions + (1 if taking_over else 0),
        )
        sent = self.clock.monotonic()
        self._won(await self.store.update(written, seconds=self._call_seconds()), sent)

    def _won(self, record: LeaseRecord, sent: float) -> None:
        self._observed, self._observed_at = record, self.clock.monotonic()
        self._sent = sent if self._sent is None else max(self._sent, sent)
        self.dispatch(self._renewed.set)

    def _call_seconds(self) -> float:
        """A call made while leading is useless after the deadline; otherwise the
        deadline is a generous bound for a slow API server."""
        if self.is_leader:
            assert self._sent is not None
            return max(0.05, self._sent + self.timing.deadline - self.clock.monotonic())
        return self.timing.deadline

    def _pause(self) -> float:
        now = self.clock.monotonic()
        if self.is_leader:
            assert self._sent is not None
            return max(0.0, min(self.timing.renew, self._sent + self.timing.deadline - now))
        record = self._observed
        if record is None or record.holder in ("", self.identity):
            return self.timing.renew
        # Try again right when the observed record expires, not up to `renew` later.
        return max(0.0, min(self.timing.renew, self._observed_at + record.lease_seconds - now))

    def _report(self) -> None:
        leader = self.is_leader
        if leader != self._reported:
            self._reported = leader
            log.info("%s leadership of %s as %s",
                     "acquired" if leader else "lost", self.name, self.identity)  # fmt: skip
            self.dispatch(lambda: self.on_change(leader))


class ElectorThread:
    """Runs a LeaderElector on a thread of its own, with an event loop of its own.

    Only that thread changes the elector's state; the controller's loop reads `_sent`
    (one float, read once per question: see LeaderElector.is_leader) and hears of
    changes and renewals through call_soon_threadsafe. The store's client must be
    used only by the elector (aiohttp binds a session to the loop that made it);
    `close` closes it on that thread at the end.

    A heartbeat on the controller's loop tells the elector it still runs: one stuck
    for `timing.stall` seconds stops renewing, so a standby can take over.
    """

    def __init__(self, elector: LeaderElector, *, close: Callable[[], Awaitable[None]]) -> None:
        self.elector = elector
        self._close = close
        self._beat = time.monotonic()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None
        self._heart: asyncio.Task[None] | None = None
        self._started = threading.Event()

    def start(self) -> None:
        """Start from the controller's loop (it is where changes are delivered)."""
        home = asyncio.get_running_loop()

        def dispatch(call: Callable[[], None]) -> None:
            with contextlib.suppress(RuntimeError):  # the controller's loop has closed
                home.call_soon_threadsafe(call)

        stall = self.elector.timing.stall
        self.elector.dispatch = dispatch
        self.elector.alive = lambda: time.monotonic() - self._beat < stall
        self._beat = time.monotonic()
        self._heart = home.create_task(self._heartbeat(), name="leader-election-heartbeat")
        self._thread = threading.Thread(target=self._main, name="leader-election", daemon=True)
        self._thread.start()
        self._started.wait()

    async def stop(self) -> None:
        """Stop the elector (it hands the Lease back) and wait for its thread."""
        if self._heart is not None:
            self._heart.cancel()
            await asyncio.gather(self._heart, return_exceptions=True)
        if self._thread is None:
            return
        if self._loop is not None and self._task is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._task.cancel)
        await asyncio.to_thread(self._thread.join)

    async def _heartbeat(self) -> None:
        while True:
            self._beat = time.monotonic()
            await asyncio.sleep(min(1.0, self.elector.timing.renew))

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.create_task(self.elector.run(), name="leader-election")
        self._started.set()
        try:
            await asyncio.gather(self._task, return_exceptions=True)
        finally:
            await self._close()
