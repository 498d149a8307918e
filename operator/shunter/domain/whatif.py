"""A what-if: where a job not submitted yet would start, from the kept plan (pure).

Answered without simulating again (shunter.domain.estimates): nothing the hypothetical
job does changes the plan before it starts (it holds nothing while it waits, and the
jobs ahead of it in its queue's order are admitted before it at any instant), so its
start is the first instant of the plan's timeline at which it fits beside what the
plan holds then, once the jobs ahead of it in its queue have started; the jobs behind
it in its StrictFIFO queue wait for it and are left out. The plan is indexed once
(`Timeline`: holdings as plain numbers with snapshots, each queue's jobs in order), so
a what-if costs O(log n + the events after its instant), not a pass over the plan.

"Ahead of it in its queue" is the order a pass takes the queue in: admission order,
or in a queue with admission fair sharing the fair order (shunter.domain.ordering
`Sharing.ahead`: per tenant, the prefix of its lane that comes first with the scores
as they stand now), so its position is the one the operator's status would show. The
start then waits for the jobs ahead in that order to have started in the plan (the
plan's own starts follow the scores as they move; the what-if reads them as now).

Preemption (`insert`'s `preempt`, the victims a pass would stop for a waiting head,
the hook World.preempt is for the estimates): when the job would be its queue's head
and waits now for capacity or quota, and the hook names victims, it starts at the
latest when their stops end (now plus the grace each stop gives: the estimate's start
and high end) and at the earliest now (a trainer may exit before its grace ends),
unless the plan frees what it needs sooner. Not read: a cohort's idle quota held for
another queue's head (`CohortHolds`), time slices, and preemption above fair share.
"""

from __future__ import annotations

import bisect
import functools
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shunter.domain.admission import AdmissionState, Limits, Usage, queue_order
from shunter.domain.capacity import Capacity, NodeIndex, pod_need
from shunter.domain.estimates import HIGH, LOW, MID, SCENARIOS, Estimate, Plan, Preempter
from shunter.domain.fairshare import Entry, Tenant, tenant_of
from shunter.domain.model import Job, JobKey
from shunter.domain.nodes import Resources
from shunter.domain.ordering import Sharing
from shunter.domain.queues import (
    BEST_EFFORT_FIFO,
    LOWER_PRIORITY,
    QueueView,
    QuotaUse,
    queue_of,
)


@dataclass(frozen=True)
class Answer:
    """A hypothetical job's place in the kept plan."""

    position: int  # in its queue, 1 = next
    estimate: Estimate
    ahead: int  # queued jobs ahead of it in admission order (all queues)
    # The jobs a pass would preempt for it now, each with the grace its stop gives.
    victims: tuple[tuple[Job, int], ...] = ()


