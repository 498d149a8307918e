"""When will a queued job start: the kept plan of the queue (pure).

The one owner of start-time estimates: the operator simulates its queue forward in
time with the admission rules of a pass (`AdmissionState.verdict`: limits, queue
quotas and cohorts, nodes; the queues merged in admission order, a StrictFIFO queue
blocked by its head, a BestEffortFIFO queue searched LOOKAHEAD deep), event by event:
at each running job's expected end its GPUs are freed and what the rules would admit
then starts. A job's start in that simulation is its estimate.

A job's expected end comes from, in this order:
- its progress report (status.progress: steps left over its reported rate);
- runtimes learned from the mirror for similar jobs (same namespace, image and GPU
  count): the median of past runs (of those that ran longer than this one so far);
- spec.maxRuntimeSeconds (the end at the latest: what Slurm's backfill assumes);
- none: the job's GPUs are never freed in the plan, and whoever waits for them gets
  no time but a reason ("no runtime known for the job ahead: ns/name").

The range comes from running the same simulation three times, with every runtime at
its low, middle and high value (progress: +-10 % of what is left; learned: the 25th,
50th and 90th percentile; maxRuntimeSeconds: a quarter of it, all of it, all of it).

Not simulated (the estimate is a forecast, not a promise): preemption and time slices
(a head that would preempt is estimated to start when the GPUs free up anyway, so the
estimate errs late), admission fair sharing inside a queue (a queue is taken in its
admission order) and failures or retries. The simulation stops after MAX_STARTS starts
or HORIZON of virtual time: the jobs behind get the reason "beyond the plan's horizon".

A what-if (`insert`) is answered from the kept plan without simulating again: nothing
the hypothetical job does changes the plan before it starts (it holds nothing while
it waits, and the jobs ahead of it in admission order are admitted before it at any
instant), so its start is the first instant of the plan's timeline at which it fits
beside what the plan holds then, once the jobs ahead of it in its queue have started.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shunter.domain.admission import AdmissionState, Limits, Usage, Verdict, queue_order
from shunter.domain.capacity import Capacity, pod_need
from shunter.domain.model import Job, JobKey, JobSpec, Uid, format_time, parse_time
from shunter.domain.nodes import NodeView, PodUsage, Resources, Taint
from shunter.domain.queues import BEST_EFFORT_FIFO, QueueView, QuotaUse, queue_of

LOW, MID, HIGH = 0, 1, 2
SCENARIOS = (LOW, MID, HIGH)
# How far past its head a BestEffortFIFO queue is searched (planning.LOOKAHEAD).
LOOKAHEAD = 100
MAX_STARTS = 20_000
HORIZON = timedelta(days=30)
# Learned runtimes: the percentiles of low, middle and high, and the fewest runs.
PERCENTILES = (0.25, 0.5, 0.9)
MIN_RUNS = 3
PROGRESS_SPREAD = 0.1
LIMIT_LOW = 0.25

Runtimes = tuple[float, float, float]  # seconds, per scenario
SimilarKey = tuple[str, str, int]  # namespace, image, total GPUs


def similar_key(job: Job) -> SimilarKey:
    return (job.key.namespace, job.spec.image, job.spec.total_gpus)


@dataclass(frozen=True)
class Learned:
    """Past run durations (seconds, sorted) of similar jobs, from the mirror: same
    namespace, image and GPUs; where those are fewer than MIN_RUNS, same namespace
    and image (any GPUs)."""

    durations: Mapping[SimilarKey, Sequence[float]] = field(default_factory=dict)
    broad: Mapping[tuple[str, str], Sequence[float]] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.broad or not self.durations:
            return
        broad: dict[tuple[str, str], list[float]] = {}
        for (namespace, image, _), values in self.durations.items():
            broad.setdefault((namespace, image), []).extend(values)
        object.__setattr__(self, "broad", {k: sorted(v) for k, v in broad.items()})

    def runtimes(self, job: Job, *, elapsed: float = 0.0, planned: bool = False) -> Runtimes | None:
        """Low, middle and high runtime of a job that has run `elapsed` so far: the
        25th and 90th percentile of the past runs longer than that, and in the middle
        their median for a running job (its own end is what counts) or their mean for
        a planned one (the starts behind it add runtimes up: the sum's expectation is
        the sum of the means, which a heavy tail puts well above the medians)."""
        key = similar_key(job)
        for past in (self.durations.get(key) or (), self.broad.get(key[:2]) or ()):
            longer = past[bisect.bisect_right(past, elapsed) :]
            if len(longer) >= MIN_RUNS:
                break
        else:
            return None
        low, mid, high = (_percentile(longer, p) for p in PERCENTILES)
        if planned:
            mid = sum(longer) / len(longer)
        limit = job.spec.max_runtime_seconds
        if limit:  # the operator stops it there: no run is longer
            low, mid, high = (min(limit, x) for x in (low, mid, high))
        return (low, mid, high)


def _percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile of sorted values."""
    rank = max(0, min(len(values) - 1, math.ceil(p * len(values)) - 1))
    return values[rank]


