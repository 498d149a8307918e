"""When will a queued job start: the kept plan of the queue (pure).

The one owner of start-time estimates: the operator simulates its queue forward in
time as its passes would admit it, event by event: at each running job's expected
end (or a backoff's end) its GPUs are freed and a pass at that instant admits what
the rules let start then. A job's start in that simulation is its estimate. A
simulated pass uses the pass's own rules, each from its one owner:
- admission (`AdmissionState.verdict`): the global limits, the namespace cap, queue
  limits, quotas and borrowing from a cohort, nodes;
- the order (shunter.domain.ordering, which the operator's pass calls too): the heads
  of all queues merged by `merge_key` (priority, then in a fair cohort the share once
  admitted, then submission); a StrictFIFO queue blocked by its head, a BestEffortFIFO
  queue searched LOOKAHEAD deep; a queue with admission fair sharing
  (halfLifeSeconds) taken in `Sharing.order`: its tenants' decayed usage (World.usage,
  the book's, brought forward in virtual time with the GPUs each tenant holds in the
  plan, as the operator folds it) plus the GPUs they hold, charged as jobs start; the
  idle quota of a fair cohort held for a lower-share head that does not fit
  (`CohortHolds`), which delays a borrower of higher share as in the pass;
- preemption and time slices (World.preempt: shunter.operator.preemption's
  `choose`, then `choose_fair`, then `time_slice`: the pass's own choice, in its
  order): a queue's head that waits, where its queue lets it preempt (lowerPriority,
  reclaiming borrowed cohort quota, above fair share) or slices time
  (timeSliceSeconds), has its victims stopped at that instant: their GPUs are free at
  the end of the grace their stop gives (stopping.grace_of: the latest their Pods are
  gone, so the estimate errs late by the time a trainer takes less), and the head
  starts then. A preempted job goes back to its queue at its place, one whose slice
  ended behind the jobs that waited (requeuedAt), and each runs again for what it had
  left when stopped (a resumed run is kept in the plan as NAME#2, NAME#3...). The pass
  looks again when the next slice ends, and so does the simulation. A job the pass is
  already stopping (phase stopping or cancelling) frees its GPUs at its stop's
  deadline, and one stopped for a preemption or its slice runs again likewise.

One simulation carries these rules (`_Simulation`, one per scenario); it records,
besides the slots, what `replan` needs to restart it part-way (`_Run`).

A job's expected end comes from, in this order:
- its stop's deadline, for a job being stopped;
- its progress report (status.progress: steps left over its reported rate);
- runtimes learned from the mirror for similar jobs (same namespace, image and GPU
  count): the median of past runs (of those that ran longer than this one so far);
- spec.maxRuntimeSeconds (the end at the latest: what Slurm's backfill assumes);
- none: the job's GPUs are never freed in the plan, and whoever waits for them gets
  no time but a reason ("no runtime known for the job ahead: ns/name").

The range comes from running the same simulation three times, with every runtime at
its low, middle and high value (progress: +-10 % of what is left; learned: the 25th,
50th and 90th percentile; maxRuntimeSeconds: a quarter of it, all of it, all of it).

Not simulated (the estimate is a forecast, not a promise): the work a stopped job
loses since its last checkpoint (it resumes with what it had left when stopped); the
checkpoint claims a job may wait for; failures and retries. The plan's own stops go
into the history of the job's next run (NAME#2...), so the anti-loop protection
(`protected`) applies to them as in the operator; a job stopped at an instant is back
in its queue for the next pass at that instant, as the operator's pass makes it
queued. The simulation stops after MAX_STARTS starts, HORIZON of virtual time, or
RERUNS runs again of jobs it stopped beyond the world's own count (jobs of no known
end taking turns never end): the jobs behind get the reason "beyond the plan's
horizon".

`replan` brings the kept plan up to date by appending new queued jobs, each behind
every job of its queue: each scenario restarts from the first instant its run looked
past the end of such a queue (before it, no pass could see them), from the slots the
run holds then. Where `_ruled` holds the plan is simulated again in full ("full"):
in a fair queue a new job may go ahead of older ones (its tenant's score), so a pass
sees it before its run looked past its queue's end; where a queue may preempt or
slice time, a stop moves the end of a job the plan already placed and runs it again
(NAME#2), and a restart would need what the run held besides the slots at that
instant (the stops under way, what each resumed run has left, the tenants' usage
folded to then), which it does not keep; a cohort's merge by share and its holds
are not shown to survive a restart either.

A what-if (shunter.domain.whatif) is answered from the kept plan without simulating: nothing
the hypothetical job does changes the plan before it starts (it holds nothing while
it waits, and the jobs ahead of it in admission order are admitted before it at any
instant), so its start is the first instant of the plan's timeline at which it fits
beside what the plan holds then, once the jobs ahead of it in its queue have started.
That reading takes its queue in the pass's order (the fair order of a queue with
admission fair sharing, by the scores now) and, through a hook like World.preempt,
preempts for it where it would be the head; it does not slice time for it nor read
cohort holds (its answer errs late there); a resumed run holds its GPUs in the
timeline but is not counted ahead of it in its queue.
"""

from __future__ import annotations

import bisect
import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shunter.domain.admission import (
    AdmissionState,
    Limits,
    OrderKey,
    Usage,
    Verdict,
    queue_order,
)
from shunter.domain.capacity import Capacity
from shunter.domain.dependencies import WAITING_REASON as DEPENDENCY
from shunter.domain.fairshare import Entry, Ledger, Tenant, tenant_of
from shunter.domain.model import (
    Attempt,
    Audit,
    Job,
    JobKey,
    JobSpec,
    JobStatus,
    Phase,
    StartRange,
    StopCause,
    Termination,
    TerminationStep,
    Uid,
    format_time,
    parse_time,
)
from shunter.domain.nodes import NodeView, PodUsage, Resources, Taint
from shunter.domain.ordering import (
    LOOKAHEAD,
    CohortHolds,
    MergeKey,
    Sharing,
    count_held,
    fold,
    held_by,
    merge_key,
)
from shunter.domain.queues import (
    BEST_EFFORT_FIFO,
    LOWER_PRIORITY,
    QueueView,
    QuotaUse,
    group_of,
    queue_of,
)

LOW, MID, HIGH = 0, 1, 2
SCENARIOS = (LOW, MID, HIGH)
MAX_STARTS = 20_000
# The runs again of jobs the simulation itself stopped (preempted, or at the end of
# a time slice) it plans beyond the world's jobs: jobs of no known end taking turns
# never end, and would run the plan to MAX_STARTS on every change.
RERUNS = 100
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


@dataclass(frozen=True, slots=True)
class Ends:
    """When an admitted job is expected to end (per scenario), and from what."""

    at: tuple[datetime, datetime, datetime] | None
    source: str  # progress | learned | limit | unknown


