"""How many of the operator's writes are in flight at once, and which go first.

A pass hands its decisions to flights (shunter.operator.controller) and does not wait
for them. Writes that move a job (an admission, a stop, a finish) are `urgent`; the
ones that only tell a waiting job where it stands (its first number, its position) are
not, and there can be thousands of them at once (every job of a large submission
numbered, twenty positions moved per admission). So a free slot goes to the oldest
urgent waiter first, then to the oldest of the others, and the others hold at most a
part of the slots: an admission never queues behind a backlog of position updates,
neither here nor in the API server. (A renumbering that waits here is replaced by the
job's next decision, and the two are written as one.)
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from contextlib import asynccontextmanager


class Gate:
    """At most `size` writes at once, of which at most `others` not urgent (so some
    room is always left for the urgent ones, also in the API server's own queue)."""

    def __init__(self, size: int, *, others: int | None = None) -> None:
        self.size = size
        self.others = size if others is None else others
        self._held = 0
        self._others_held = 0
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._waiting_others: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def slot(self, *, urgent: bool) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release(urgent)

    def _room(self, urgent: bool) -> bool:
        return self._held < self.size and (urgent or self._others_held < self.others)

    def _take(self, urgent: bool) -> None:
        self._held += 1
        if not urgent:
            self._others_held += 1

    async def _acquire(self, urgent: bool) -> None:
        waiters = self._urgent if urgent else self._waiting_others
        if not waiters and self._room(urgent) and (urgent or not self._urgent):
            self._take(urgent)
            return
        waiter = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        self._hand_out()  # the waiters ahead may all have been cancelled
        try:
            await waiter
        except asyncio.CancelledError:
            # Handed a slot in the same turn as the cancel: pass it on. (A waiter
            # cancelled before that is skipped by _hand_out.)
            if waiter.done() and not waiter.cancelled():
                self._release(urgent)
            raise

    def _release(self, urgent: bool) -> None:
        self._held -= 1
        if not urgent:
            self._others_held -= 1
        self._hand_out()

    def _hand_out(self) -> None:
        """Free slots to the oldest urgent waiters, then to the oldest others."""
        for urgent, waiters in ((True, self._urgent), (False, self._waiting_others)):
            while waiters and self._room(urgent):
                waiter = waiters.popleft()
                if not waiter.done():
                    self._take(urgent)
                    waiter.set_result(None)


class Spacing:
    """At most one write per key every `every` seconds: how long the next must wait.

    A waiting job's position moves with every admission ahead of it; under a stream
    of admissions or cancels, writing each move would spend the API server's writes on
    positions nobody reads that fast. The next renumbering of a job waits until
    `every` after its last one went out (while it waits it is still replaced by newer
    decisions, so the last position is the one written). Keys last sent longer ago
    than `every` are forgotten (at most once per `every`), so the map holds only the
    jobs renumbered lately."""

    def __init__(self, every: float, clock: Callable[[], float]) -> None:
        self.every = every
        self._clock = clock
        self._sent: dict[Hashable, float] = {}
        self._pruned_at = clock()

    def wait(self, key: Hashable) -> float:
        """Seconds until a write for key may go out (0: now)."""
        last = self._sent.get(key)
        return 0.0 if last is None else max(0.0, last + self.every - self._clock())

    def sent(self, key: Hashable) -> None:
        now = self._clock()
        self._sent[key] = now
        if now - self._pruned_at >= self.every:
            self._sent = {k: t for k, t in self._sent.items() if now - t < self.every}
            self._pruned_at = now

    def __len__(self) -> int:
        return len(self._sent)
