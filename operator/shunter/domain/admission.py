"""Which queued jobs may start now: order, limits, quotas and capacity (pure).

The rules are those a Kueue or Slurm user expects:

- order: higher `spec.priority` first; equal priorities in submission order
  (creationTimestamp, then the operator's own sequence number, since
  creationTimestamp has one-second resolution, then the name);
- the operator's global limits: at most `max_running` jobs hold a slot (starting,
  running or stopping) and their GPUs sum to at most `gpu_budget` (0 = no budget);
- the job's queue: its running limit and GPU quota, borrowing idle quota of its
  cohort (shunter.domain.queues);
- capacity: a node for each of its Pods, free now (shunter.domain.capacity);
- within a queue, strict FIFO by default: when the head does not fit now, nothing
  behind it starts (letting smaller jobs overtake would starve large ones; Kueue's
  StrictFIFO makes the same choice). A queue may choose BestEffortFIFO instead.
- a job that can never run as the cluster is (larger than any node, or than the GPU
  budget) or that is backing off after a failed start blocks no one: it waits with
  a message saying why.

A job keeps its slot and GPUs until its Pods are gone, so a new Pod never lands on a
GPU the previous trainer may still hold.
"""

from __future__ import annotations

import bisect
import heapq
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime

from shunter.domain.capacity import Capacity
from shunter.domain.fairshare import Tenant, tenant_of
from shunter.domain.model import Job, JobKey
from shunter.domain.queues import QueueView, QuotaUse, queue_of

# Sequence numbers stay far below this; unnumbered jobs sort after numbered ones of the
# same second, among themselves by creation revision.
UNNUMBERED = 2**40

# (-priority, creation time, sequence, namespace, name): smaller is admitted first.
OrderKey = tuple[int, float, int, str, str]


@dataclass(frozen=True)
class Limits:
    max_running: int = 1
    gpu_budget: int = 0  # 0: no GPU budget, only the running limit applies
    # GPUs the admitted jobs of one namespace may hold together (0: no cap): a team
    # at its cap waits (reason NamespaceQuota) and blocks no other team's jobs.
    namespace_gpus: int = 0


def queue_order(job: Job) -> OrderKey:
    sequence = job.status.sequence
    if sequence is None:
        sequence = UNNUMBERED + job.revision
    # A job back from its time slice queues from then (status.requeuedAt).
    return (
        -job.spec.priority,
        (job.status.requeued_at or job.created_at).timestamp(),
        sequence,
        job.key.namespace,
        job.key.name,
    )


def waits(job: Job) -> bool:
    """Queued, not cancelled or suspended: the job waits for admission. (An array
    never does: its runs do; shunter.domain.arrays.)"""
    return (
        job.queued and not job.spec.cancelled and not job.spec.suspended and job.spec.array is None
    )


def waiting(jobs: Iterable[Job]) -> list[Job]:
    """The waiting jobs in admission order (sorted once; `QueueOrder` keeps it)."""
    return sorted((j for j in jobs if waits(j)), key=queue_order)