def expected_end(job: Job, *, now: datetime, learned: Learned) -> Ends:
    """A running (or planned) job's expected end: see the module doc for the order."""
    stop = job.status.termination
    if job.phase in (Phase.STOPPING, Phase.CANCELLING) and stop is not None:
        began = stop.graceful_delete_at or stop.requested_at
        deadline = stop.checkpoint_by
        if deadline is None and began is not None and stop.grace is not None:
            deadline = began + timedelta(seconds=stop.grace)
        if deadline is not None:  # its Pods are gone by the end of its grace at the latest
            return Ends((max(now, deadline),) * 3, "stopping")
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


@dataclass(frozen=True, slots=True)
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
    def shown(cls, status: JobStatus) -> Estimate | None:
        """The estimate a job's status shows (estimatedStart, estimatedStartRange)."""
        r = status.estimated_range
        if status.estimated_start is None and r is None:
            return None
        if r is None:
            return cls(status.estimated_start)
        return cls(status.estimated_start, r.earliest, r.latest, r.reason)

    @classmethod
    def waiting_for_dependencies(cls, message: str) -> Estimate:
        """None for a job waiting for its dependencies (`message`: what it waits for):
        it holds no place in the plan until they are met."""
        return cls(reason=f"waits for its dependencies: {message}")

    def range(self) -> StartRange:
        """As status.estimatedStartRange shows it."""
        return StartRange(self.earliest, self.latest, self.reason)

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


@dataclass(frozen=True, slots=True)
class Slot:
    """A job in one scenario of the plan: when it holds its GPUs, and where."""

    start: datetime | None
    end: datetime | None  # None: holds them past the plan
    placement: tuple[str, ...] = ()


# (head, admission state, jobs holding a slot, now) -> [(victim, grace seconds)]
@dataclass(frozen=True)
class Stops:
    """What a pass stops for a waiting head: the victims, each with the grace its
    stop gives; whether they go back behind the jobs that waited (a time slice's end)
    or at their place (a preemption); when to look again (the next slice's end)."""

    victims: tuple[tuple[Job, int], ...] = ()
    behind: bool = False
    wake: datetime | None = None


Preempter = Callable[[Job, AdmissionState, Sequence[Job], datetime], Stops]


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
    # The fair queues' decayed usage as the last pass folded it (the book's; a queue
    # missing here starts from the usage in its status).
    usage: Mapping[str, Ledger] = field(default_factory=dict)
    # The victims (and the grace of each one's stop) a pass would preempt for a head
    # that waits, in the state given (shunter.operator.preemption.for_estimates);
    # None: no preemption in the plan.
    preempt: Preempter | None = None


@dataclass
class Plan:
    """The kept plan: every job's slots per scenario and the queued jobs' estimates
    (`placed`: of those the plan places; the rest wait for their dependencies)."""

    computed_at: datetime
    limits: Limits
    nodes: tuple[NodeView, ...]  # allocatable net of foreign Pods
    jobs: dict[JobKey, Job]
    slots: dict[JobKey, tuple[Slot, Slot, Slot]]
    estimates: dict[JobKey, Estimate]
    sources: dict[JobKey, str] = field(default_factory=dict)
    # When it was last brought up to date (`replan`: new jobs placed into it); None:
    # computed_at. What the published plan's version is.
    made_at: datetime | None = None
    # The what-if's index of this plan (shunter.domain.whatif builds it once).
    index: Any = field(default=None, repr=False, compare=False)
    # What the operator keeps to bring the plan up to date (`replan`); not published.
    basis: _Basis | None = field(default=None, repr=False, compare=False)
    runs: tuple[_Run, ...] = field(default=(), repr=False, compare=False)
    encoding: _Encoding | None = field(default=None, repr=False, compare=False)

    def estimate(self, key: JobKey) -> Estimate | None:
        return self.estimates.get(key)

    def placed(self) -> list[JobKey]:
        """The queued jobs the plan gives a place: those with an estimate, but not the
        ones waiting for their dependencies (an estimate saying so, no job, no slot)."""
        jobs = self.jobs
        return [key for key in self.estimates if key in jobs]

    @property
    def version(self) -> datetime:
        """What the published plan is known by: the last time it was brought up to date."""
        return self.made_at or self.computed_at


def plan(world: World, *, learned: Learned, max_starts: int = MAX_STARTS) -> Plan:
    """Simulate the three scenarios; each queued job's estimate and range. A job that
    waits for its dependencies holds no place (it blocks no one): it is left out, with
    that reason, since when they will be met is not the queue's to know."""
    basis, held = _split(world)
    nodes = _net_nodes(world.nodes, world.foreign)
    sources: dict[JobKey, str] = {}
    runs, extra = _simulate(basis, nodes, learned=learned, max_starts=max_starts,
                            sources=sources)  # fmt: skip
    return _assemble(basis, held, nodes, runs, sources, _Basis(basis, learned, max_starts),
                     extra)  # fmt: skip


def replan(kept: Plan | None, world: World, *, learned: Learned,
           max_starts: int = MAX_STARTS) -> tuple[Plan, str]:  # fmt: skip
    """The kept plan brought up to date with `world`, and how: "kept" (nothing the
    plan reads changed), "appended" (only new queued jobs, each behind every job of its
    queue: each scenario is replayed from the first instant its simulation looked past
    the end of such a queue, before which nothing differs), or "full" (simulated
    again from `world`). A kept or appended plan stays as of the kept plan's time; it
    is simulated again in full once older than REBASE, or when the kept plan has a
    start or an end between its time and now (which may not have come true)."""
    found = _appended(kept, world, learned, max_starts)
    if found is None:
        return plan(world, learned=learned, max_starts=max_starts), "full"
    assert kept is not None
    assert kept.basis is not None
    basis, new = found
    if not new and basis.waiting == kept.basis.world.waiting:
        return kept, "kept"
    held = [j for j in world.waiting if _held(j)]
    sources = dict(kept.sources)
    jobs = dict(kept.jobs)  # the kept plan's own objects for every unchanged job
    jobs.update((j.key, j) for j in new)
    runs = []
    changed: set[JobKey] = {j.key for j in new}
    for scenario, old in enumerate(kept.runs):
        found_run = _replay(basis, kept, old, new, scenario, jobs, learned=learned,
                            max_starts=max_starts, sources=sources)  # fmt: skip
        if found_run is None:
            return plan(world, learned=learned, max_starts=max_starts), "full"
        runs.append(found_run[0])
        changed |= found_run[1]
    again = _update(kept, jobs, held, tuple(runs), changed, sources,
                    _Basis(basis, learned, max_starts))  # fmt: skip
    again.made_at, again.encoding = world.now, kept.encoding
    return again, "appended"