def insert(kept: Plan, job: Job, *, now: datetime, queues: Mapping[str, QueueView],
           scenarios: Sequence[int] = SCENARIOS, sharing: Sharing | None = None,
           preempt: Preempter | None = None, active: Sequence[Job] = ()) -> Answer:  # fmt: skip
    """Where `job`, submitted now, would start: see the module doc. `scenarios`
    (MID alone: no range) makes a quick answer for alternatives. `sharing`: the
    scores a pass would order fair queues by now (None: admission order); `preempt`
    and `active` (the jobs holding a slot now): the victims a pass would stop."""
    order = queue_order(job)
    timeline = timeline_of(kept)
    queue = queue_of(job.spec.queue, queues)
    strict = queue is None or queue.strategy != BEST_EFFORT_FIFO
    ahead = bisect.bisect_left(timeline.queued, order)
    lines = _ahead_in_queue(kept, timeline, job, queue, sharing)
    same = sum(n for _, n in lines)
    behind: Collection[JobKey] | None = None
    if queue is not None and queue.half_life and sharing is not None:
        behind = timeline.behind(job.spec.queue, lines)

    starts: dict[int, datetime | None] = {}
    reason = None
    for scenario in scenarios:
        not_before: datetime | None = now
        if strict and same:
            lasts = [(line.latest[scenario][n - 1], line) for line, n in lines if n]
            blocked = next((line for last, line in lasts if last is None), None)
            if blocked is not None:
                blocker = blocked.keys[blocked.first_unplanned[scenario]]
                starts[scenario] = None
                reason = f"the job ahead in its queue has no estimate: {blocker}"
                continue
            not_before = max([now, *(last for last, _ in lasts if last is not None)])
        found, why = _first_fit(kept, job, scenario, not_before=not_before or now, order=order,
                                queues=queues, strict=strict, behind=behind)  # fmt: skip
        starts[scenario] = found
        reason = reason or why
    victims = _victims(kept, timeline, job, now=now, queues=queues, preempt=preempt, active=active,
                       head=same == 0)  # fmt: skip
    if victims:  # started at the latest when their stops end, at the earliest now
        # A plan that lets it start now is older than the jobs holding the GPUs (the
        # victims were chosen on the live state): it starts when their stops end.
        deadline = now + timedelta(seconds=max(grace for _, grace in victims))
        starts = {s: deadline if t is None or t <= now else min(t, deadline)
                  for s, t in starts.items()}  # fmt: skip
        if LOW in starts:
            starts[LOW] = now
    mid = starts.get(MID)
    if mid is None:
        return Answer(same + 1, Estimate(reason=reason or "not planned"), ahead)
    known = [s for s in starts.values() if s is not None]
    latest = max(known) if starts.get(HIGH, mid) is not None else None
    return Answer(same + 1, Estimate(mid, min(known), latest), ahead, victims)


def _ahead_in_queue(kept: Plan, timeline: Timeline, job: Job, queue: QueueView | None,
                    sharing: Sharing | None) -> list[tuple[_QueueLine, int]]:  # fmt: skip
    """The lines of the job's queue with how many of each come before it: its queue's
    one line in admission order, or (fair sharing) each tenant's, by `Sharing.ahead`."""
    if queue is not None and queue.half_life and sharing is not None:
        lines = timeline.tenants_of(kept, job.spec.queue)
        entries = {tenant: line.entries for tenant, line in lines.items()}
        counts = sharing.ahead(queue, entries, job)
        return [(lines[tenant], n) for tenant, n in counts.items()]
    lane = timeline.lanes.get(job.spec.queue)
    if lane is None:
        return []
    return [(lane, bisect.bisect_left(lane.orders, queue_order(job)))]


def _victims(kept: Plan, timeline: Timeline, job: Job, *, now: datetime,
             queues: Mapping[str, QueueView],
             preempt: Preempter | None, active: Sequence[Job],
             head: bool) -> tuple[tuple[Job, int], ...]:  # fmt: skip
    """Whom a pass now would preempt for the job: only for its queue's head that waits
    for capacity or quota ("Queued"), as the pass does."""
    queue = queue_of(job.spec.queue, queues)
    if preempt is None or not head or queue is None:
        return ()
    if queue.preemption != LOWER_PRIORITY and not queue.cohort:
        return ()  # nothing it may preempt (its own lower priorities, or reclaim)
    state = AdmissionState(kept.limits, Usage.of(active), QuotaUse.of(queues, active),
                           Capacity.build(timeline.capacity.index, (), active),
                           queues)  # fmt: skip
    verdict = state.verdict(job, now=now)
    if verdict.kind != "wait" or verdict.reason != "Queued":
        return ()
    return preempt(job, state, active, now).victims


Need = tuple[int, int, int]  # GPUs, CPU millicores, memory bytes per Pod
Info = tuple[str, str, int, Need]  # namespace, queue, total GPUs, per Pod