class QueueOrder:
    """The waiting jobs' keys in admission order, one sorted list per queue, kept as
    jobs change (a change costs a bisection and an insertion; nothing is sorted
    again). The operator's book and the API's cache each keep one."""

    def __init__(self) -> None:
        self._queues: dict[str, list[tuple[OrderKey, JobKey]]] = {}
        self._place: dict[JobKey, tuple[str, OrderKey, int]] = {}
        self._sizes: dict[str, Counter[int]] = {}  # per queue: waiting jobs by GPUs

    def put(self, job: Job) -> None:
        """The job as it is now: placed, moved or taken out."""
        if not waits(job):
            self.remove(job.key)
            return
        place = (job.spec.queue, queue_order(job), job.spec.total_gpus)
        if self._place.get(job.key) != place:
            self.remove(job.key)
            bisect.insort(self._queues.setdefault(place[0], []), (place[1], job.key))
            self._sizes.setdefault(place[0], Counter())[place[2]] += 1
            self._place[job.key] = place

    def remove(self, key: JobKey) -> None:
        place = self._place.pop(key, None)
        if place is None:
            return
        entries = self._queues[place[0]]
        i = bisect.bisect_left(entries, (place[1], key))
        if i < len(entries) and entries[i] == (place[1], key):
            del entries[i]
        if not entries:
            del self._queues[place[0]]
        sizes = self._sizes[place[0]]
        sizes[place[2]] -= 1
        if not sizes[place[2]]:
            del sizes[place[2]]
        if not sizes:
            del self._sizes[place[0]]

    def smallest(self, queue: str) -> int | None:
        """The fewest GPUs a waiting job of the queue asks for (None: none waits)."""
        sizes = self._sizes.get(queue)
        return min(sizes) if sizes else None

    def gpus(self, queue: str) -> int:
        """The GPUs the waiting jobs of the queue ask for together."""
        return sum(gpus * count for gpus, count in self._sizes.get(queue, {}).items())

    def first(self, queue: str) -> JobKey | None:
        entries = self._queues.get(queue)
        return entries[0][1] if entries else None

    def keys(self, queue: str | None = None) -> Iterator[JobKey]:
        """In admission order: of one queue, or of all queues merged."""
        if queue is not None:
            yield from (key for _, key in self._queues.get(queue, ()))
            return
        yield from (key for _, key in heapq.merge(*self._queues.values()))

    def names(self) -> list[str]:
        """Queues with waiting jobs."""
        return list(self._queues)

    def count(self, queue: str | None = None) -> int:
        if queue is not None:
            return len(self._queues.get(queue, ()))
        return len(self._place)

    def counts(self) -> dict[str, int]:
        """Waiting jobs per queue."""
        return {name: len(entries) for name, entries in self._queues.items()}


class LaneOrder:
    """The waiting jobs' keys per queue and tenant (namespace, user), each lane in
    admission order, kept like QueueOrder: what a queue with admission fair sharing
    merges by the tenants' usage (shunter.domain.fairshare.fair_order)."""

    def __init__(self) -> None:
        self._lanes: dict[str, dict[Tenant, list[tuple[OrderKey, JobKey]]]] = {}
        self._place: dict[JobKey, tuple[str, Tenant, OrderKey]] = {}

    def put(self, job: Job) -> None:
        if not waits(job):
            self.remove(job.key)
            return
        place = (job.spec.queue, tenant_of(job), queue_order(job))
        if self._place.get(job.key) != place:
            self.remove(job.key)
            lanes = self._lanes.setdefault(place[0], {})
            bisect.insort(lanes.setdefault(place[1], []), (place[2], job.key))
            self._place[job.key] = place

    def remove(self, key: JobKey) -> None:
        place = self._place.pop(key, None)
        if place is None:
            return
        lanes = self._lanes[place[0]]
        entries = lanes[place[1]]
        i = bisect.bisect_left(entries, (place[2], key))
        if i < len(entries) and entries[i] == (place[2], key):
            del entries[i]
        if not entries:
            del lanes[place[1]]
            if not lanes:
                del self._lanes[place[0]]

    def lanes(self, queue: str) -> Mapping[Tenant, list[tuple[OrderKey, JobKey]]]:
        return self._lanes.get(queue, {})


def fits_budget(job: Job, limits: Limits) -> bool:
    return not limits.gpu_budget or job.spec.total_gpus <= limits.gpu_budget


