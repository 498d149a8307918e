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

A write waits either as a task (`slot`, an async context) or, when there can be tens of
thousands of them (the first numbering of a large submission), as a `Ticket`: a place
in the line that starts its work only when handed a slot, so no task and no coroutine
frame (about 2 KB each) is held for every waiting write.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Protocol

# A line shorter than this is never rebuilt to drop those who left it.
PURGE_FROM = 1024


class _Waiter(Protocol):
    def done(self) -> bool: ...

    def set_result(self, result: None, /) -> None: ...


class Ticket:
    """A write's place in the gate's line; `start` runs when it is handed a slot, and
    whatever it starts must `Gate.release` that slot when done."""

    __slots__ = ("_start", "cancelled")

    def __init__(self, start: Callable[[], None]) -> None:
        self._start: Callable[[], None] | None = start
        self.cancelled = False

    def cancel(self) -> None:
        """Leave the line (no effect once started)."""
        if self._start is not None:
            self.cancelled = True
            self._start = None

    @property
    def started(self) -> bool:
        return self._start is None and not self.cancelled

    def done(self) -> bool:
        return self._start is None

    def set_result(self, _: None, /) -> None:
        start, self._start = self._start, None
        assert start is not None
        start()


class Gate:
    """At most `size` writes at once, of which at most `others` not urgent (so some
    room is always left for the urgent ones, also in the API server's own queue)."""

    def __init__(self, size: int, *, others: int | None = None) -> None:
        self.size = size
        self.others = size if others is None else others
        self._held = 0
        self._others_held = 0
        self._urgent: deque[_Waiter] = deque()
        self._waiting_others: deque[_Waiter] = deque()
        self._purge_at = {True: PURGE_FROM, False: PURGE_FROM}  # by urgency

    @asynccontextmanager
    async def slot(self, *, urgent: bool) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._release(urgent)

    def line(self, *, urgent: bool, start: Callable[[], None]) -> Ticket:
        """Start at once if a slot is free (and no one waits before), else wait in line
        as data; the started work releases its slot with `release`."""
        ticket = Ticket(start)
        if self._free_now(urgent):
            self._take(urgent)
            ticket.set_result(None)
        else:
            self._queue(urgent, ticket)
            self._hand_out()  # the waiters ahead may all have left the line
        return ticket

    def release(self, *, urgent: bool) -> None:
        """Give back the slot a started ticket's work held."""
        self._release(urgent)

    def _room(self, urgent: bool) -> bool:
        return self._held < self.size and (urgent or self._others_held < self.others)

    def _take(self, urgent: bool) -> None:
        self._held += 1
        if not urgent:
            self._others_held += 1

    def _queue(self, urgent: bool, waiter: _Waiter) -> None:
        """Join the line. Those who left it (a renumbering replaced before it was
        sent) stay in it until reached; once they could make up half of it, it is
        rebuilt without them (amortized: the line at least doubles in between)."""
        waiters = self._urgent if urgent else self._waiting_others
        waiters.append(waiter)
        if len(waiters) >= self._purge_at[urgent]:
            live = [w for w in waiters if not w.done()]
            waiters.clear()
            waiters.extend(live)
            self._purge_at[urgent] = max(PURGE_FROM, 2 * len(waiters))

    def _free_now(self, urgent: bool) -> bool:
        """A slot for a newcomer, with no one waiting before it."""
        waiters = self._urgent if urgent else self._waiting_others
        return not waiters and self._room(urgent) and (urgent or not self._urgent)

    async def _acquire(self, urgent: bool) -> None:
        if self._free_now(urgent):
            self._take(urgent)
            return
        waiter = asyncio.get_running_loop().create_future()
        self._queue(urgent, waiter)
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
