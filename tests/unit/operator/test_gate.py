"""The writes' gate: at most its size at once, the urgent waiters before the others,
and a cancelled waiter never holds (nor loses) a slot."""

from __future__ import annotations

import asyncio

from shunter.operator.gate import Gate, Ticket


async def _hold(gate: Gate, name: str, order: list[str], release: asyncio.Event, *,
                urgent: bool) -> None:  # fmt: skip
    async with gate.slot(urgent=urgent):
        order.append(name)
        await release.wait()


def test_a_free_slot_goes_to_the_oldest_urgent_waiter_before_any_other():
    async def scenario() -> list[str]:
        gate, order, release = Gate(1), [], asyncio.Event()
        first = asyncio.create_task(_hold(gate, "holder", order, release, urgent=False))
        await asyncio.sleep(0)
        tasks = [first]
        for name, is_urgent in (("b1", False), ("u1", True), ("b2", False), ("u2", True)):
            tasks.append(asyncio.create_task(_hold(gate, name, order, release, urgent=is_urgent)))
            await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*tasks)
        return order

    assert asyncio.run(scenario()) == ["holder", "u1", "u2", "b1", "b2"]


def test_no_more_than_its_size_hold_at_once():
    async def scenario() -> int:
        gate, most, now = Gate(3), 0, 0

        async def work() -> None:
            nonlocal most, now
            async with gate.slot(urgent=False):
                now += 1
                most = max(most, now)
                await asyncio.sleep(0)
                await asyncio.sleep(0)
                now -= 1

        await asyncio.gather(*(work() for _ in range(20)))
        return most

    assert asyncio.run(scenario()) == 3


def test_a_cancelled_waiter_passes_its_slot_on():
    async def scenario() -> list[str]:
        gate, order, release = Gate(1), [], asyncio.Event()
        release.set()
        async with gate.slot(urgent=True):
            early = asyncio.create_task(_hold(gate, "cancelled early", order, release, urgent=True))
            late = asyncio.create_task(_hold(gate, "cancelled when handed", order, release,
                                             urgent=True))  # fmt: skip
            last = asyncio.create_task(_hold(gate, "last", order, release, urgent=False))
            await asyncio.sleep(0)  # all three wait
            early.cancel()
            await asyncio.sleep(0)
        # Leaving the slot handed it to `late`, which is cancelled before it runs.
        late.cancel()
        await asyncio.gather(early, late, return_exceptions=True)
        await asyncio.wait_for(last, timeout=2)
        return order

    assert asyncio.run(scenario()) == ["last"]


def test_the_others_hold_at_most_their_part_and_the_urgent_the_rest():
    async def scenario() -> tuple[int, int]:
        gate, release = Gate(4, others=1), asyncio.Event()
        order: list[str] = []
        others = [asyncio.create_task(_hold(gate, f"b{i}", order, release, urgent=False))
                  for i in range(3)]  # fmt: skip
        await asyncio.sleep(0)
        held_by_others = len(order)
        urgent = [asyncio.create_task(_hold(gate, f"u{i}", order, release, urgent=True))
                  for i in range(5)]  # fmt: skip
        await asyncio.sleep(0)
        held = len(order)
        release.set()
        await asyncio.gather(*others, *urgent)
        return held_by_others, held

    assert asyncio.run(scenario()) == (1, 4)


def test_tickets_wait_in_line_as_data_and_start_in_the_gates_order():
    """A ticket's work starts when it is handed a slot (urgent first, then the oldest),
    and no task exists for the ones still waiting."""

    async def scenario() -> tuple[list[str], int]:
        gate = Gate(2, others=1)
        started: list[str] = []

        def start(name: str, urgent: bool) -> Ticket:
            return gate.line(urgent=urgent, start=lambda: started.append(name))

        tasks_before = len(asyncio.all_tasks())
        start("b1", False)  # takes the one slot the others may hold
        start("u1", True)  # takes the last slot
        waiting = [start(f"b{i}", False) for i in range(2, 1002)]
        start("u2", True)
        tasks_waiting = len(asyncio.all_tasks()) - tasks_before
        assert started == ["b1", "u1"]
        assert not any(t.started for t in waiting)
        gate.release(urgent=False)  # b1 done: u2 first, though it came last
        assert started == ["b1", "u1", "u2"]
        gate.release(urgent=True)  # u1 done: the others' part is free again
        assert started[-1] == "b2"
        return started, tasks_waiting

    started, tasks_waiting = asyncio.run(scenario())
    assert started == ["b1", "u1", "u2", "b2"]
    assert tasks_waiting == 0


def test_a_ticket_that_left_the_line_never_starts_and_holds_no_slot():
    async def scenario() -> list[str]:
        gate = Gate(1)
        started: list[str] = []
        first = gate.line(urgent=True, start=lambda: started.append("first"))
        gone = gate.line(urgent=True, start=lambda: started.append("gone"))
        last = gate.line(urgent=False, start=lambda: started.append("last"))
        gone.cancel()
        first.cancel()  # started already: no effect
        assert first.started
        gate.release(urgent=True)
        assert gone.cancelled
        assert not gone.started
        assert last.started
        return started

    assert asyncio.run(scenario()) == ["first", "last"]


def test_a_long_line_drops_those_who_left_it_and_keeps_the_order_of_the_others():
    async def scenario() -> tuple[int, list[int]]:
        gate = Gate(1)
        started: list[int] = []
        gate.line(urgent=False, start=lambda: None)  # holds the one slot
        tickets = []
        for i in range(5000):
            tickets.append(gate.line(urgent=False, start=lambda i=i: started.append(i)))
            if i % 4:
                tickets[-1].cancel()  # replaced: three of every four leave the line
        length = len(gate._waiting_others)
        for _ in range(5000 // 4):
            gate.release(urgent=False)
        return length, started

    length, started = asyncio.run(scenario())
    assert length < 5000 // 2  # rebuilt on the way (1,250 stayed in it)
    assert started == list(range(0, 5000, 4))
