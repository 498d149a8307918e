"""The leader elector's state machine, in virtual time against a scripted Lease store.

Every scenario runs under two invariants, checked after every step of virtual time and
on every write the store accepts:
- at most one replica believes it leads at any instant;
- when a replica takes the Lease, every other replica's write window (`fence_end`)
  has already closed: no write of the old leader can still be in flight.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shunter.kube.leases import LeaseRecord
from shunter.operator.leadership import Clock, LeaderElector, Timing
from tests.support.leases import EPOCH, LeaseServer, Link, SimClock, SkewedClock

TIMING = Timing(lease=15, renew=2.0, deadline=10.0)


class World:
    def __init__(self, timing: Timing = TIMING) -> None:
        self.clock = SimClock()
        self.server = LeaseServer(self.clock, on_write=self._on_write)
        self.timing = timing
        self.electors: dict[str, LeaderElector] = {}
        self.links: dict[str, Link] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.changes: list[tuple[float, str, bool]] = []
        # (time, holder) each time the Lease changed hands.
        self.takeovers: list[tuple[float, str]] = []
        self.violations: list[str] = []

    def add(self, name: str, *, latency: float = 0.01, clock: Clock | None = None,
            start: bool = True) -> LeaderElector:  # fmt: skip
        link = Link(self.server, latency=latency)  # a restarted replica connects anew
        self.links[name] = link
        elector = LeaderElector(
            link, identity=name, timing=self.timing, clock=clock or self.clock,
            on_change=lambda leader: self.changes.append((self.clock.t, name, leader)),
        )  # fmt: skip
        self.electors[name] = elector
        if start:
            self.tasks[name] = self.clock.spawn(elector.run())
        return elector

    def crash(self, name: str) -> None:
        """kill -9: the task stops without releasing anything, and writes no more (its
        connection stays down for good)."""
        self.links[name].down = True
        self.tasks.pop(name).cancel()
        del self.electors[name]

    def leaders(self) -> list[str]:
        return [n for n, e in self.electors.items() if e.is_leader]

    def check(self) -> None:
        assert not self.violations, self.violations
        assert len(self.leaders()) <= 1, f"two leaders at t={self.clock.t}: {self.leaders()}"

    def _on_write(self, record: LeaseRecord) -> None:
        previous = self.takeovers[-1][1] if self.takeovers else None
        if record.holder and record.holder != previous:
            self.takeovers.append((self.clock.t, record.holder))
            for name, other in self.electors.items():
                end = other.fence_end
                if name != record.holder and end is not None and end > self.clock.t:
                    # Recorded, not raised: the elector's loop would swallow it.
                    self.violations.append(
                        f"{record.holder} took the Lease at t={self.clock.t} while {name}"
                        f" may still write until t={end}"
                    )
        elif not record.holder:
            self.takeovers.append((self.clock.t, ""))

    async def run(self, until: float) -> None:
        await self.clock.run_until(until, check=self.check)

    async def stop(self) -> None:
        await self.clock.stop()


@pytest.fixture
async def world() -> AsyncIterator[World]:
    """A world whose tasks are stopped however the test ends (a cancelled elector
    releases its Lease, which takes virtual time)."""
    created = World()
    try:
        yield created
    finally:
        await created.stop()


async def test_the_first_replica_creates_the_lease_and_renews_it(world: World):
    a = world.add("a")
    await world.run(0.5)
    assert a.is_leader
    assert world.server.record is not None
    assert world.server.record.holder == "a"
    assert world.server.record.lease_seconds == 15
    await world.run(60.0)
    renewals = [r for _, r in world.server.writes if r.holder == "a"]
    assert 29 <= len(renewals) <= 32  # one every 2 s
    assert a.is_leader
    assert world.server.record.transitions == 0


async def test_a_standby_never_leads_while_the_leader_renews(world: World):
    world.add("a")
    await world.run(0.5)
    b = world.add("b")
    await world.run(120.0)
    assert world.leaders() == ["a"]
    assert not b.is_leader
    assert [h for _, h in world.takeovers] == ["a"]


async def test_write_budget_ends_at_the_fence_and_is_none_for_a_standby(world: World):
    a, b = world.add("a"), world.add("b")
    await world.run(0.5)
    budget = a.write_budget()
    assert budget is not None
    # Renewed a moment ago: nearly the whole fence (halfway between deadline and lease).
    assert TIMING.fence - 0.6 < budget <= TIMING.fence
    assert b.write_budget() is None


async def test_a_leader_that_cannot_renew_stops_before_the_standby_takes_over(world: World):
    a = world.add("a")
    await world.run(0.5)
    b = world.add("b")
    await world.run(20.0)
    last_renew = max(t for t, r in world.server.writes if r.holder == "a")
    world.links["a"].down = True  # partitioned: every renew times out
    await world.run(60.0)
    lost = next(t for t, name, leader in world.changes if name == "a" and not leader)
    taken = next(t for t, holder in world.takeovers if holder == "b")
    assert lost <= last_renew + TIMING.deadline + 0.1
    assert lost < taken
    # The standby waits a whole lease after it last saw a renew, and no longer than
    # that plus one renew period (it looks again right at the expiry).
    assert last_renew + TIMING.lease <= taken <= last_renew + TIMING.lease + TIMING.renew
    assert b.is_leader
    assert not a.is_leader
    assert a.write_budget() is None


async def test_a_leader_whose_requests_hang_stops_at_its_deadline(world: World):
    a = world.add("a")
    world.add("b", latency=0.02)
    await world.run(10.0)
    world.links["a"].holding = True  # requests time out, and reach the server later
    await world.run(40.0)
    assert world.leaders() == ["b"]
    # The held renewals arrive now: they carry a stale version and are refused.
    outcomes = world.links["a"].release()
    assert outcomes
    assert all(isinstance(o, Exception) for o in outcomes)
    assert world.server.record is not None
    assert world.server.record.holder == "b"
    await world.run(80.0)
    assert world.leaders() == ["b"]
    assert not a.is_leader


async def test_a_dead_leaders_lease_is_taken_a_lease_duration_after_it_was_last_seen(world: World):
    world.add("a")
    await world.run(10.0)
    b = world.add("b")
    await world.run(20.0)
    last_renew = max(t for t, r in world.server.writes if r.holder == "a")
    world.crash("a")
    await world.run(60.0)
    taken = next(t for t, holder in world.takeovers if holder == "b")
    assert last_renew + TIMING.lease <= taken <= last_renew + TIMING.lease + TIMING.renew
    assert b.is_leader
    assert world.server.record is not None
    assert world.server.record.transitions == 1


@pytest.mark.parametrize("skew", [timedelta(hours=-2), timedelta(hours=3)])
async def test_expiry_is_judged_on_the_standbys_own_clock_not_renew_time(
    skew: timedelta, world: World
):
    """A Lease whose renewTime looks ancient (or in the future) to a skewed clock is
    still live until it stops changing for a lease duration."""
    world.add("a")
    await world.run(5.0)
    b = world.add("b", clock=SkewedClock(world.clock, skew))
    await world.run(100.0)
    assert world.leaders() == ["a"]
    world.crash("a")
    crashed = world.clock.t
    await world.run(130.0)
    taken = next(t for t, holder in world.takeovers if holder == "b")
    assert crashed + TIMING.lease - TIMING.renew <= taken <= crashed + TIMING.lease + TIMING.renew
    assert b.is_leader


async def test_an_existing_lease_of_an_unknown_holder_is_waited_out_in_full(world: World):
    # Left by a replica that died long ago (renewTime a day old): a new replica still
    # cannot know that its clock agrees, so it waits a whole lease after seeing it.
    old = EPOCH - timedelta(days=1)
    world.server.record = LeaseRecord("ghost", 15, old, old, transitions=4, version="7")
    world.server.version = 7
    a = world.add("a")
    await world.run(14.0)
    assert not a.is_leader
    await world.run(16.0)
    assert a.is_leader
    assert world.server.record is not None
    assert world.server.record.transitions == 5


async def test_two_candidates_racing_for_an_expired_lease_only_one_wins(world: World):
    world.server.record = LeaseRecord("ghost", 15, EPOCH, EPOCH, version="1")
    world.server.version = 1
    a, b = world.add("a", latency=0.2), world.add("b", latency=0.2)
    # Same latency, same start: both read version 1 and both try to write it.
    await world.run(40.0)
    assert sorted(world.leaders()) in (["a"], ["b"])
    assert [h for _, h in world.takeovers].count("a") + [h for _, h in world.takeovers].count(
        "b"
    ) == 1
    assert a.is_leader != b.is_leader


async def test_shutdown_releases_the_lease_and_the_standby_takes_it_at_once(world: World):
    world.add("a")
    await world.run(1.0)
    b = world.add("b")
    await world.run(30.0)
    world.tasks.pop("a").cancel()  # kopf's cleanup cancels the elector: it releases
    await world.run(30.1)
    released = next(t for t, holder in world.takeovers if holder == "")
    await world.run(40.0)
    taken = next(t for t, holder in world.takeovers if holder == "b")
    assert taken - released <= TIMING.renew + 0.1
    assert b.is_leader


async def test_a_restarted_replica_takes_its_own_lease_back_at_once(world: World):
    world.add("a")
    await world.run(10.0)
    world.crash("a")
    again = world.add("a")  # the same identity (a restarted Pod keeps its name)
    await world.run(10.5)
    assert again.is_leader


async def test_a_renew_that_timed_out_but_landed_does_not_cost_leadership(world: World):
    a = world.add("a")
    await world.run(5.0)
    link = world.links["a"]
    link.holding = True
    await world.run(5.0 + TIMING.renew + 0.5)  # one renew held
    assert link.release()  # ... lands now: the Lease moved on without a knowing it
    await world.run(30.0)
    assert a.is_leader
    assert world.server.record is not None
    assert world.server.record.holder == "a"
    assert world.server.record.transitions == 0


async def test_a_leader_that_sees_another_holder_stops_at_once(world: World):
    a = world.add("a")
    await world.run(5.0)
    # Someone else's write (e.g. an administrator moving the Lease by hand: it breaks
    # the fencing rule on purpose, so the invariant hook is off for it).
    record = world.server.record
    assert record is not None
    world.server.on_write = lambda _: None
    world.server.update(LeaseRecord("admin", 15, EPOCH, EPOCH, version=record.version))
    await world.run(5.0 + TIMING.renew + 0.1)
    assert not a.is_leader
    assert a.write_budget() is None


def test_timing_must_leave_room_for_the_fence():
    with pytest.raises(ValueError, match="renew deadline"):
        Timing(lease=10, renew=2, deadline=10)
    assert Timing(lease=6, renew=1, deadline=4).fence == 5.0


# -- any interleaving ----------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    at: float  # seconds into the scenario
    replica: int
    kind: str  # down | up | hold | release | slow | fast | crash | restart


FAULTS = st.builds(
    Fault,
    at=st.floats(min_value=0.0, max_value=90.0),
    replica=st.integers(min_value=0, max_value=2),
    kind=st.sampled_from(["down", "up", "hold", "release", "slow", "fast", "crash", "restart"]),
)


async def _scenario(faults: list[Fault], latencies: list[float]) -> World:
    world = World(Timing(lease=6, renew=1.0, deadline=4.0))
    try:
        await _play(world, faults, latencies)
    except BaseException:
        await world.stop()
        raise
    return world


async def _play(world: World, faults: list[Fault], latencies: list[float]) -> None:
    names = ["a", "b", "c"]
    for name, latency in zip(names, latencies, strict=True):
        world.add(name, latency=latency)
    for fault in sorted(faults, key=lambda f: f.at):
        await world.run(fault.at)
        name = names[fault.replica]
        link = world.links[name]
        alive = name in world.electors
        if fault.kind == "down":
            link.down = True
        elif fault.kind == "up":
            link.down = False
        elif fault.kind == "hold":
            link.holding = True
        elif fault.kind == "release":
            link.release()
        elif fault.kind == "slow":
            link.latency = 3.0  # longer than the renew period: calls overlap the deadline
        elif fault.kind == "fast":
            link.latency = 0.01
        elif fault.kind == "crash" and alive:
            world.crash(name)
        elif fault.kind == "restart" and not alive:
            world.add(name)
    # Heal everything: someone must lead within a lease and a couple of renewals.
    for name in names:
        link = world.links[name]
        link.down, link.latency = False, 0.01
        link.release()
        if name not in world.electors:
            world.add(name)
    healed = world.clock.t
    await world.run(healed + 6 + 3 * 1.0)
    assert len(world.leaders()) == 1, world.leaders()
    await world.stop()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    faults=st.lists(FAULTS, max_size=25),
    latencies=st.lists(st.floats(min_value=0.001, max_value=1.5), min_size=3, max_size=3),
)
def test_never_two_leaders_in_any_scripted_interleaving(
    faults: list[Fault], latencies: list[float]
):
    asyncio.run(_scenario(faults, latencies))


async def test_fresh_waits_for_the_renew_a_long_hold_of_the_loop_delayed(world: World):
    a = world.add("a")
    await world.run(0.5)
    async with asyncio.timeout(1):
        await a.fresh()  # renewed a moment ago: at once
    # A long reconcile pass holds the event loop: 7 s go by and nothing else runs.
    world.clock.t += 7.0
    budget = a.write_budget()
    assert budget is not None
    assert budget < TIMING.fence - 6.9
    waiting = asyncio.ensure_future(a.fresh())
    await asyncio.sleep(0)
    assert not waiting.done()  # a write sent now would have under 6 s
    await world.run(world.clock.t + 0.5)  # the elector's overdue renew goes out
    async with asyncio.timeout(1):
        await waiting
    budget = a.write_budget()
    assert budget is not None
    assert budget > TIMING.fence - 0.6


async def test_a_leader_whose_controller_is_stuck_stops_renewing_and_is_replaced(world: World):
    """Renewed from a thread of its own (ElectorThread), the Lease must not outlive a
    controller whose loop is stuck for good: once `alive` says so, no renew."""
    a = world.add("a")
    await world.run(0.5)
    b = world.add("b")
    await world.run(10.0)
    stuck = True
    a.alive = lambda: not stuck
    stuck_at = world.clock.t
    await world.run(stuck_at + 40.0)
    lost = next(t for t, name, leader in world.changes if name == "a" and not leader)
    taken = next(t for t, holder in world.takeovers if holder == "b")
    assert lost <= stuck_at + TIMING.deadline + 0.1
    assert lost < taken <= stuck_at + TIMING.lease + TIMING.renew
    assert b.is_leader
    # Running again, it stands by: it does not take the Lease back from b.
    stuck = False
    await world.run(world.clock.t + 40.0)
    assert world.leaders() == ["b"]


def test_the_stall_limit_must_exceed_the_renew_deadline():
    with pytest.raises(ValueError, match="stall"):
        Timing(lease=15, renew=2, deadline=10, stall=10)