@dataclass(frozen=True)
class Ends:
    """When an admitted job is expected to end (per scenario), and from what."""

    at: tuple[datetime, datetime, datetime] | None
    source: str  # progress | learned | limit | unknown


def expected_end(job: Job, *, now: datetime, learned: Learned) -> Ends:
    """A running (or planned) job's expected end: see the module doc for the order."""
    started = job.status.running_since or job.status.admitted_at or now
    progress = job.status.progress
    if progress is not None and progress.total_steps and progress.throughput:
        left = max(0.0, (progress.total_steps - progress.step) / progress.throughput)
        base = max(now, progress.reported_at)
        left = max(0.0, left - (base - progress.reported_at).total_seconds())
        spread = (1 - PROGRESS_SPREAD, 1.0, 1 + PROGRESS_SPREAD)
        limit = job.spec.max_runtime_seconds
        cap = started + timedelta(seconds=limit) if limit else datetime.max.replace(tzinfo=UTC)
        at = tuple(max(now, min(cap, base + timedelta(seconds=left * s))) for s in spread)
        return Ends(at, "progress")  # type: ignore[arg-type]
    elapsed = max(0.0, (now - started).total_seconds())
    found = learned.runtimes(job, elapsed=elapsed)
    if found is not None:
        at = tuple(max(now, started + timedelta(seconds=r)) for r in found)
        return Ends(at, "learned")  # type: ignore[arg-type]
    limit = job.spec.max_runtime_seconds
    if limit:
        end = started + timedelta(seconds=limit)
        low = max(now, started + timedelta(seconds=limit * LIMIT_LOW))
        return Ends((min(low, max(now, end)), max(now, end), max(now, end)), "limit")
    return Ends(None, "unknown")


@dataclass(frozen=True)
class Estimate:
    """A queued job's estimated start and range; or none, with the reason."""

    start: datetime | None = None
    earliest: datetime | None = None
    latest: datetime | None = None
    reason: str | None = None

    def to_raw(self) -> dict[str, Any]:
        raw = {"start": format_time(self.start), "earliest": format_time(self.earliest),
               "latest": format_time(self.latest), "reason": self.reason}  # fmt: skip
        return {k: v for k, v in raw.items() if v is not None}

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Estimate | None:
        if not raw:
            return None
        return cls(parse_time(raw.get("start")), parse_time(raw.get("earliest")),
                   parse_time(raw.get("latest")), raw.get("reason"))  # fmt: skip

    def moved(self, other: Estimate | None, *, now: datetime, threshold: float) -> bool:
        """Worth writing again: the reason changed, or the start moved by more than
        `threshold` of the wait left (at least a minute)."""
        if other is None or (self.start is None) != (other.start is None):
            return True
        if self.reason != other.reason:
            return True
        if self.start is None or other.start is None:
            return False
        wait = max(60.0, (self.start - now).total_seconds())
        return abs((self.start - other.start).total_seconds()) > threshold * wait


@dataclass(frozen=True)
class Slot:
    """A job in one scenario of the plan: when it holds its GPUs, and where."""

    start: datetime | None
    end: datetime | None  # None: holds them past the plan
    placement: tuple[str, ...] = ()


@dataclass(frozen=True)
class World:
    """What the simulation starts from (the inputs of a pass)."""

    now: datetime
    limits: Limits
    queues: Mapping[str, QueueView]
    nodes: Sequence[NodeView]
    foreign: Sequence[PodUsage]
    active: Sequence[Job]  # holding a slot (placement in status)
    waiting: Sequence[Job]  # queued, not cancelled or suspended, any order