@dataclass
class _Held:
    """What the plan holds at one instant, as plain numbers: a what-if applies
    thousands of starts and ends; an AdmissionState is built only to judge."""

    running: int = 0
    gpus: int = 0
    by_namespace: dict[str, int] = field(default_factory=dict)
    queue_running: dict[str, int] = field(default_factory=dict)
    queue_gpus: dict[str, int] = field(default_factory=dict)
    free: dict[str, list[int]] = field(default_factory=dict)

    def copy(self) -> _Held:
        return _Held(self.running, self.gpus, dict(self.by_namespace), dict(self.queue_running),
                     dict(self.queue_gpus), {n: list(f) for n, f in self.free.items()})  # fmt: skip

    def apply(self, info: Info, placement: Iterable[str], sign: int) -> None:
        namespace, queue, total, need = info
        self.running += sign
        self.gpus += sign * total
        self.by_namespace[namespace] = self.by_namespace.get(namespace, 0) + sign * total
        self.queue_running[queue] = self.queue_running.get(queue, 0) + sign
        self.queue_gpus[queue] = self.queue_gpus.get(queue, 0) + sign * total
        for node in placement:
            free = self.free.get(node)
            if free is not None:
                free[0] -= sign * need[0]
                free[1] -= sign * need[1]
                free[2] -= sign * need[2]

    def may_fit(self, usable: Sequence[str], need: Need, pods: int) -> bool:
        """Enough usable nodes with the Pods' need free (what placement needs first)."""
        found = 0
        for name in usable:
            free = self.free[name]
            if free[0] >= need[0] and free[1] >= need[1] and free[2] >= need[2]:
                found += 1
                if found >= pods:
                    return True
        return False

    def state(self, limits: Limits, queues: Mapping[str, QueueView],
              index: NodeIndex) -> AdmissionState:  # fmt: skip
        usage = Usage(self.running, self.gpus, dict(self.by_namespace))
        quota = QuotaUse(queues, dict(self.queue_running), dict(self.queue_gpus))
        free = {n: Resources(*f) for n, f in self.free.items()}
        return AdmissionState(limits, usage, quota, Capacity(index, free), queues)


@dataclass
class _QueueLine:
    """A queue's queued jobs in the kept plan, in admission order, with the latest
    planned start among the first i+1 of them per scenario (None once one has none)."""

    orders: list[tuple[Any, ...]]
    keys: list[JobKey]
    latest: list[list[datetime | None]]
    first_unplanned: list[int]
    tenant: Tenant = ("", "")  # a fair queue's line per tenant: whose

    @functools.cached_property
    def entries(self) -> list[Entry]:
        """(order, key) of each, as Sharing.ahead reads a tenant's lane (built once)."""
        return list(zip(self.orders, self.keys, strict=True))


# A what-if starts from the nearest kept snapshot of the plan's holdings before its
# instant: one every CHECKPOINT events of the timeline.
CHECKPOINT = 256


