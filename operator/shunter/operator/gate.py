"""How many of the operator's writes are in flight at once, and which go first.

A pass hands its decisions to flights (shunter.operator.controller) and does not wait
for them. Writes that move a job (an admission, a stop, a finish) are `urgent`; the
ones that only tell a waiting job where it stands (its first number, its position) are
not, and there can be thousands of them at once (every job of a large submission
numbered, twenty positions moved per admission). So a free slot goes to the oldest
urgent waiter first, then to the oldest of the others: an admission never queues
behind a backlog of position updates.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class Gate:
    def __init__(self, size: int) -> None:
        self._free = size
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._others: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def slot(self, *, urgent: bool) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, urgent: bool) -> None:
        if self._free > 0 and not self._urgent and not self._others:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._others).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            # Handed a slot in the same turn as the cancel: pass it on. (A waiter
            # cancelled before that is skipped by _release.)
            if waiter.done() and not waiter.cancelled():
                self._release()
            raise

    def _release(self) -> None:
        for waiters in (self._urgent, self._others):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1