@dataclass
class Plan:
    """The kept plan: every job's slots per scenario and the queued jobs' estimates."""

    computed_at: datetime
    limits: Limits
    nodes: tuple[NodeView, ...]  # allocatable net of foreign Pods
    jobs: dict[JobKey, Job]
    slots: dict[JobKey, tuple[Slot, Slot, Slot]]
    estimates: dict[JobKey, Estimate]
    sources: dict[JobKey, str] = field(default_factory=dict)
    _timeline: Timeline | None = field(default=None, repr=False, compare=False)

    def estimate(self, key: JobKey) -> Estimate | None:
        return self.estimates.get(key)

    def timeline(self) -> Timeline:
        if self._timeline is None:
            self._timeline = Timeline.of(self)
        return self._timeline


def plan(world: World, *, learned: Learned, max_starts: int = MAX_STARTS) -> Plan:
    """Simulate the three scenarios; each queued job's estimate and range."""
    nodes = _net_nodes(world.nodes, world.foreign)
    none = Slot(None, None)
    slots: dict[JobKey, list[Slot]] = {}
    reasons: dict[JobKey, str] = {}
    sources: dict[JobKey, str] = {}
    for scenario in SCENARIOS:
        found, why = _simulate(world, nodes, scenario, learned=learned, max_starts=max_starts,
                               sources=sources)  # fmt: skip
        for key, slot in found.items():
            slots.setdefault(key, [none, none, none])[scenario] = slot
        if scenario == MID:
            reasons = why
    estimates: dict[JobKey, Estimate] = {}
    for job in world.waiting:
        mine = slots.get(job.key)
        mid = mine[MID].start if mine else None
        if mine is None or mid is None:
            estimates[job.key] = Estimate(reason=reasons.get(job.key, "not planned"))
            continue
        starts = [s.start for s in mine if s.start is not None]
        latest = None if mine[HIGH].start is None else max(starts)
        estimates[job.key] = Estimate(mid, min(starts), latest)
    jobs = {j.key: j for j in (*world.active, *world.waiting)}
    full = {k: (v[0], v[1], v[2]) for k, v in slots.items()}
    return Plan(world.now, world.limits, nodes, jobs, full, estimates, sources)


def _net_nodes(nodes: Iterable[NodeView], foreign: Iterable[PodUsage]) -> tuple[NodeView, ...]:
    held: dict[str, Resources] = {}
    for pod in foreign:
        held[pod.node] = held.get(pod.node, Resources()) + pod.requests
    return tuple(replace(n, allocatable=n.allocatable - held.get(n.name, Resources()))
                 for n in nodes)  # fmt: skip


def _state(world_limits: Limits, queues: Mapping[str, QueueView], nodes: Sequence[NodeView],
           active: Sequence[Job]) -> AdmissionState:  # fmt: skip
    return AdmissionState(limits=world_limits, usage=Usage.of(active),
                          quota=QuotaUse.of(queues, active),
                          capacity=Capacity.build(nodes, (), active), queues=queues)  # fmt: skip


@dataclass
class _Lane:
    """One queue's waiting jobs in the simulation, in admission order."""

    jobs: deque[Job]
    best_effort: bool


Simulated = tuple[dict[JobKey, Slot], dict[JobKey, str]]
Admitted = list[tuple[Job, tuple[str, ...]]]