@dataclass
class Timeline:
    """The kept plan indexed for what-ifs (built once per plan): each job's order and
    needs, per scenario its starts and ends sorted (ends first at an instant) with
    snapshots of the holdings along them, and each queue's queued jobs in order."""

    orders: dict[JobKey, tuple[Any, ...]]
    info: dict[JobKey, Info]
    # (time, +1 start / -1 end, order, key, its Info, its placement)
    events: list[list[tuple[datetime, int, tuple[Any, ...], JobKey, Info, tuple[str, ...]]]]
    times: list[list[datetime]]
    placements: list[dict[JobKey, tuple[str, ...]]]
    snapshots: list[list[tuple[int, _Held]]]
    queued: list[tuple[Any, ...]]
    lanes: dict[str, _QueueLine]
    capacity: Capacity  # free: every node's allocatable; its index, for the verdicts
    # Per fair queue (built on its first what-if): each tenant's line.
    tenants: dict[str, dict[Tenant, _QueueLine]] = field(default_factory=dict)
    # The jobs behind the last fair what-if, kept for the next with the same place
    # (its alternatives with fewer GPUs): (queue, how many of each line), the keys.
    last_behind: tuple[Any, frozenset[JobKey]] | None = None

    def tenants_of(self, kept: Plan, queue: str) -> dict[Tenant, _QueueLine]:
        """A fair queue's line per tenant (its queued jobs in admission order)."""
        found = self.tenants.get(queue)
        if found is None:
            lane = self.lanes.get(queue)
            mine: dict[Tenant, list[JobKey]] = {}
            for key in lane.keys if lane is not None else ():
                mine.setdefault(tenant_of(kept.jobs[key]), []).append(key)
            found = self.tenants[queue] = {
                tenant: _line(kept, keys, [self.orders[k] for k in keys], tenant)
                for tenant, keys in mine.items()
            }  # fmt: skip
        return found

    def behind(self, queue: str, lines: Sequence[tuple[_QueueLine, int]]) -> frozenset[JobKey]:
        """The queued jobs of a fair queue behind a what-if that has the first n of
        each line ahead of it."""
        place = (queue, tuple((line.tenant, n) for line, n in lines))
        if self.last_behind is None or self.last_behind[0] != place:
            keys = frozenset(k for line, n in lines for k in line.keys[n:])
            self.last_behind = (place, keys)
        return self.last_behind[1]

    @classmethod
    def of(cls, kept: Plan) -> Timeline:
        orders = {key: queue_order(job) for key, job in kept.jobs.items()}
        info: dict[JobKey, Info] = {}
        for key, job in kept.jobs.items():
            need = pod_need(job)
            info[key] = (key.namespace, job.spec.queue, job.spec.total_gpus,
                         (need.gpus, need.cpu, need.memory))  # fmt: skip
        empty = _Held(free={n.name: [n.allocatable.gpus, n.allocatable.cpu,
                                     n.allocatable.memory] for n in kept.nodes})  # fmt: skip
        events, placements, snapshots = [], [], []
        for scenario in SCENARIOS:
            moves: list[tuple[datetime, int, tuple[Any, ...], JobKey, Info, tuple[str, ...]]] = []
            where: dict[JobKey, tuple[str, ...]] = {}
            for key, slots in kept.slots.items():
                slot = slots[scenario]
                if slot.start is None:
                    continue
                where[key] = slot.placement
                # A job holding its slot already is ahead of any job at its instant.
                order = orders[key] if kept.jobs[key].queued else ()
                moves.append((slot.start, 1, order, key, info[key], slot.placement))
                if slot.end is not None:
                    moves.append((slot.end, -1, order, key, info[key], slot.placement))
            moves.sort()
            held, kept_at = empty.copy(), [(0, empty.copy())]
            for i, (_, sign, _, _, about, placement) in enumerate(moves, 1):
                held.apply(about, placement, sign)
                if i % CHECKPOINT == 0:
                    kept_at.append((i, held.copy()))
            events.append(moves)
            placements.append(where)
            snapshots.append(kept_at)
        placed = kept.placed()
        queued = sorted(orders[k] for k in placed)
        return cls(orders, info, events, [[e[0] for e in m] for m in events], placements,
                   snapshots, queued, _lanes(kept, placed, orders),
                   Capacity.build(kept.nodes, (), ()))  # fmt: skip


def _lanes(kept: Plan, placed: Iterable[JobKey],
           orders: Mapping[JobKey, tuple[Any, ...]]) -> dict[str, _QueueLine]:  # fmt: skip
    by_queue: dict[str, list[JobKey]] = {}
    for key in placed:
        by_queue.setdefault(kept.jobs[key].spec.queue, []).append(key)
    lanes = {}
    for name, keys in by_queue.items():
        keys.sort(key=lambda k: orders[k])
        lanes[name] = _line(kept, keys, [orders[k] for k in keys])
    return lanes