@dataclass(frozen=True)
class Usage:
    """Slots and GPUs held by admitted jobs (starting, running or stopping)."""

    running: int = 0
    gpus: int = 0
    by_namespace: Mapping[str, int] = field(default_factory=dict)  # GPUs per namespace

    @classmethod
    def of(cls, active: Iterable[Job]) -> Usage:
        running = gpus = 0
        by_namespace: dict[str, int] = {}
        for job in active:
            running += 1
            gpus += job.spec.total_gpus
            ns = job.key.namespace
            by_namespace[ns] = by_namespace.get(ns, 0) + job.spec.total_gpus
        return cls(running, gpus, by_namespace)

    def namespace_cap(self, job: Job, limits: Limits) -> str | None:
        """Why the job's namespace may not hold its GPUs too, if it may not."""
        if not limits.namespace_gpus:
            return None
        held = self.by_namespace.get(job.key.namespace, 0)
        if held + job.spec.total_gpus <= limits.namespace_gpus:
            return None
        return (f"namespace {job.key.namespace} holds {held} of the {limits.namespace_gpus}"
                f" GPUs a namespace may hold; the job asks for {job.spec.total_gpus}")  # fmt: skip

    def why_not(self, job: Job, limits: Limits) -> str | None:
        if self.running >= limits.max_running:
            return f"no free slot ({self.running} of {limits.max_running} in use)"
        if limits.gpu_budget and self.gpus + job.spec.total_gpus > limits.gpu_budget:
            return f"the GPU budget has {limits.gpu_budget - self.gpus} of {limits.gpu_budget} free"
        return None

    def plus(self, job: Job, sign: int = 1) -> Usage:
        ns, gpus = job.key.namespace, sign * job.spec.total_gpus
        by_namespace = {**self.by_namespace, ns: self.by_namespace.get(ns, 0) + gpus}
        return Usage(self.running + sign, self.gpus + gpus, by_namespace)


@dataclass(frozen=True)
class Verdict:
    """What admission says about one queued job now."""

    kind: str  # admit | wait (blocks its queue) | never | backoff | capped (block no one)
    reason: str = ""  # status reason of a waiting job
    message: str = ""  # why it cannot start (empty when admitted)
    placement: tuple[str, ...] = ()
    # Refused for its size by the running limit, the GPU budget or its queue's quota:
    # a job of the same queue asking as many GPUs or more is refused too, until GPUs
    # are given back (they only are taken within a pass).
    sized: bool = False
    # The rule that refused it: budget | nodes | backoff | queue | namespace | limits |
    # quota | capacity (empty when admitted). What a pass may keep of a queue's walk
    # depends on it (shunter.operator.planning's memos).
    check: str = ""


@dataclass
class AdmissionState:
    """Everything a queued job must fit beside, consumed as jobs are admitted."""

    limits: Limits
    usage: Usage
    quota: QuotaUse
    capacity: Capacity
    queues: Mapping[str, QueueView] = field(default_factory=dict)

    def verdict(self, job: Job, *, now: datetime) -> Verdict:
        if not fits_budget(job, self.limits):
            return Verdict(
                "never",
                "Unschedulable",
                (
                    f"Unschedulable: requests {job.spec.total_gpus} GPUs, more than the GPU"
                    f" budget of {self.limits.gpu_budget}: it cannot start until the budget grows"
                ),
                check="budget",
            )
        never = self.capacity.never_fits(job)
        if never is not None:
            return Verdict("never", "Unschedulable", f"Unschedulable: {never}", check="nodes")
        if job.status.not_before is not None and now < job.status.not_before:
            return Verdict("backoff", job.status.reason or "BackOff", job.status.message or "",
                           check="backoff")  # fmt: skip
        if queue_of(job.spec.queue, self.queues) is None:
            return Verdict("wait", "QueueMissing", f"queue {job.spec.queue!r} does not exist",
                           check="queue")  # fmt: skip
        capped = self.usage.namespace_cap(job, self.limits)
        if capped is not None:
            return Verdict("capped", "NamespaceQuota", capped, check="namespace")
        why = self.usage.why_not(job, self.limits)
        if why is not None:
            return Verdict("wait", "Queued", why, sized=True, check="limits")
        why = self.quota.admits(job)
        if why is not None:
            return Verdict("wait", "Queued", why, sized=True, check="quota")
        placement = self.capacity.place(job)
        if placement is None:
            return Verdict("wait", "Queued", self.capacity.why_not_now(job), check="capacity")
        return Verdict("admit", placement=placement)

    def take(self, job: Job, placement: Iterable[str]) -> None:
        self.usage = self.usage.plus(job)
        self.quota.add(job)
        self.capacity.take(job, placement)

    def give(self, job: Job) -> None:
        """Simulate job's Pods gone (a preemption victim)."""
        self.usage = self.usage.plus(job, -1)
        self.quota.remove(job)
        self.capacity.give(job, job.status.placement)

    def copy(self) -> AdmissionState:
        quota = self.quota.copy()
        capacity = self.capacity.copy()
        return AdmissionState(self.limits, self.usage, quota, capacity, self.queues)