def _simulate(world: World, nodes: Sequence[NodeView], scenario: int, *, learned: Learned,
              max_starts: int, sources: dict[JobKey, str]) -> Simulated:  # fmt: skip
    """One scenario: every job's slot, and why a queued job got none."""
    now = world.now
    state = _state(world.limits, world.queues, nodes, world.active)
    slots: dict[JobKey, Slot] = {}
    ends: list[tuple[datetime, int, Job, tuple[str, ...]]] = []
    holding_forever: list[Job] = []  # admitted, no runtime known
    for job in world.active:
        found = expected_end(job, now=now, learned=learned)
        sources.setdefault(job.key, found.source)
        end = None if found.at is None else found.at[scenario]
        slots[job.key] = Slot(job.status.admitted_at or now, end, job.status.placement)
        if end is None:
            holding_forever.append(job)
        else:
            heapq.heappush(ends, (end, len(ends), job, job.status.placement))
    lanes: dict[str, _Lane] = {}
    for job in sorted(world.waiting, key=queue_order):
        queue = queue_of(job.spec.queue, world.queues)
        lane = lanes.setdefault(job.spec.queue, _Lane(
            deque(), queue is not None and queue.strategy == BEST_EFFORT_FIFO))  # fmt: skip
        lane.jobs.append(job)
    reasons: dict[JobKey, str] = {}
    wakes: list[datetime] = []
    seen: set[JobKey] = set()
    t, starts, count = now, 0, 0
    while True:
        for job, placement in _admit(state, lanes, t, reasons, wakes, seen):
            runtime = _planned_runtime(job, learned, sources)
            end = None if runtime is None else t + timedelta(seconds=runtime[scenario])
            slots[job.key] = Slot(t, end, placement)
            if end is None:
                holding_forever.append(job)
            else:
                count += 1
                heapq.heappush(ends, (end, count + len(world.active), job, placement))
            starts += 1
        if not any(lane.jobs for lane in lanes.values()):
            break
        upcoming = [e for e in (ends[0][0] if ends else None, min(wakes, default=None))
                    if e is not None]  # fmt: skip
        if not upcoming:
            why = _unknown_reason(holding_forever)
            _leave(lanes, reasons, why)
            break
        t = min(upcoming)
        if starts >= max_starts or t - now > HORIZON:
            _leave(lanes, reasons, f"beyond the plan's horizon ({max_starts} starts or"
                                   f" {HORIZON.days} days ahead)")  # fmt: skip
            break
        wakes[:] = [w for w in wakes if w > t]
        while ends and ends[0][0] <= t:
            _, _, gone, where = heapq.heappop(ends)
            _give(state, gone, where)
    return slots, reasons


def _admit(state: AdmissionState, lanes: dict[str, _Lane], t: datetime,
           reasons: dict[JobKey, str], wakes: list[datetime],
           seen: set[JobKey]) -> Admitted:  # fmt: skip
    """What a pass at t admits: the queues' heads merged in admission order."""
    admitted: Admitted = []
    heap = [(queue_order(lane.jobs[0]), name, 0) for name, lane in lanes.items() if lane.jobs]
    heapq.heapify(heap)
    looked: dict[str, int] = {}
    most = _most_free(state)
    while heap:
        _, name, index = heapq.heappop(heap)
        lane = lanes[name]
        job = lane.jobs[index]
        verdict = _verdict(state, job, t, most, seen)
        following = index + 1
        if verdict.kind == "admit":
            state.take(job, verdict.placement)
            most = _most_free(state)
            admitted.append((job, verdict.placement))
            del lane.jobs[index]
            following = index
        elif verdict.kind == "never":
            reasons[job.key] = verdict.message
            del lane.jobs[index]
            following = index
        elif verdict.kind == "backoff" and job.status.not_before is not None:
            wakes.append(job.status.not_before)
        elif verdict.kind == "wait":
            if not lane.best_effort:
                continue  # a StrictFIFO queue is blocked by its head
            looked[name] = looked.get(name, 0) + 1
            if looked[name] > LOOKAHEAD:
                continue
        if following < len(lane.jobs):
            heapq.heappush(heap, (queue_order(lane.jobs[following]), name, following))
    return admitted


def _most_free(state: AdmissionState) -> int:
    return max((f.gpus for f in state.capacity.free.values()), default=0)


def _verdict(state: AdmissionState, job: Job, t: datetime, most: int,
             seen: set[JobKey]) -> Verdict:  # fmt: skip
    """state.verdict, without placing a job whose Pods ask for more GPUs than any node
    has free (thousands of times per plan): its answer is that of the checks before
    placement, the static ones (budget, never fits, queue missing) judged by the first
    full verdict the job got."""
    if job.key not in seen or job.spec.gpus <= most:
        seen.add(job.key)
        return state.verdict(job, now=t)
    if job.status.not_before is not None and t < job.status.not_before:
        return Verdict("backoff", job.status.reason or "BackOff", job.status.message or "")
    capped = state.usage.namespace_cap(job, state.limits)
    if capped is not None:
        return Verdict("capped", "NamespaceQuota", capped)
    return Verdict("wait", "Queued")


def _give(state: AdmissionState, job: Job, placement: Iterable[str]) -> None:
    """AdmissionState.give with the placement of the plan."""
    state.usage = state.usage.plus(job, -1)
    state.quota.remove(job)
    state.capacity.give(job, placement)


