"""The writes' gate: at most its size at once, the writes that settle a job before those
that start Pods and those before the renumberings,
a waiter that left the line never holds (nor loses) a slot, and no waiting write holds
a task."""

from __future__ import annotations

import asyncio

from shunter.operator.gate import Gate, Rank, Ticket


class _Writes:
    """Writes lined up at a gate; each, once handed its slot, notes its name and holds
    the slot until `release` is set."""

    def __init__(self, gate: Gate) -> None:
        self.gate = gate
        self.order: list[str] = []
        self.release = asyncio.Event()
        self._flying: list[asyncio.Task[None]] = []

    def line(self, name: str, rank: Rank) -> Ticket:
        async def fly() -> None:
            await self.release.wait()
            self.gate.release(rank)

        def start() -> None:
            self.order.append(name)
            self._flying.append(asyncio.create_task(fly()))

        return self.gate.line(rank, start)

    async def land(self) -> list[str]:
        """Release them all: each landing hands its slot to the next in line."""
        self.release.set()
        while self._flying:
            await self._flying.pop(0)
        return self.order


def test_a_free_slot_goes_to_the_oldest_urgent_waiter_before_any_other():
    async def scenario() -> list[str]:
        writes = _Writes(Gate(1))
        writes.line("holder", Rank.RENUMBER)
        for name, is_urgent in (("b1", False), ("u1", True), ("b2", False), ("u2", True)):
            writes.line(name, Rank.START if is_urgent else Rank.RENUMBER)
        return await writes.land()

    assert asyncio.run(scenario()) == ["holder", "u1", "u2", "b1", "b2"]


def test_no_more_than_its_size_hold_at_once():
    async def scenario() -> int:
        gate, most, now = Gate(3), 0, 0
        flying: list[asyncio.Task[None]] = []

        async def work() -> None:
            nonlocal most, now
            now += 1
            most = max(most, now)
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            now -= 1
            gate.release(Rank.RENUMBER)

        for _ in range(20):
            gate.line(Rank.RENUMBER, lambda: flying.append(asyncio.create_task(work())))
        while flying:
            await flying.pop(0)
        return most

    assert asyncio.run(scenario()) == 3


def test_a_cancelled_waiter_passes_its_slot_on():
    """A ticket that left the line never starts and neither holds nor loses a slot;
    leaving after it started changes nothing."""

    async def scenario() -> list[str]:
        writes = _Writes(Gate(1))
        holder = writes.line("holder", Rank.START)
        early = writes.line("cancelled early", Rank.START)
        last = writes.line("last", Rank.RENUMBER)
        early.cancel()
        holder.cancel()  # started already: no effect
        assert holder.started
        order = await writes.land()
        assert early.cancelled
        assert not early.started
        assert last.started
        return order[1:]

    assert asyncio.run(scenario()) == ["last"]


def test_the_others_hold_at_most_their_part_and_the_urgent_the_rest():
    async def scenario() -> tuple[int, int]:
        writes = _Writes(Gate(4, others=1))
        for i in range(3):
            writes.line(f"b{i}", Rank.RENUMBER)
        held_by_others = len(writes.order)
        for i in range(5):
            writes.line(f"u{i}", Rank.START)
        held = len(writes.order)
        await writes.land()
        return held_by_others, held

    assert asyncio.run(scenario()) == (1, 4)


def test_tickets_wait_in_line_as_data_and_start_in_the_gates_order():
    """A ticket's work starts when it is handed a slot (urgent first, then the oldest),
    and no task exists for the ones still waiting."""

    async def scenario() -> tuple[list[str], int]:
        gate = Gate(2, others=1)
        started: list[str] = []

        def start(name: str, urgent: bool) -> Ticket:
            rank = Rank.START if urgent else Rank.RENUMBER
            return gate.line(rank, lambda: started.append(name))

        tasks_before = len(asyncio.all_tasks())
        start("b1", False)  # takes the one slot the others may hold
        start("u1", True)  # takes the last slot
        waiting = [start(f"b{i}", False) for i in range(2, 1002)]
        start("u2", True)
        tasks_waiting = len(asyncio.all_tasks()) - tasks_before
        assert started == ["b1", "u1"]
        assert not any(t.started for t in waiting)
        gate.release(Rank.RENUMBER)  # b1 done: u2 first, though it came last
        assert started == ["b1", "u1", "u2"]
        gate.release(Rank.START)  # u1 done: the others' part is free again
        assert started[-1] == "b2"
        return started, tasks_waiting

    started, tasks_waiting = asyncio.run(scenario())
    assert started == ["b1", "u1", "u2", "b2"]
    assert tasks_waiting == 0


