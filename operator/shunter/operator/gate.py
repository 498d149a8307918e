"""How many of the operator's writes are in flight at once, and which go first.

A pass hands its decisions to flights (shunter.operator.controller) and does not wait
for them. Writes that move a job (an admission, a stop, a finish) are `urgent`; the
ones that only tell a waiting job where it stands (its first number, its position) are
not, and there can be thousands of them at once (every job of a large submission
numbered, twenty positions moved per admission). So a free slot goes to the oldest
urgent waiter first, then to the oldest of the others, and the others hold at most a
part of the slots: an admission never queues behind a backlog of position updates,
neither here nor in the API server. (A renumbering that waits here is replaced by the
job's next decision, and the two are written as one.) The controller plans its next
pass only once few urgent writes wait (`short`): its decisions run at most that far
ahead of what the API server has taken.

A write waits as a `Ticket`: a place in the line that starts its work only when handed
a slot. There can be tens of thousands of waiting writes (the first numbering of a
large submission), so none of them holds a task or a coroutine frame (about 2 KB each).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

# A line shorter than this is never rebuilt to drop those who left it.
PURGE_FROM = 1024


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
        """Started, or left the line."""
        return self._start is None

    def begin(self) -> None:
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
        self._urgent: deque[Ticket] = deque()
        self._waiting_others: deque[Ticket] = deque()
        self._purge_at = {True: PURGE_FROM, False: PURGE_FROM}  # by urgency
        # Those waiting for the urgent line to be at most so long (`short`).
        self._short: list[tuple[int, asyncio.Future[None]]] = []

    def line(self, *, urgent: bool, start: Callable[[], None]) -> Ticket:
        """Start at once if a slot is free (and no one waits before), else wait in line
        as data; the started work releases its slot with `release`."""
        ticket = Ticket(start)
        waiters = self._urgent if urgent else self._waiting_others
        if not waiters and self._room(urgent) and (urgent or not self._urgent):
            self._take(urgent)
            ticket.begin()
        else:
            self._queue(waiters, ticket, urgent=urgent)
            self._hand_out()  # the waiters ahead may all have left the line
        return ticket

    @property
    def urgent_waiting(self) -> int:
        """Urgent writes waiting for a slot (not yet started)."""
        return len(self._urgent)

    async def short(self, most: int) -> None:
        """Return once at most `most` urgent writes wait for a slot."""
        if len(self._urgent) <= most:
            return
        future = asyncio.get_running_loop().create_future()
        entry = (most, future)
        self._short.append(entry)
        try:
            await future
        finally:
            if entry in self._short:
                self._short.remove(entry)

    def release(self, *, urgent: bool) -> None:
        """Give back the slot a started ticket's work held."""
        self._held -= 1
        if not urgent:
            self._others_held -= 1
        self._hand_out()

    def _room(self, urgent: bool) -> bool:
        return self._held < self.size and (urgent or self._others_held < self.others)

    def _take(self, urgent: bool) -> None:
        self._held += 1
        if not urgent:
            self._others_held += 1

    def _queue(self, waiters: deque[Ticket], ticket: Ticket, *, urgent: bool) -> None:
        """Join the line. Those who left it (a renumbering replaced before it was
        sent) stay in it until reached; once they could make up half of it, it is
        rebuilt without them (amortized: the line at least doubles in between)."""
        waiters.append(ticket)
        if len(waiters) >= self._purge_at[urgent]:
            live = [w for w in waiters if not w.done()]
            waiters.clear()
            waiters.extend(live)
            self._purge_at[urgent] = max(PURGE_FROM, 2 * len(waiters))

    def _hand_out(self) -> None:
        """Free slots to the oldest urgent waiters, then to the oldest others."""
        for urgent, waiters in ((True, self._urgent), (False, self._waiting_others)):
            while waiters and self._room(urgent):
                ticket = waiters.popleft()
                if not ticket.done():
                    self._take(urgent)
                    ticket.begin()
        if self._short:
            waiting = len(self._urgent)
            for most, future in self._short:
                if waiting <= most and not future.done():
                    future.set_result(None)