def _planned_runtime(job: Job, learned: Learned, sources: dict[JobKey, str]) -> Runtimes | None:
    found = learned.runtimes(job, planned=True)
    if found is not None:
        sources[job.key] = "learned"
        return found
    limit = job.spec.max_runtime_seconds
    if limit:
        sources[job.key] = "limit"
        return (limit * LIMIT_LOW, float(limit), float(limit))
    sources[job.key] = "unknown"
    return None


def _unknown_reason(holding: Sequence[Job]) -> str:
    if not holding:
        return "nothing ahead of it is planned to end"
    names = ", ".join(str(j.key) for j in holding[:3])
    more = f" and {len(holding) - 3} more" if len(holding) > 3 else ""
    return f"no runtime known for the job ahead: {names}{more}"


def _leave(lanes: Mapping[str, _Lane], reasons: dict[JobKey, str], why: str) -> None:
    for lane in lanes.values():
        for job in lane.jobs:
            reasons.setdefault(job.key, why)
        lane.jobs.clear()


# -- what-if -----------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A hypothetical job's place in the kept plan."""

    position: int  # in its queue, 1 = next
    estimate: Estimate
    ahead: int  # queued jobs ahead of it in admission order (all queues)


def insert(kept: Plan, job: Job, *, now: datetime, queues: Mapping[str, QueueView],
           scenarios: Sequence[int] = SCENARIOS) -> Answer:  # fmt: skip
    """Where `job`, submitted now, would start: see the module doc. `scenarios`
    (MID alone: no range) makes a quick answer for alternatives."""
    order = queue_order(job)
    timeline = kept.timeline()
    queue = queue_of(job.spec.queue, queues)
    strict = queue is None or queue.strategy != BEST_EFFORT_FIFO
    ahead = bisect.bisect_left(timeline.queued, order)
    lane = timeline.lanes.get(job.spec.queue)
    same = bisect.bisect_left(lane.orders, order) if lane is not None else 0
    starts: dict[int, datetime | None] = {}
    reason = None
    for scenario in scenarios:
        not_before: datetime | None = now
        if strict and lane is not None and same:
            last = lane.latest[scenario][same - 1]
            if last is None:
                blocker = lane.keys[lane.first_unplanned[scenario]]
                starts[scenario] = None
                reason = f"the job ahead in its queue has no estimate: {blocker}"
                continue
            not_before = max(now, last)
        found, why = _first_fit(kept, job, scenario, not_before=not_before or now, order=order,
                                queues=queues, strict=strict)  # fmt: skip
        starts[scenario] = found
        reason = reason or why
    mid = starts.get(MID)
    if mid is None:
        return Answer(same + 1, Estimate(reason=reason or "not planned"), ahead)
    known = [s for s in starts.values() if s is not None]
    latest = max(known) if starts.get(HIGH, mid) is not None else None
    return Answer(same + 1, Estimate(mid, min(known), latest), ahead)


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
              nodes: dict[str, NodeView]) -> AdmissionState:  # fmt: skip
        usage = Usage(self.running, self.gpus, dict(self.by_namespace))
        quota = QuotaUse(queues, dict(self.queue_running), dict(self.queue_gpus))
        free = {n: Resources(*f) for n, f in self.free.items()}
        return AdmissionState(limits, usage, quota, Capacity(nodes, free), queues)