def _update(kept: Plan, jobs: dict[JobKey, Job], held: Sequence[Job], runs: tuple[_Run, ...],
            changed: set[JobKey], sources: dict[JobKey, str], basis: _Basis) -> Plan:  # fmt: skip
    """_assemble for a replay: the kept plan's estimates and slots, but for the jobs the
    replay may have changed (those it ran again, and the new ones)."""
    none = Slot(None, None)
    estimates = {k: e for k, e in kept.estimates.items() if k in jobs}  # held ones: below
    slots = dict(kept.slots)
    reasons = runs[MID].reasons
    low, mid, high = (r.slots for r in runs)
    for key in changed:
        mine = (low.get(key, none), mid.get(key, none), high.get(key, none))
        if mine == (none, none, none):
            slots.pop(key, None)
        else:
            slots[key] = mine
        if key not in jobs or jobs[key].holds_slot:
            continue
        estimates[key] = _estimate(mine, reasons.get(key))
    for job in held:
        estimates[job.key] = Estimate.waiting_for_dependencies(job.status.message or "")
    return Plan(kept.computed_at, kept.limits, kept.nodes, jobs, slots, estimates, sources,
                basis=basis, runs=runs)  # fmt: skip


def _estimate(mine: tuple[Slot, Slot, Slot], reason: str | None) -> Estimate:
    if mine[MID].start is None:
        return Estimate(reason=reason or "not planned")
    starts = [s.start for s in mine if s.start is not None]
    latest = None if mine[HIGH].start is None else max(starts)
    return Estimate(mine[MID].start, min(starts), latest)


def _held(job: Job) -> bool:
    return bool(job.spec.depends_on) and job.status.reason == DEPENDENCY


def _split(world: World) -> tuple[World, list[Job]]:
    held = [j for j in world.waiting if _held(j)]
    if held:
        world = replace(world, waiting=[j for j in world.waiting if not _held(j)])
    return world, held


def _assemble(world: World, held: Sequence[Job], nodes: tuple[NodeView, ...],
              runs: tuple[_Run, ...], sources: dict[JobKey, str], basis: _Basis,
              extra: Mapping[JobKey, Job] | None = None) -> Plan:  # fmt: skip
    none = Slot(None, None)
    estimates: dict[JobKey, Estimate] = {}
    reasons = runs[MID].reasons
    low, mid, high = (r.slots for r in runs)
    for job in world.waiting:
        mine = (low.get(job.key, none), mid.get(job.key, none), high.get(job.key, none))
        estimates[job.key] = _estimate(mine, reasons.get(job.key))
    for job in held:
        estimates[job.key] = Estimate.waiting_for_dependencies(job.status.message or "")
    jobs = {j.key: j for j in (*world.active, *world.waiting, *(extra or {}).values())}
    full = {k: (low.get(k, none), mid.get(k, none), high.get(k, none))
            for k in (*low, *mid, *high)}  # fmt: skip
    return Plan(world.now, world.limits, nodes, jobs, full, estimates, sources, basis=basis,
                runs=runs)  # fmt: skip


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


@dataclass(frozen=True)
class _Basis:
    """What a plan was simulated from (its queued jobs without the held ones)."""

    world: World
    learned: Learned
    max_starts: int


@dataclass
class _Run:
    """One scenario's simulation, with what a replay from an instant needs."""

    slots: dict[JobKey, Slot]
    reasons: dict[JobKey, str]
    # Per queue: the first pass instant that looked past its last job (a job appended
    # there is first looked at then; before it, the simulation cannot differ).
    reached: dict[str, datetime] = field(default_factory=dict)
    removed: dict[JobKey, datetime] = field(default_factory=dict)  # "never", when
    wakes: list[tuple[datetime, datetime]] = field(default_factory=list)  # (asked at, wake)
    left: str | None = None  # the reason the jobs left at the end got


# -- the simulation with the pass's ordering rules and preemption ------------------


