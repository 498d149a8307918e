"""How many of the operator's writes are in flight at once, and which go first.

A pass hands its decisions to flights (shunter.operator.controller) and does not wait
for them. Each write has a `Rank`, and a free slot goes to the oldest waiter of the
first rank that has one:

- ANSWER: a write that carries out a user's cancel or suspend (each step of the stop).
  A user waits for it, and it must not wait behind the finishes and `running`s that a
  pass over 60,000 jobs decides by the hundred: there a cancel decided at once was
  written 7-10 s later (bench/RESULTS.md).
- SETTLE: a write that stops or ends a job, or brings its status up to what its Pods
  did (a user's cancel, a suspend, a preemption, a deadline; `running`; a finish).
  Each answers a user, frees capacity, or tells what already happened, and costs
  one status write (a stop also its Pods' deletes).
- START: a write that starts Pods (an admission, a Pod created again, an array's
  runs). The first pass over a large submission decides thousands at once, and
  they wait here while the API server takes them: at 60,000 jobs about 17,000, for
  up to 25 minutes, and a finished job's `completed` waited behind all of them
  while kubectl showed it `running` (bench/RESULTS.md).
- RENUMBER: a waiting job's number, position or message. There can be thousands at
  once (every job of a large submission numbered, twenty positions moved per
  admission), and they hold at most a part of the slots (`others`): nothing that
  moves a job queues behind them, neither here nor in the API server. (A renumbering
  that waits here is replaced by the job's next decision, and the two are written as
  one.)

ANSWER, SETTLE and START are `urgent`. The controller plans its next pass only once few urgent
writes wait (`short`): its decisions run at most that far ahead of what the API
server has taken.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from enum import IntEnum

# A line shorter than this is never rebuilt to drop those who left it.
PURGE_FROM = 1024


class Rank(IntEnum):
    """Which writes go first (the module docstring); lower first."""

    ANSWER = 0
    SETTLE = 1
    START = 2
    RENUMBER = 3

    @property
    def urgent(self) -> bool:
        return self is not Rank.RENUMBER


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
    """At most `size` writes at once, of which at most `others` renumberings (so some
    room is always left for the urgent ones, also in the API server's own queue)."""

    def __init__(self, size: int, *, others: int | None = None) -> None:
        self.size = size
        self.others = size if others is None else others
        self._held = 0
        self._others_held = 0
        self._lines: tuple[deque[Ticket], ...] = tuple(deque() for _ in Rank)
        self._purge_at = [PURGE_FROM for _ in Rank]
        # Those waiting for the urgent lines to be at most so long (`short`).
        self._short: list[tuple[int, asyncio.Future[None]]] = []

    def line(self, rank: Rank, start: Callable[[], None]) -> Ticket:
        """Start at once if a slot is free (and no one of this rank or a higher one
        waits), else wait in line as data; the started work releases its slot with
        `release`."""
        ticket = Ticket(start)
        if self._room(rank) and not any(self._lines[r] for r in Rank if r <= rank):
            self._take(rank)
            ticket.begin()
        else:
            self._queue(ticket, rank)
            self._hand_out()  # the waiters ahead may all have left the line
        return ticket

    @property
    def urgent_waiting(self) -> int:
        """Urgent writes waiting for a slot (not yet started)."""
        return sum(len(self._lines[r]) for r in Rank if r.urgent)

    async def short(self, most: int) -> None:
        """Return once at most `most` urgent writes wait for a slot."""
        if self.urgent_waiting <= most:
            return
        future = asyncio.get_running_loop().create_future()
        entry = (most, future)
        self._short.append(entry)
        try:
            await future
        finally:
            if entry in self._short:
                self._short.remove(entry)

    def release(self, rank: Rank) -> None:
        """Give back the slot a started ticket's work held."""
        self._held -= 1
        if not rank.urgent:
            self._others_held -= 1
        self._hand_out()

    def _room(self, rank: Rank) -> bool:
        return self._held < self.size and (rank.urgent or self._others_held < self.others)

    def _take(self, rank: Rank) -> None:
        self._held += 1
        if not rank.urgent:
            self._others_held += 1

    def _queue(self, ticket: Ticket, rank: Rank) -> None:
        """Join the line. Those who left it (a renumbering replaced before it was
        sent) stay in it until reached; once they could make up half of it, it is
        rebuilt without them (amortized: the line at least doubles in between)."""
        waiters = self._lines[rank]
        waiters.append(ticket)
        if len(waiters) >= self._purge_at[rank]:
            live = [w for w in waiters if not w.done()]
            waiters.clear()
            waiters.extend(live)
            self._purge_at[rank] = max(PURGE_FROM, 2 * len(waiters))

    def _hand_out(self) -> None:
        """Free slots to the oldest waiters of the first rank, then of the next."""
        for rank in Rank:
            waiters = self._lines[rank]
            while waiters and self._room(rank):
                ticket = waiters.popleft()
                if not ticket.done():
                    self._take(rank)
                    ticket.begin()
        if self._short:
            waiting = self.urgent_waiting
            for most, future in self._short:
                if waiting <= most and not future.done():
                    future.set_result(None)