@dataclass
class _QueueLine:
    """A queue's queued jobs in the kept plan, in admission order, with the latest
    planned start among the first i+1 of them per scenario (None once one has none)."""

    orders: list[tuple[Any, ...]]
    keys: list[JobKey]
    latest: list[list[datetime | None]]
    first_unplanned: list[int]


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
    events: list[list[tuple[datetime, int, tuple[Any, ...], JobKey]]]
    times: list[list[datetime]]
    placements: list[dict[JobKey, tuple[str, ...]]]
    snapshots: list[list[tuple[int, _Held]]]
    queued: list[tuple[Any, ...]]
    lanes: dict[str, _QueueLine]
    nodes: dict[str, NodeView]
    capacity: Capacity

    @classmethod
    def of(cls, kept: Plan) -> Timeline:
        orders = {key: queue_order(job) for key, job in kept.jobs.items()}
        info: dict[JobKey, Info] = {}
        for key, job in kept.jobs.items():
            need = pod_need(job)
            info[key] = (key.namespace, job.spec.queue, job.spec.total_gpus,
                         (need.gpus, need.cpu, need.memory))  # fmt: skip
        nodes = {n.name: n for n in kept.nodes}
        empty = _Held(free={n.name: [n.allocatable.gpus, n.allocatable.cpu,
                                     n.allocatable.memory] for n in kept.nodes})  # fmt: skip
        events, placements, snapshots = [], [], []
        for scenario in SCENARIOS:
            moves: list[tuple[datetime, int, tuple[Any, ...], JobKey]] = []
            where: dict[JobKey, tuple[str, ...]] = {}
            for key, slots in kept.slots.items():
                slot = slots[scenario]
                if slot.start is None:
                    continue
                where[key] = slot.placement
                # A job holding its slot already is ahead of any job at its instant.
                order = orders[key] if kept.jobs[key].queued else ()
                moves.append((slot.start, 1, order, key))
                if slot.end is not None:
                    moves.append((slot.end, -1, order, key))
            moves.sort()
            held, kept_at = empty.copy(), [(0, empty.copy())]
            for i, (_, sign, _, key) in enumerate(moves, 1):
                held.apply(info[key], where[key], sign)
                if i % CHECKPOINT == 0:
                    kept_at.append((i, held.copy()))
            events.append(moves)
            placements.append(where)
            snapshots.append(kept_at)
        queued = sorted(orders[k] for k in kept.estimates)
        return cls(orders, info, events, [[e[0] for e in m] for m in events], placements,
                   snapshots, queued, _lanes(kept, orders), nodes,
                   Capacity(nodes, {n.name: n.allocatable for n in kept.nodes}))  # fmt: skip


def _lanes(kept: Plan, orders: Mapping[JobKey, tuple[Any, ...]]) -> dict[str, _QueueLine]:
    by_queue: dict[str, list[JobKey]] = {}
    for key in kept.estimates:
        by_queue.setdefault(kept.jobs[key].spec.queue, []).append(key)
    lanes = {}
    for name, keys in by_queue.items():
        keys.sort(key=lambda k: orders[k])
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
        lanes[name] = _QueueLine([orders[k] for k in keys], keys, latest, first)
    return lanes


def _first_fit(kept: Plan, job: Job, scenario: int, *, not_before: datetime,
               order: tuple[Any, ...], queues: Mapping[str, QueueView],
               strict: bool) -> tuple[datetime | None, str | None]:  # fmt: skip
    """The first instant >= not_before of the scenario's timeline at which job fits:
    the holdings at not_before from the nearest snapshot, then instant by instant
    (ends first, then the starts of the jobs ahead of it, then it). A job behind it
    in its StrictFIFO queue waits for it: its start and end are left out."""
    timeline = kept.timeline()
    never = timeline.capacity.never_fits(job)
    if never is not None:
        return None, f"Unschedulable: {never}"
    events, times = timeline.events[scenario], timeline.times[scenario]
    placements, info = timeline.placements[scenario], timeline.info
    snapshots = timeline.snapshots[scenario]
    target = bisect.bisect_left(times, not_before)
    at = bisect.bisect_right([i for i, _ in snapshots], target) - 1
    i, held = snapshots[at][0], snapshots[at][1].copy()
    usable = [n.name for n in timeline.capacity.usable(job)]
    need = pod_need(job)
    wanted: Need = (need.gpus, need.cpu, need.memory)
    mine = job.spec.queue
    t, freed = not_before, True
    while True:
        while i < len(events) and (events[i][0] < t or (events[i][0] == t and (
                events[i][1] < 0 or events[i][2] < order))):  # fmt: skip
            _, sign, other, key = events[i]
            i += 1
            if strict and other > order and info[key][1] == mine and kept.jobs[key].queued:
                continue
            held.apply(info[key], placements[key], sign)
            freed = freed or sign < 0
        if freed and held.may_fit(usable, wanted, job.spec.nodes):
            verdict = held.state(kept.limits, queues, timeline.nodes).verdict(job, now=t)
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


# -- the published plan --------------------------------------------------------------