@dataclass
class _RuleLane:
    """One queue's waiting jobs in the simulation: in admission order, or (a queue
    with admission fair sharing) per tenant in admission order, for Sharing.order."""

    queue: QueueView | None
    best_effort: bool
    fair: bool
    entries: list[Entry] = field(default_factory=list)
    tenants: dict[Tenant, list[Entry]] = field(default_factory=dict)
    count: int = 0

    def _list(self, job: Job) -> list[Entry]:
        return self.tenants.setdefault(tenant_of(job), []) if self.fair else self.entries

    def add(self, job: Job, order: OrderKey, *, sort: bool = True) -> None:
        """`sort` False: appended, the caller sorts (`sorted`) once all are in."""
        if sort:
            bisect.insort(self._list(job), (order, job.key))
        else:
            self._list(job).append((order, job.key))
        self.count += 1

    def sorted(self) -> None:
        for entries in (self.entries, *self.tenants.values()):
            entries.sort()

    def remove(self, gone: Iterable[tuple[Job, OrderKey]]) -> None:
        """Take out the jobs a pass admitted or dropped: mostly the first ones, so a
        list loses its first k at once (one move of the rest, not one per job)."""
        found: dict[int, tuple[list[Entry], list[int]]] = {}
        for job, order in gone:
            entries = self._list(job)
            i = bisect.bisect_left(entries, (order, job.key))
            if i < len(entries) and entries[i][1] == job.key:
                found.setdefault(id(entries), (entries, []))[1].append(i)
                self.count -= 1
        for entries, indexes in found.values():
            indexes.sort()
            if indexes[-1] == len(indexes) - 1:  # the first k
                del entries[: len(indexes)]
                continue
            for i in reversed(indexes):
                del entries[i]

    def order(self, jobs: Mapping[JobKey, Job], sharing: Sharing) -> Iterator[Job]:
        """The queue's waiting jobs in the order a pass takes them."""
        if self.fair and self.queue is not None:
            return (jobs[key] for key in sharing.order(self.queue, self.tenants))
        return (jobs[key] for _, key in self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self.tenants.clear()
        self.count = 0


# An admitted job's planned end: (when, its number, the job, its placement); None
# when no runtime is known (it holds its GPUs past the plan).
_End = tuple[datetime | None, int, Job, tuple[str, ...]]


class _Simulation:
    """One scenario of the plan: passes at every instant something ends (or a backoff
    ends), with the rules of shunter.domain.admission and shunter.domain.ordering.
    Started from the world's instant (`of`), or from an instant of a kept run with
    new jobs at the end of their queues (`resumed`)."""

    def __init__(self, world: World, state: AdmissionState, scenario: int, *, run: _Run,
                 at: datetime, learned: Learned, sources: dict[JobKey, str]) -> None:  # fmt: skip
        self.world, self.scenario, self.learned, self.sources = world, scenario, learned, sources
        self.now, self.t, self.state, self.run = world.now, at, state, run
        self.slots, self.reasons = run.slots, run.reasons
        self.extra: dict[JobKey, Job] = {}  # runs again of jobs it stopped (NAME#2...)
        self.reruns: dict[JobKey, int] = {}  # per job of the world: its last run's number
        self.max_reruns = RERUNS + len(world.active) + len(world.waiting)
        self.back: list[Job] = []  # stopped at the instant being applied, to requeue
        self.ends: list[tuple[datetime, int, Job, tuple[str, ...]]] = []  # planned (heap)
        self.stale: set[int] = set()  # ends moved by a stop (their numbers)
        self.forever: dict[JobKey, Job] = {}  # admitted, no runtime known
        # The current end of each admitted job (only when a queue may preempt).
        self.ending: dict[JobKey, _End] = {}
        # Stopping victims: the runtime they have left, and whether they go back behind.
        self.requeue: dict[JobKey, tuple[float | None, bool]] = {}
        self.left: dict[JobKey, float | None] = {}  # a resumed run's runtime
        self.numbered = 0
        self.wakes = [w for _, w in run.wakes if w > at]
        self.seen: set[JobKey] = set()
        self.starts = 0
        self.ending_at = at  # the instant of the ends being applied
        fair = {n: q for n, q in world.queues.items() if q.half_life}
        self.fair = fair
        self.usage: dict[str, Ledger] = {
            n: world.usage.get(n) or q.usage or Ledger() for n, q in fair.items()
        }  # fmt: skip
        self.folded = self.now
        self.held: dict[str, dict[Tenant, int]] = {}
        # The jobs holding a slot, as a pass would see them (only when a queue may
        # preempt: a simulated start is a job running since it started).
        self.preempting = world.preempt is not None and any(
            _may_preempt(q) for q in world.queues.values()
        )  # fmt: skip
        self.running = _Running(world.queues)
        self.jobs: dict[JobKey, Job] = {}
        self.lanes: dict[str, _RuleLane] = {}
        self.orders: dict[JobKey, OrderKey] = {}

    @classmethod
    def of(cls, world: World, nodes: Sequence[NodeView], scenario: int, *, learned: Learned,
           sources: dict[JobKey, str]) -> _Simulation:  # fmt: skip
        """From the world's instant: the admitted jobs hold their slots until their
        expected end (a stopped one goes back to its queue), the queued ones wait."""
        now = world.now
        state = _state(world.limits, world.queues, nodes, world.active)
        sim = cls(world, state, scenario, run=_Run({}, {}), at=now, learned=learned,
                  sources=sources)  # fmt: skip
        if sim.fair:
            sim.held = held_by(world.active)
        for job in world.active:
            found = expected_end(job, now=now, learned=learned)
            sources.setdefault(job.key, found.source)
            end = None if found.at is None else found.at[scenario]
            sim.slots[job.key] = Slot(job.status.admitted_at or now, end, job.status.placement)
            sim._plan_end(job, end, job.status.placement)
            if sim.preempting:
                sim.running.put(job)
            cause = job.status.termination.cause if job.status.termination else None
            if job.phase is Phase.STOPPING and cause in _BACK and end is not None:
                left = _left(job, now=now, learned=learned, scenario=scenario)
                sim.requeue[job.key] = (left, cause is StopCause.TIME_SLICE)
        sim._enqueue_all(world.waiting)
        return sim

    @classmethod
    def resumed(cls, world: World, nodes: Sequence[NodeView], scenario: int, old: _Run,
                at: datetime, jobs: Mapping[JobKey, Job], *, learned: Learned,
                sources: dict[JobKey, str]) -> tuple[_Simulation, set[JobKey]]:  # fmt: skip
        """From instant `at` of the kept run `old` of a world where `_ruled` does not
        hold: what the run did before `at` is kept (the slots started, the jobs
        dropped, the backoffs asked for), the jobs holding GPUs then hold them still,
        and every queued job not yet started or dropped waits again. Also the jobs
        whose slots the rest of the run may change."""
        assert not _ruled(world)  # those are simulated in full (module doc)
        never = datetime.max.replace(tzinfo=UTC)
        run = _Run({}, {k: r for k, r in old.reasons.items() if old.removed.get(k, never) < at},
                   {q: t for q, t in old.reached.items() if t < at},
                   {k: t for k, t in old.removed.items() if t < at},
                   [(t, w) for t, w in old.wakes if t < at])  # fmt: skip
        state = _state(world.limits, world.queues, nodes, ())
        sim = cls(world, state, scenario, run=run, at=at, learned=learned, sources=sources)
        active = {j.key for j in world.active}
        for key, slot in old.slots.items():  # the running jobs, then in order of start
            if key not in active and (slot.start is None or slot.start >= at):
                continue
            run.slots[key] = slot
            sim.starts += key not in active
            if slot.end is None or slot.end > at:  # ends at `at` are applied before it
                state.take(jobs[key], slot.placement)
                sim._plan_end(jobs[key], slot.end, slot.placement)
        sim._enqueue_all(j for j in world.waiting
                         if j.key not in run.slots and j.key not in run.removed)  # fmt: skip
        changed = set(sim.jobs)
        changed.update(k for k in old.slots if k not in run.slots)
        return sim, changed

    def _enqueue_all(self, waiting: Iterable[Job]) -> None:
        for job in waiting:
            self._enqueue(job, sort=False)
        for lane in self.lanes.values():
            lane.sorted()

    def _lane(self, name: str) -> _RuleLane:
        lane = self.lanes.get(name)
        if lane is None:
            queue = queue_of(name, self.world.queues)
            best_effort = queue is not None and queue.strategy == BEST_EFFORT_FIFO
            fair = queue is not None and bool(queue.half_life)
            lane = self.lanes[name] = _RuleLane(queue, best_effort, fair)
        return lane

    def _enqueue(self, job: Job, *, sort: bool = True) -> None:
        self.jobs[job.key] = job
        order = self.orders[job.key] = queue_order(job)
        self._lane(job.spec.queue).add(job, order, sort=sort)

    def _plan_end(self, job: Job, end: datetime | None, placement: tuple[str, ...]) -> None:
        self.numbered += 1
        if end is not None:
            heapq.heappush(self.ends, (end, self.numbered, job, placement))
        else:
            self.forever[job.key] = job
        if self.preempting:
            self.ending[job.key] = (end, self.numbered, job, placement)

    def waiting(self) -> bool:
        return any(lane.count for lane in self.lanes.values()) or bool(self.requeue)

    def go(self, max_starts: int) -> _Run:
        """The passes from the instant it starts at, each at the next end or wake."""
        t = self.t
        while True:
            self._pass(t)
            if self.back:
                # Jobs whose stop ended at t are in their queue for the next pass, as
                # in the operator: the pass that finds a victim's Pods gone makes it
                # queued, and starts its preemptor with the GPUs it gave back.
                for job in self.back:
                    self._enqueue(job)
                self.back.clear()
                self._pass(t)
            if not self.waiting():
                break
            upcoming = [e for e in (self._next_end(), min(self.wakes, default=None))
                        if e is not None]  # fmt: skip
            if not upcoming:
                self._leave(_unknown_reason(list(self.forever.values())))
                break
            t = min(upcoming)
            if self.starts >= max_starts or t - self.now > HORIZON:
                self._leave(f"beyond the plan's horizon ({max_starts} starts or"
                            f" {HORIZON.days} days ahead)")  # fmt: skip
                break
            if len(self.extra) > self.max_reruns:
                self._leave(f"beyond the plan's horizon ({self.max_reruns} runs again of"
                            " preempted or time-sliced jobs)")  # fmt: skip
                break
            self.wakes[:] = [w for w in self.wakes if w > t]
            self._fold(t)  # what was held until t, before the ends at t
            self.ending_at = t
            while self.ends and self.ends[0][0] <= t:
                _, number, job, placement = heapq.heappop(self.ends)
                if number in self.stale:
                    self.stale.discard(number)
                else:
                    self._end(job, placement)
        return self.run

    def _next_end(self) -> datetime | None:
        while self.ends and self.ends[0][1] in self.stale:
            self.stale.discard(heapq.heappop(self.ends)[1])  # moved by a stop
        return self.ends[0][0] if self.ends else None

    def _fold(self, t: datetime) -> None:
        """The fair queues' decayed usage brought to t, as a pass folds it."""
        if self.fair and t > self.folded:
            self.usage = fold(self.usage, self.fair, self.held, t)
            self.folded = t

    def _pass(self, t: datetime) -> None:
        """What a pass at t admits, the queues' jobs taken as the pass takes them
        (shunter.operator.planning._Walk): preempting for a head that waits, where its
        queue allows it."""
        state = self.state
        sharing = Sharing(self.usage, self.held)
        holds = CohortHolds(state.quota, state.queues)
        heap: list[tuple[MergeKey, str, Job]] = []
        orders: dict[str, Iterator[Job]] = {}
        positions: dict[str, int] = {}
        for name, lane in self.lanes.items():
            if not lane.count:
                continue
            jobs = orders[name] = lane.order(self.jobs, sharing)
            first = next(jobs, None)
            if first is not None:
                positions[name] = 0
                heap.append((merge_key(first, state.quota), name, first))
        heapq.heapify(heap)
        gone: list[Job] = []
        most = _most_free(state)
        while heap:
            _, name, job = heapq.heappop(heap)
            lane = self.lanes[name]
            verdict = _verdict(state, job, t, most, self.seen)
            if verdict.kind == "admit":
                held = holds.blocks(job)
                if held is not None:
                    verdict = Verdict("wait", "Queued", held)
            more = True
            if verdict.kind == "admit":
                free = state.capacity.free
                fullest = any(free[n].gpus == most for n in verdict.placement if n in free)
                self._start(job, verdict.placement, t)
                sharing.charge(job)
                if fullest:  # only a node that had the most free can lower it
                    most = _most_free(state)
                gone.append(job)
            elif verdict.kind == "never":
                self.reasons[job.key] = verdict.message
                self.run.removed[job.key] = t
                gone.append(job)
            elif verdict.kind == "backoff" and job.status.not_before is not None:
                self._wake(t, job.status.not_before)
            elif verdict.kind == "wait":
                positions[name] += 1
                if positions[name] == 1 and verdict.reason == "Queued":
                    self._preempt(job, t)
                    holds.hold(job)
                # A StrictFIFO queue is blocked by its head; BestEffortFIFO looks on.
                more = lane.best_effort and positions[name] <= LOOKAHEAD
            if more:
                following = next(orders[name], None)
                if following is not None:
                    heapq.heappush(heap, (merge_key(following, state.quota), name, following))
                elif name not in self.run.reached:  # looked past its last job
                    self.run.reached[name] = t
        by_lane: dict[str, list[tuple[Job, OrderKey]]] = {}
        for job in gone:
            by_lane.setdefault(job.spec.queue, []).append((job, self.orders.pop(job.key)))
            del self.jobs[job.key]
        for name, out in by_lane.items():
            self.lanes[name].remove(out)

    def _start(self, job: Job, placement: tuple[str, ...], t: datetime) -> None:
        self.state.take(job, placement)
        if self.fair:
            count_held(self.held, job, 1)
        if self.left and job.key in self.left:
            seconds = self.left.pop(job.key)
            self.sources[job.key] = "preempted"
        else:
            runtime = _planned_runtime(job, self.learned, self.sources)
            seconds = None if runtime is None else runtime[self.scenario]
        end = None if seconds is None else t + timedelta(seconds=seconds)
        self.slots[job.key] = Slot(t, end, placement)
        self._plan_end(job, end, placement)
        if self.preempting:
            self.running.put(replace(job, status=replace(
                job.status, phase=Phase.RUNNING, placement=placement, admitted_at=t,
                running_since=t)))  # fmt: skip
        self.starts += 1

    def _end(self, job: Job, placement: tuple[str, ...]) -> None:
        """A job's Pods are gone: its slot, quota and GPUs are free; a stopped one goes
        back to its queue for what it had left."""
        key = job.key
        _give(self.state, job, placement)
        if self.fair:
            count_held(self.held, job, -1)
        if self.preempting:
            self.running.pop(key)
            self.ending.pop(key, None)
        if self.requeue and key in self.requeue:
            left, behind = self.requeue.pop(key)
            again = _resumed(job, self.reruns, at=self.ending_at, behind=behind)
            self.extra[again.key] = again
            self.left[again.key] = left
            self.back.append(again)

    def _preempt(self, head: Job, t: datetime) -> None:
        """The pass preempts for a waiting head where its queue allows it
        (shunter.operator.preemption, through World.preempt): each victim's Pods are
        gone at the end of the grace its stop gives, and it goes back to its queue."""
        queue = queue_of(head.spec.queue, self.world.queues)
        if not self.preempting or queue is None or not _may_preempt(queue):
            return
        assert self.world.preempt is not None
        stops = self.world.preempt(head, self.state, self.running.near(head), t)
        if stops.wake is not None and stops.wake > t:
            self._wake(t, stops.wake)  # the pass looks again then (a slice ends)
        cause = StopCause.TIME_SLICE if stops.behind else StopCause.PREEMPT
        for victim, grace in stops.victims:
            planned = self.ending.get(victim.key)
            if planned is None:
                continue
            end, number, job, placement = planned
            stop = t + timedelta(seconds=grace)
            if end is not None and end <= stop:
                continue  # it ends on its own first
            if end is None:
                del self.forever[job.key]
            else:
                self.stale.add(number)
            left = None if end is None else (end - t).total_seconds()
            self.requeue[victim.key] = (left, stops.behind)
            self.slots[victim.key] = replace(self.slots[victim.key], end=stop)
            self._plan_end(job, stop, placement)
            termination = Termination(TerminationStep.GRACEFUL, requested_at=t,
                                       cause=cause, grace=grace)  # fmt: skip
            self.running.put(replace(victim, status=replace(
                victim.status, phase=Phase.STOPPING, termination=termination)))  # fmt: skip

    def _wake(self, t: datetime, at: datetime) -> None:
        """A pass at t asks to look again at `at` (a backoff's or a slice's end)."""
        self.wakes.append(at)
        self.run.wakes.append((t, at))

    def _leave(self, why: str) -> None:
        self.run.left = why
        for lane in self.lanes.values():
            for entries in (lane.entries, *lane.tenants.values()):
                for _, key in entries:
                    self.reasons.setdefault(key, why)
            lane.clear()
        self.requeue.clear()


class _Running:
    """The jobs holding a slot as a pass would see them, by key and by the group its
    victim searches look in (queues.group_of). A head's search is given its group's
    jobs and every job being stopped anywhere: all that the operator's choice reads
    (preemption.for_estimates: the group, and the stops for others, which count as
    gone), without the simulation listing every running job for every head."""

    def __init__(self, queues: Mapping[str, QueueView]) -> None:
        self.queues = queues
        self.jobs: dict[JobKey, Job] = {}
        self.groups: dict[tuple[str, str], dict[JobKey, Job]] = {}
        self.stopping: dict[JobKey, Job] = {}

    def put(self, job: Job) -> None:
        self.pop(job.key)
        self.jobs[job.key] = job
        self.groups.setdefault(group_of(job, self.queues), {})[job.key] = job
        if job.phase is Phase.STOPPING:
            self.stopping[job.key] = job

    def pop(self, key: JobKey) -> None:
        job = self.jobs.pop(key, None)
        if job is not None:
            del self.groups[group_of(job, self.queues)][key]
            self.stopping.pop(key, None)

    def near(self, head: Job) -> list[Job]:
        near = self.groups.get(group_of(head, self.queues), {})
        return [*near.values(), *(j for k, j in self.stopping.items() if k not in near)]


def _may_preempt(queue: QueueView) -> bool:
    """The queue's head may preempt: its own lower priorities, borrowed GPUs of its
    cohort (reclaim), or above-fair-share members (shunter.operator.preemption)."""
    return queue.preemption == LOWER_PRIORITY or bool(queue.cohort) or bool(queue.time_slice)


# Stops after which a job goes back to its queue.
_BACK = (StopCause.PREEMPT, StopCause.TIME_SLICE)


def _left(job: Job, *, now: datetime, learned: Learned, scenario: int) -> float | None:
    """What a job being preempted now has left to run once it starts again."""
    running = replace(job, status=replace(job.status, phase=Phase.RUNNING, termination=None))
    found = expected_end(running, now=now, learned=learned)
    return None if found.at is None else (found.at[scenario] - now).total_seconds()


def _resumed(job: Job, reruns: dict[JobKey, int], *, at: datetime, behind: bool) -> Job:
    """A stopped job back in its queue, under a key of its own in the plan (its
    first run keeps the job's): NAME#2, NAME#3... (`reruns` counts them per job); at
    its place after a preemption, behind the jobs that waited (from `at`) after its
    time slice. The stop is in its history, as the operator records it, so the
    anti-loop rules (shunter.operator.preemption.protected) see it."""
    base = JobKey(job.key.namespace, job.key.name.split("#", 1)[0])
    n = reruns[base] = reruns.get(base, 1) + 1
    reason = "TimeSliced" if behind else "Preempted"
    stop = Attempt(len(job.status.history) + 1, reason=reason,
                   started_at=job.status.running_since, finished_at=at)  # fmt: skip
    status = replace(job.status, phase=Phase.QUEUED, placement=(), termination=None,
                     reason=reason, not_before=None, history=(*job.status.history, stop),
                     requeued_at=at if behind else job.status.requeued_at)  # fmt: skip
    return replace(job, key=JobKey(job.key.namespace, f"{base.name}#{n}"), status=status)


_Resumed = dict[JobKey, Job]  # a stopped job's runs after its stop: NAME#2...


def _ruled(world: World) -> bool:
    """Whether a rule applies under which `replan` simulates in full rather than
    append (module doc): a queue with admission fair sharing or in a cohort (the fair
    order, the merge by share, the cohort holds), a queue that may preempt or slice
    time (with World.preempt), or a job stopped for a preemption or its slice that
    goes back to its queue."""
    if any(q.half_life or q.cohort for q in world.queues.values()):
        return True
    if world.preempt is not None and any(_may_preempt(q) for q in world.queues.values()):
        return True
    return any(j.phase is Phase.STOPPING and j.status.termination is not None
               and j.status.termination.cause in _BACK for j in world.active)  # fmt: skip


def _simulate(world: World, nodes: Sequence[NodeView], *, learned: Learned, max_starts: int,
              sources: dict[JobKey, str]) -> tuple[tuple[_Run, ...], _Resumed]:  # fmt: skip
    """The three scenarios from the world's instant, and the resumed runs of stopped
    jobs."""
    runs: list[_Run] = []
    extra: _Resumed = {}
    for scenario in SCENARIOS:
        simulation = _Simulation.of(world, nodes, scenario, learned=learned, sources=sources)
        runs.append(simulation.go(max_starts))
        extra.update(simulation.extra)
    return tuple(runs), extra


# -- bringing the kept plan up to date --------------------------------------------------

REBASE = timedelta(seconds=60)  # a kept plan is simulated again in full when older
# A running job's new progress report changes the plan only when it moves the job's
# expected end by more than this share of the time left (at least SLACK).
MOVED_END = 0.1
SLACK = timedelta(seconds=60)


def _appended(kept: Plan | None, world: World, learned: Learned,
              max_starts: int) -> tuple[World, list[Job]] | None:  # fmt: skip
    """The world as the kept plan holds it (a job whose change the plan does not read
    keeps the plan's version) and the queued jobs appended at the end of their queue;
    None if the kept plan cannot be brought up to date but by a full simulation."""
    if kept is None or kept.basis is None or len(kept.runs) != len(SCENARIOS):
        return None
    old = kept.basis.world
    if _ruled(world) or _ruled(old):
        return None
    if (kept.basis.learned is not learned or kept.basis.max_starts != max_starts
            or world.now - old.now > REBASE or world.now < old.now
            or _next_event(kept) <= world.now or world.limits != old.limits
            or world.queues != old.queues or world.nodes != old.nodes
            or world.foreign != old.foreign):  # fmt: skip
        return None
    if len(world.active) != len(old.active):
        return None
    active = []
    for job, kept_job in zip(world.active, old.active, strict=True):
        if not _same(kept_job, job, now=old.now, learned=learned):
            return None
        active.append(kept_job)
    before: dict[JobKey, Job | None] = {j.key: j for j in old.waiting}
    waiting: list[Job] = []
    new: list[Job] = []
    last: dict[str, OrderKey] = {}
    for job in old.waiting:
        order = queue_order(job)
        if job.spec.queue not in last or last[job.spec.queue] < order:
            last[job.spec.queue] = order
    for job in world.waiting:
        if _held(job):
            continue
        was = before.pop(job.key, None)
        if was is None:
            if job.spec.queue not in last or queue_order(job) <= last[job.spec.queue]:
                return None  # a new queue, or not behind every job of its queue
            new.append(job)
            waiting.append(job)
        elif _same(was, job, now=old.now, learned=learned):
            waiting.append(was)
        else:
            return None
    if before:
        return None  # a queued job left the queue (admitted, cancelled, held)
    return replace(old, active=active, waiting=waiting), new


def _next_event(kept: Plan) -> datetime:
    """The kept plan's first start or end after its time (any scenario)."""
    now, found = kept.computed_at, datetime.max.replace(tzinfo=UTC)
    for run in kept.runs:
        for slot in run.slots.values():
            for at in (slot.start, slot.end):
                if at is not None and now < at < found:
                    found = at
    return found


def _same(was: Job, job: Job, *, now: datetime, learned: Learned) -> bool:
    """Whether the plan reads the same from job as from was: a status write of its own
    estimate, queue position or message does not count, nor a progress report that
    moves the job's expected end by at most MOVED_END of the time left (SLACK)."""
    if was is job:
        return True
    if (was.key, was.uid, was.created_at, was.spec, was.member) != (
            job.key, job.uid, job.created_at, job.spec, job.member):  # fmt: skip
        return False
    if _read(was.status) != _read(job.status):
        return False
    if was.status.progress == job.status.progress or not job.holds_slot:
        return True
    before = expected_end(was, now=now, learned=learned).at
    after = expected_end(job, now=now, learned=learned).at
    if before is None or after is None:
        return before is after
    return all(abs(a - b) <= max(SLACK, MOVED_END * (b - now))
               for a, b in zip(after, before, strict=True))  # fmt: skip


def _read(status: JobStatus) -> JobStatus:
    """What of a status the plan reads (of a running job's progress: see `_same`)."""
    return replace(status, queue_position=None, message=None, progress=None, checkpoint=None,
                   estimated_start=None, estimated_range=None)  # fmt: skip


def _replay(world: World, kept: Plan, old: _Run, new: Sequence[Job], scenario: int,
            jobs: Mapping[JobKey, Job], *,
            learned: Learned, max_starts: int,
            sources: dict[JobKey, str]) -> tuple[_Run, set[JobKey]] | None:  # fmt: skip
    """One scenario of the kept plan with the new jobs appended: the passes before the
    first instant a pass looked past the end of one of their queues are kept, the rest
    run again from the state the kept plan holds then (`_Simulation.resumed`); with
    the jobs the replay may have changed. None: a full simulation."""
    never = datetime.max.replace(tzinfo=UTC)
    at = min((old.reached.get(job.spec.queue, never) for job in new), default=never)
    if at == never:  # never looked at: they get the reason the rest of their queue got
        if old.left is None:
            return None
        run = replace(old, slots=dict(old.slots), reasons=dict(old.reasons))
        for job in new:
            run.reasons[job.key] = old.left
        return run, set()
    if at <= world.now:
        return None
    simulation, changed = _Simulation.resumed(world, kept.nodes, scenario, old, at, jobs,
                                              learned=learned, sources=sources)  # fmt: skip
    return simulation.go(max_starts), changed


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


# -- the published plan --------------------------------------------------------------
#
# Two parts, columns of equal length rather than an object per job (a tenth of the
# size at 10,000 jobs; most strings are an index into a table), times in whole
# microseconds after the plan's time (exact):
# - the estimates (`estimates_raw`): what every view of a queued job reads;
# - the timeline (`timeline_raw`): every job's slots, needs and the nodes, which only
#   a what-if reads; the API parses it on the first what-if of a plan, not per plan.

FORMAT = 2


class _Table:
    """Strings to the indexes a column holds instead."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, value: str) -> int:
        found = self._index.get(value)
        if found is None:
            found = self._index[value] = len(self.values)
            self.values.append(value)
        return found


def _offset(at: datetime | None, base: datetime) -> int | None:
    if at is None:
        return None
    d = at - base
    return (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds


def _at(offset: int | None, base: datetime) -> datetime | None:
    return None if offset is None else base + timedelta(microseconds=offset)


def estimates_raw(kept: Plan) -> dict[str, Any]:
    """The queued jobs' estimates as the operator publishes them (`parse`)."""
    base, namespaces, reasons = kept.computed_at, _Table(), _Table()
    columns: dict[str, list[Any]] = {k: [] for k in ("ns", "name", "start", "earliest",
                                                     "latest", "reason")}  # fmt: skip
    for key, e in kept.estimates.items():
        columns["ns"].append(namespaces(key.namespace))
        columns["name"].append(key.name)
        columns["start"].append(_offset(e.start, base))
        columns["earliest"].append(_offset(e.earliest, base))
        columns["latest"].append(_offset(e.latest, base))
        columns["reason"].append(None if e.reason is None else reasons(e.reason))
    return {"format": FORMAT, "computedAt": format_time(kept.computed_at),
            "madeAt": format_time(kept.version),
            "namespaces": namespaces.values, "reasons": reasons.values, **columns}  # fmt: skip


# user: the submitter (a fair queue's tenant, for the what-if's fair order).
_JOB_COLUMNS = ("ns", "name", "uid", "queue", "priority", "gpus", "nodes", "cpu", "memory",
                "selector", "image", "created", "sequence", "placement", "holds",
                "user")  # fmt: skip
_SLOT_COLUMNS = ("start", "end", "at")


@dataclass
class _Encoding:
    """A plan's timeline encoded per job, kept for the plans brought up to date from it
    (same instant: same offsets): a job or slots unchanged are not encoded again.
    Placements are tuples (JSON arrays all the same): the empty one is shared, and
    the garbage collector stops walking them (four lists a job cost 13 MiB at 54,000
    jobs, besides the collector's time)."""

    base: datetime
    strings: _Table = field(default_factory=_Table)
    where: _Table = field(default_factory=_Table)
    jobs: dict[JobKey, tuple[Job, tuple[Any, ...]]] = field(default_factory=dict)
    slots: dict[JobKey, tuple[tuple[Slot, Slot, Slot], tuple[Any, ...]]] = field(
        default_factory=dict)  # fmt: skip

    def job(self, key: JobKey, job: Job) -> tuple[Any, ...]:
        found = self.jobs.get(key)
        if found is not None and found[0] is job:
            return found[1]
        s, strings, where = job.spec, self.strings, self.where
        user = job.audit.submitted_by
        row = (strings(key.namespace), key.name, job.uid, strings(s.queue), s.priority, s.gpus,
               s.nodes, s.cpu, s.memory, dict(s.node_selector) or None, strings(s.image),
               _offset(job.status.requeued_at or job.created_at, self.base),
               job.status.sequence, tuple(map(where, job.status.placement)),
               int(job.holds_slot),
               None if user is None else strings(user))  # fmt: skip
        self.jobs[key] = (job, row)
        return row

    def slot_row(self, key: JobKey, mine: tuple[Slot, Slot, Slot] | None) -> tuple[Any, ...]:
        if mine is None:
            return (None,) * (len(SCENARIOS) * len(_SLOT_COLUMNS))
        found = self.slots.get(key)
        if found is not None and all(a is b for a, b in zip(found[0], mine, strict=True)):
            return found[1]
        base, where = self.base, self.where
        row: list[Any] = []
        for slot in mine:
            row += (_offset(slot.start, base), _offset(slot.end, base),
                    tuple(map(where, slot.placement)))  # fmt: skip
        self.slots[key] = (mine, tuple(row))
        return self.slots[key][1]


def timeline_raw(kept: Plan) -> dict[str, Any]:
    """What a what-if reads besides the estimates: the jobs, their slots, the nodes."""
    encoding = kept.encoding
    if encoding is None or encoding.base != kept.computed_at:
        encoding = kept.encoding = _Encoding(kept.computed_at)
    rows, slot_rows, sources = [], [], []
    strings, slots, source = encoding.strings, kept.slots, kept.sources
    for key, job in kept.jobs.items():
        rows.append(encoding.job(key, job))
        slot_rows.append(encoding.slot_row(key, slots.get(key)))
        found = source.get(key)
        sources.append(None if found is None else strings(found))
    jobs = dict(zip(_JOB_COLUMNS, map(list, zip(*rows, strict=True)), strict=True)) if rows else {
        name: [] for name in _JOB_COLUMNS}  # fmt: skip
    jobs["source"] = sources
    columns = list(map(list, zip(*slot_rows, strict=True))) if slot_rows else [
        [] for _ in range(len(SCENARIOS) * len(_SLOT_COLUMNS))]  # fmt: skip
    width = len(_SLOT_COLUMNS)
    return {
        "format": FORMAT,
        "computedAt": format_time(kept.computed_at),
        "madeAt": format_time(kept.version),
        "limits": {
            "maxRunning": kept.limits.max_running,
            "gpuBudget": kept.limits.gpu_budget,
            "namespaceGpus": kept.limits.namespace_gpus,
        },
        "nodes": [_node_raw(n) for n in kept.nodes],
        "strings": list(strings.values),
        "where": list(encoding.where.values),
        "jobs": jobs,
        "slots": [
            dict(zip(_SLOT_COLUMNS, columns[i * width : (i + 1) * width], strict=True))
            for i in SCENARIOS
        ],
    }


def parse(raw: Mapping[str, Any], timeline: Mapping[str, Any] | None = None) -> Plan | None:
    """The published plan: its estimates, and with the timeline what a what-if reads.
    None: not in this format (an older operator's; the next plan will be)."""
    if raw.get("format") != FORMAT or (timeline is not None and
                                       timeline.get("madeAt") != raw.get("madeAt")):  # fmt: skip
        return None
    base, made = parse_time(raw.get("computedAt")), parse_time(raw.get("madeAt"))
    assert base is not None
    namespaces, reasons = raw["namespaces"], raw["reasons"]
    estimates: dict[JobKey, Estimate] = {}
    for ns, name, start, earliest, latest, reason in zip(
        raw["ns"], raw["name"], raw["start"], raw["earliest"], raw["latest"], raw["reason"],
        strict=True,
    ):  # fmt: skip
        estimates[JobKey(namespaces[ns], name)] = Estimate(
            _at(start, base), _at(earliest, base), _at(latest, base),
            None if reason is None else reasons[reason])  # fmt: skip
    kept = Plan(base, Limits(1), (), {}, {}, estimates, made_at=made)
    if timeline is not None:
        _parse_timeline(kept, timeline)
    return kept


def _parse_timeline(kept: Plan, raw: Mapping[str, Any]) -> None:
    from shunter.domain.model import Phase

    base, strings, where = kept.computed_at, raw["strings"], raw["where"]
    limits = raw.get("limits") or {}
    kept.limits = Limits(limits.get("maxRunning", 1), limits.get("gpuBudget", 0),
                         limits.get("namespaceGpus", 0))  # fmt: skip
    kept.nodes = tuple(_node_of(n) for n in raw.get("nodes") or ())
    j, scenarios = raw["jobs"], raw["slots"]
    absent = [None] * len(j["ns"])  # a column an older operator did not publish
    columns = [j.get(name, absent) for name in (*_JOB_COLUMNS, "source")]
    slot_columns = [c[name] for c in scenarios for name in _SLOT_COLUMNS]
    running, queued = Phase.RUNNING, Phase.QUEUED
    for row, slot_row in zip(zip(*columns, strict=True), zip(*slot_columns, strict=True),
                             strict=True):  # fmt: skip
        (ns, name, uid, queue, priority, gpus, pods, cpu, memory, selector, image, created,
         sequence, placement, holds, user, source) = row  # fmt: skip
        spec = JobSpec(image=strings[image], gpus=gpus, nodes=pods, cpu=cpu, memory=memory,
                       queue=strings[queue], priority=priority,
                       node_selector=tuple(sorted((selector or {}).items())))  # fmt: skip
        status = JobStatus(phase=running if holds else queued, sequence=sequence,
                           placement=tuple(where[n] for n in placement))  # fmt: skip
        key = JobKey(strings[ns], name)
        audit = Audit(None if user is None else strings[user])
        kept.jobs[key] = Job(key, Uid(uid or ""), "", base + timedelta(microseconds=created),
                             spec, status, audit)  # fmt: skip
        if source is not None:
            kept.sources[key] = strings[source]
        if slot_row[2] is not None:
            low, mid, high = (
                Slot(_at(slot_row[i], base), _at(slot_row[i + 1], base),
                     tuple(where[n] for n in slot_row[i + 2]))
                for i in (0, 3, 6)
            )  # fmt: skip
            kept.slots[key] = (low, mid, high)


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