def _line(kept: Plan, keys: list[JobKey], orders: list[tuple[Any, ...]],
          tenant: Tenant = ("", "")) -> _QueueLine:  # fmt: skip
    """Queued jobs in order, with the latest planned start among the first i+1."""
    latest: list[list[datetime | None]] = []
    first: list[int] = []
    for scenario in SCENARIOS:
        running: list[datetime | None] = []
        last: datetime | None = datetime.min.replace(tzinfo=UTC)
        unplanned = len(keys)
        for i, key in enumerate(keys):
            start = kept.slots[key][scenario].start if key in kept.slots else None
            if start is None and last is not None:
                unplanned = i
            last = None if start is None or last is None else max(last, start)
            running.append(last)
        latest.append(running)
        first.append(unplanned)
    return _QueueLine(orders, keys, latest, first, tenant)


def _first_fit(kept: Plan, job: Job, scenario: int, *, not_before: datetime,
               order: tuple[Any, ...], queues: Mapping[str, QueueView], strict: bool,
               behind: Collection[JobKey] | None = None,
               ) -> tuple[datetime | None, str | None]:  # fmt: skip
    """The first instant >= not_before of the scenario's timeline at which job fits:
    the holdings at not_before from the nearest snapshot, then instant by instant
    (ends first, then the starts of the jobs ahead of it, then it). A job behind it
    in its StrictFIFO queue waits for it: its start and end are left out. Behind it
    in its own queue: after it in admission order, or where `behind` says so (the
    fair order)."""
    timeline = timeline_of(kept)
    never = timeline.capacity.never_fits(job)
    if never is not None:
        return None, f"Unschedulable: {never}"
    events, times = timeline.events[scenario], timeline.times[scenario]
    snapshots = timeline.snapshots[scenario]
    target = bisect.bisect_left(times, not_before)
    at = bisect.bisect_right([i for i, _ in snapshots], target) - 1
    i, held = snapshots[at][0], snapshots[at][1].copy()
    usable = [n.name for n in timeline.capacity.usable(job)]
    need = pod_need(job)
    wanted: Need = (need.gpus, need.cpu, need.memory)
    mine, pods, room = job.spec.queue, job.spec.nodes, set(usable)
    # Whether its Pods fit on the free nodes now (None: not known): a start may take
    # the room; an end frees only its own nodes, so for one Pod only those are looked at.
    fits: bool | None = None
    t, freed = not_before, True
    while True:
        while i < len(events) and (events[i][0] < t or (events[i][0] == t and (
                events[i][1] < 0 or (events[i][2] < order if behind is None
                                     or events[i][4][1] != mine
                                     else events[i][3] not in behind)))):  # fmt: skip
            _, sign, other, key, about, placement = events[i]
            i += 1
            if (strict and (other > order if behind is None else key in behind)
                    and about[1] == mine and kept.jobs[key].queued):  # fmt: skip
                continue
            held.apply(about, placement, sign)
            if sign > 0:
                fits = None if fits else fits
                continue
            freed = True
            if fits is False:
                fits = None if pods > 1 else any(
                    n in room and _covers(held.free[n], wanted) for n in placement
                ) or False  # fmt: skip
        if freed and fits is None:
            fits = held.may_fit(usable, wanted, pods)
        if freed and fits:
            verdict = held.state(kept.limits, queues, timeline.capacity.index).verdict(job, now=t)
            if verdict.kind == "admit":
                return t, None
            if verdict.kind == "never":
                return None, verdict.message
        freed = False
        j = i
        while j < len(events) and events[j][0] <= t:
            j += 1
        if j >= len(events):
            return None, "no runtime known for the jobs that hold what it needs"
        t = events[j][0]


def _covers(free: list[int], need: Need) -> bool:
    return free[0] >= need[0] and free[1] >= need[1] and free[2] >= need[2]


def timeline_of(kept: Plan) -> Timeline:
    """The plan's index, built on first use and kept with the plan."""
    if kept.index is None:
        kept.index = Timeline.of(kept)
    found: Timeline = kept.index
    return found