def to_raw(kept: Plan) -> dict[str, Any]:
    """The plan as the operator publishes it (the API reads it back with `parse`)."""
    return {
        "computedAt": format_time(kept.computed_at),
        "limits": {
            "maxRunning": kept.limits.max_running,
            "gpuBudget": kept.limits.gpu_budget,
            "namespaceGpus": kept.limits.namespace_gpus,
        },
        "nodes": [_node_raw(n) for n in kept.nodes],
        "jobs": [_job_raw(kept, key) for key in kept.jobs],
    }


def parse(raw: Mapping[str, Any]) -> Plan:
    limits = raw.get("limits") or {}
    computed = parse_time(raw.get("computedAt"))
    assert computed is not None
    jobs: dict[JobKey, Job] = {}
    slots: dict[JobKey, tuple[Slot, Slot, Slot]] = {}
    estimates: dict[JobKey, Estimate] = {}
    sources: dict[JobKey, str] = {}
    for entry in raw.get("jobs") or ():
        job = _job_of(entry)
        jobs[job.key] = job
        if entry.get("slots"):
            s = [Slot(parse_time(a), parse_time(b), tuple(p)) for a, b, p in entry["slots"]]
            slots[job.key] = (s[0], s[1], s[2])
        found = Estimate.parse(entry.get("estimate"))
        if found is not None:
            estimates[job.key] = found
        if entry.get("source"):
            sources[job.key] = entry["source"]
    return Plan(computed, Limits(limits.get("maxRunning", 1), limits.get("gpuBudget", 0),
                                 limits.get("namespaceGpus", 0)),
                tuple(_node_of(n) for n in raw.get("nodes") or ()), jobs, slots, estimates,
                sources)  # fmt: skip


def _job_raw(kept: Plan, key: JobKey) -> dict[str, Any]:
    job = kept.jobs[key]
    s = job.spec
    raw: dict[str, Any] = {
        "ns": key.namespace, "name": key.name, "uid": job.uid, "queue": s.queue,
        "priority": s.priority, "gpus": s.gpus, "nodes": s.nodes, "cpu": s.cpu,
        "memory": s.memory, "selector": dict(s.node_selector), "image": s.image,
        "created": format_time(job.status.requeued_at or job.created_at),
        "sequence": job.status.sequence, "placement": list(job.status.placement),
        "holds": job.holds_slot,
    }  # fmt: skip
    if key in kept.slots:
        raw["slots"] = [[format_time(x.start), format_time(x.end), list(x.placement)]
                        for x in kept.slots[key]]  # fmt: skip
    if key in kept.estimates:
        raw["estimate"] = kept.estimates[key].to_raw()
    if key in kept.sources:
        raw["source"] = kept.sources[key]
    return raw


def _job_of(raw: Mapping[str, Any]) -> Job:
    from shunter.domain.model import JobStatus, Phase

    created = parse_time(raw.get("created"))
    assert created is not None
    spec = JobSpec(image=raw.get("image") or "", gpus=int(raw["gpus"]), nodes=int(raw["nodes"]),
                   cpu=raw.get("cpu"), memory=raw.get("memory"), queue=raw["queue"],
                   priority=int(raw["priority"]),
                   node_selector=tuple(sorted((raw.get("selector") or {}).items())))  # fmt: skip
    status = JobStatus(phase=Phase.RUNNING if raw.get("holds") else Phase.QUEUED,
                       sequence=raw.get("sequence"),
                       placement=tuple(raw.get("placement") or ()))  # fmt: skip
    return Job(JobKey(raw["ns"], raw["name"]), Uid(raw.get("uid") or ""), "", created, spec,
               status)  # fmt: skip


def _node_raw(node: NodeView) -> dict[str, Any]:
    a = node.allocatable
    return {"name": node.name, "labels": dict(node.labels), "ready": node.ready,
            "unschedulable": node.unschedulable, "alloc": [a.gpus, a.cpu, a.memory],
            "taints": [[t.key, t.value, t.effect] for t in node.taints]}  # fmt: skip


def _node_of(raw: Mapping[str, Any]) -> NodeView:
    gpus, cpu, memory = raw["alloc"]
    return NodeView(raw["name"], tuple(sorted((raw.get("labels") or {}).items())),
                    tuple(Taint(k, v, e) for k, v, e in raw.get("taints") or ()),
                    Resources(gpus, cpu, memory), bool(raw.get("ready")),
                    bool(raw.get("unschedulable")))  # fmt: skip