def test_a_long_line_drops_those_who_left_it_and_keeps_the_order_of_the_others():
    async def scenario() -> tuple[int, list[int]]:
        gate = Gate(1)
        started: list[int] = []
        gate.line(Rank.RENUMBER, lambda: None)  # holds the one slot
        tickets = []
        for i in range(5000):
            tickets.append(gate.line(Rank.RENUMBER, lambda i=i: started.append(i)))
            if i % 4:
                tickets[-1].cancel()  # replaced: three of every four leave the line
        length = len(gate._lines[Rank.RENUMBER])
        for _ in range(5000 // 4):
            gate.release(Rank.RENUMBER)
        return length, started

    length, started = asyncio.run(scenario())
    assert length < 5000 // 2  # rebuilt on the way (1,250 stayed in it)
    assert started == list(range(0, 5000, 4))


def test_short_returns_once_few_enough_urgent_writes_wait():
    """The controller's pacing: `short(n)` returns at once when at most n urgent writes
    wait, otherwise when the line has come down to n; the others' line does not count."""

    async def scenario() -> list[str]:
        writes = _Writes(Gate(1))
        writes.line("holder", Rank.START)
        for i in range(4):
            writes.line(f"u{i}", Rank.START)
        for i in range(50):
            writes.line(f"b{i}", Rank.RENUMBER)
        await asyncio.wait_for(writes.gate.short(4), 1)  # 4 wait: at once
        assert writes.gate.urgent_waiting == 4
        short = asyncio.create_task(writes.gate.short(1))
        await asyncio.sleep(0)
        assert not short.done()
        writes.gate.release(Rank.START)  # the holder lands: u0 starts, 3 wait
        writes.gate.release(Rank.START)  # u0 lands: u1 starts, 2 wait
        await asyncio.sleep(0)
        assert not short.done()
        writes.gate.release(Rank.START)  # u1 lands: u2 starts, 1 waits
        await asyncio.wait_for(short, 1)
        assert writes.gate.urgent_waiting == 1
        return writes.order

    assert asyncio.run(scenario()) == ["holder", "u0", "u1", "u2"]


def test_a_cancel_or_finish_goes_before_every_admission_waiting_and_counts_as_urgent():
    """A cancel or a finish decided while thousands of admissions wait takes the next
    free slot (at 60,000 jobs they waited up to 25 minutes behind them); among
    themselves the oldest first, and the admissions then in the order they came."""

    async def scenario() -> list[str]:
        writes = _Writes(Gate(1, others=1))
        writes.line("holder", Rank.START)
        for i in range(1000):
            writes.line(f"admit{i}", Rank.START)
        writes.line("renumber", Rank.RENUMBER)
        writes.line("cancel", Rank.SETTLE)
        writes.line("finish", Rank.SETTLE)
        assert writes.gate.urgent_waiting == 1002
        return await writes.land()

    order = asyncio.run(scenario())
    assert order[:3] == ["holder", "cancel", "finish"]
    assert order[3:] == [f"admit{i}" for i in range(1000)] + ["renumber"]


def test_a_settling_write_never_starts_ahead_of_an_older_one():
    """Settling writes wait for a slot in the order they came, and an admission waits
    for all of them."""

    async def scenario() -> list[str]:
        gate = Gate(2, others=1)
        started: list[str] = []
        gate.line(Rank.SETTLE, lambda: started.append("s1"))
        gate.line(Rank.SETTLE, lambda: started.append("s2"))
        gate.line(Rank.SETTLE, lambda: started.append("s3"))  # waits: no slot
        gate.line(Rank.START, lambda: started.append("m1"))
        gate.release(Rank.SETTLE)
        assert started == ["s1", "s2", "s3"]
        gate.release(Rank.SETTLE)
        return started

    assert asyncio.run(scenario()) == ["s1", "s2", "s3", "m1"]
