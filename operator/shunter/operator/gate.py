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
from collections.abc import AsyncIterator
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
