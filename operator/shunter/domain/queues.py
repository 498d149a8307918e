"""TrainingQueues: limits per queue, GPU quotas, cohorts that lend idle quota (pure).

A `TrainingQueue` (cluster-scoped, short name `tq`) caps how many of its jobs run at
once (`maxRunning`) and how many GPUs they hold (`gpuQuota`, the nominal quota).
Queues sharing a `cohort` lend each other idle quota: a queue may hold more than its
nominal quota while the cohort as a whole has GPUs its members do not use (up to its
`borrowingLimit`), and a queue below its nominal quota reclaims what others borrowed
by preemption. `preemption: lowerPriority` lets a job preempt lower-priority jobs of
its own queue; `never` (the default, as before queues existed) does not.
`timeSliceSeconds` shares a queue round-robin between jobs of equal priority. Kueue's
ClusterQueue, with one flavor, is the model.

A queue named in `spec.queue` that does not exist leaves the job waiting with a
message. The queue `default` always exists: without a TrainingQueue of that name it
has no limits of its own (the operator's global limits still apply), so the guide and
existing users need nothing new.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from shunter.domain.fairshare import ABOVE_FAIR_SHARE, Ledger
from shunter.domain.fairshare import NEVER as FAIR_NEVER
from shunter.domain.model import Job

DEFAULT_QUEUE = "default"
NEVER = "never"
LOWER_PRIORITY = "lowerPriority"
STRICT_FIFO = "StrictFIFO"
BEST_EFFORT_FIFO = "BestEffortFIFO"


@dataclass(frozen=True)
class QueueView:
    name: str
    max_running: int | None = None
    gpu_quota: int | None = None
    borrowing_limit: int | None = None
    cohort: str | None = None
    preemption: str = NEVER
    strategy: str = STRICT_FIFO
    # Who may use the queue (namespaceSelector, maxPriority) is judged by the API
    # server (the chart's queue-access ValidatingAdmissionPolicy), when a job is
    # created or moved here and again by a dry run before its Pods are created
    # (shunter.operator.actions.policy_refusal). The operator keeps only the bound it
    # applies itself: how long a stopped job of this queue keeps its GPUs.
    max_grace: int | None = None
    # Round-robin between equal priorities: seconds a job runs before it yields to a
    # waiting job of its priority (shunter.operator.preemption.slice_candidates).
    time_slice: int | None = None
    # Fair sharing between the queues of a cohort (shunter.domain.fairshare): this
    # queue's weight (None: no fairSharing; in a fair cohort it weighs 1), and
    # whether it preempts borrowed GPUs of members above their fair share.
    weight: float | None = None
    fair_preemption: str = FAIR_NEVER
    # Fair sharing inside the queue by decayed usage: the half-life (None: off), and
    # the usage the operator last wrote to status.usage.
    half_life: int | None = None
    usage: Ledger | None = field(default=None, compare=False)

    @property
    def preempts_above_fair_share(self) -> bool:
        return self.weight is not None and self.fair_preemption == ABOVE_FAIR_SHARE

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> QueueView:
        spec = body.get("spec") or {}
        return cls(
            name=body["metadata"]["name"],
            max_running=spec.get("maxRunning"),
            gpu_quota=spec.get("gpuQuota"),
            borrowing_limit=spec.get("borrowingLimit"),
            cohort=spec.get("cohort") or None,
            preemption=spec.get("preemption") or NEVER,
            strategy=spec.get("queueingStrategy") or STRICT_FIFO,
            max_grace=spec.get("maxGracePeriodSeconds"),
            time_slice=spec.get("timeSliceSeconds"),
            weight=_weight(spec.get("fairSharing")),
            fair_preemption=(spec.get("fairSharing") or {}).get("preemption") or FAIR_NEVER,
            half_life=(spec.get("admissionFairSharing") or {}).get("halfLifeSeconds"),
            usage=Ledger.parse((body.get("status") or {}).get("usage")),
        )


def _weight(fair: Mapping[str, Any] | None) -> float | None:
    if fair is None:
        return None
    weight = fair.get("weight")
    return 1.0 if weight is None else float(weight)


def max_grace(job: Job, queues: Mapping[str, QueueView]) -> int | None:
    """The bound the job's queue puts on a stop's grace period, if any."""
    queue = queue_of(job.spec.queue, queues)
    return queue.max_grace if queue is not None else None


def queue_of(name: str, queues: Mapping[str, QueueView]) -> QueueView | None:
    """The queue a job names; the implicit default when `default` has no object."""
    found = queues.get(name)
    if found is None and name == DEFAULT_QUEUE:
        return QueueView(DEFAULT_QUEUE)
    return found


def group_of(job: Job, queues: Mapping[str, QueueView]) -> tuple[str, str]:
    """Where a head's victims can come from: its queue's cohort, or its queue when it
    has none (shunter.domain.victims.candidates, and the operator's choose_fair and
    time_slice, never look further)."""
    return queue_group(job.spec.queue, queues)


def queue_group(name: str, queues: Mapping[str, QueueView]) -> tuple[str, str]:
    """The group (`group_of`) of the jobs of the queue named `name`."""
    queue = queue_of(name, queues)
    if queue is not None and queue.cohort:
        return ("cohort", queue.cohort)
    return ("queue", name)


@dataclass
class QuotaUse:
    """What each queue's admitted jobs hold: jobs and GPUs (mutated within a pass)."""

    queues: Mapping[str, QueueView]
    running: dict[str, int] = field(default_factory=dict)
    gpus: dict[str, int] = field(default_factory=dict)
    _members: dict[str, list[QueueView]] | None = field(default=None, repr=False, compare=False)
    # Per cohort: its members' nominal GPUs, and the GPUs they hold (kept by add(), so
    # cohort_idle costs nothing however many queues a cohort has).
    _nominal: dict[str, int] | None = field(default=None, repr=False, compare=False)
    _held: dict[str, int] | None = field(default=None, repr=False, compare=False)
    _fair: dict[str, bool] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, queues: Mapping[str, QueueView], active: Iterable[Job]) -> QuotaUse:
        use = cls(queues)
        for job in active:
            use.add(job)
        return use

    def warm(self) -> QuotaUse:
        """Work out what depends on the queues alone (each cohort's members, their
        nominal GPUs, whether they share fairly) and the GPUs each cohort holds; add()
        keeps the latter from then on, and copies share the rest."""
        members: dict[str, list[QueueView]] = {}
        for q in self.queues.values():
            if q.cohort:
                members.setdefault(q.cohort, []).append(q)
        self._members = members
        self._fair = {c: any(m.weight is not None for m in ms) for c, ms in members.items()}
        self._nominal = {c: sum(m.gpu_quota or 0 for m in ms) for c, ms in members.items()}
        self._held = {c: sum(self.gpus.get(m.name, 0) for m in ms) for c, ms in members.items()}
        return self

    def copy(self) -> QuotaUse:
        held = dict(self._held) if self._held is not None else None
        return QuotaUse(self.queues, dict(self.running), dict(self.gpus), self._members,
                        self._nominal, held, self._fair)  # fmt: skip

    def add(self, job: Job, sign: int = 1) -> None:
        name = job.spec.queue
        self.running[name] = self.running.get(name, 0) + sign
        self.gpus[name] = self.gpus.get(name, 0) + sign * job.spec.total_gpus
        if self._held is not None:
            queue = queue_of(name, self.queues)
            if queue is not None and queue.cohort:
                held = self._held.get(queue.cohort, 0) + sign * job.spec.total_gpus
                self._held[queue.cohort] = held

    def remove(self, job: Job) -> None:
        self.add(job, -1)

    def borrowed(self, name: str) -> int:
        queue = queue_of(name, self.queues)
        if queue is None or queue.gpu_quota is None:
            return 0
        return max(0, self.gpus.get(name, 0) - queue.gpu_quota)

    def _cohort(self, queue: QueueView) -> list[QueueView]:
        if not queue.cohort:
            return []
        if self._members is None:
            self.warm()
        assert self._members is not None
        return self._members.get(queue.cohort, [])

    def members(self, queue: QueueView) -> list[QueueView]:
        """The queues of its cohort (itself among them); none without a cohort."""
        return self._cohort(queue)

    def fair(self, queue: QueueView) -> bool:
        """Its cohort shares idle quota by weight: a member sets spec.fairSharing
        (known per cohort once: the queues do not change within a pass)."""
        if not queue.cohort:
            return False
        if self._fair is None:
            self.warm()
        assert self._fair is not None
        return self._fair.get(queue.cohort, False)

    def share(self, queue: QueueView, extra: int = 0) -> float:
        """GPUs held above its nominal quota (with `extra` more) over its weight."""
        if queue.gpu_quota is None:
            return 0.0
        borrowed = max(0, self.gpus.get(queue.name, 0) + extra - queue.gpu_quota)
        weight = 1.0 if queue.weight is None else queue.weight
        if not borrowed:
            return 0.0
        return math.inf if weight <= 0 else borrowed / weight

    def borrowing_share(self, job: Job) -> float:
        """In a fair cohort, the share of the job's queue once the job is admitted
        when that needs borrowing; 0 otherwise (admission order: lowest first)."""
        queue = queue_of(job.spec.queue, self.queues)
        if queue is None or queue.gpu_quota is None or not self.fair(queue):
            return 0.0
        return self.share(queue, job.spec.total_gpus)

    def admits(self, job: Job) -> str | None:
        """None if the job fits its queue's limits now, else why not."""
        queue = queue_of(job.spec.queue, self.queues)
        if queue is None:
            return f"queue {job.spec.queue!r} does not exist"
        running = self.running.get(queue.name, 0)
        if queue.max_running is not None and running >= queue.max_running:
            return f"queue {queue.name} runs its limit of {queue.max_running} jobs"
        if queue.gpu_quota is None:
            return None
        used = self.gpus.get(queue.name, 0)
        want = used + job.spec.total_gpus
        if want <= queue.gpu_quota:
            return None
        over = want - queue.gpu_quota
        if queue.borrowing_limit is not None and over > queue.borrowing_limit:
            return (f"queue {queue.name} would hold {want} GPUs: its quota is {queue.gpu_quota}"
                    f" and it may borrow at most {queue.borrowing_limit}")  # fmt: skip
        idle = self.cohort_idle(queue)
        if job.spec.total_gpus <= idle:
            return None
        return f"queue {queue.name} holds {used} of its {queue.gpu_quota} GPUs" + (
            f"; its cohort {queue.cohort} has {idle} idle" if queue.cohort else ""
        )

    def short_of_idle(self, job: Job) -> bool:
        """The job would borrow, within its queue's limits, more than its cohort has
        idle now: only the others' borrowed GPUs stand in its way."""
        queue = queue_of(job.spec.queue, self.queues)
        if queue is None or queue.gpu_quota is None or not queue.cohort:
            return False
        if queue.max_running is not None and self.running.get(queue.name, 0) >= queue.max_running:
            return False
        over = self.gpus.get(queue.name, 0) + job.spec.total_gpus - queue.gpu_quota
        if over <= 0 or (queue.borrowing_limit is not None and over > queue.borrowing_limit):
            return False
        return job.spec.total_gpus > self.cohort_idle(queue)

    def cohort_idle(self, queue: QueueView) -> int:
        """GPUs of the cohort's nominal quotas that no member uses (what a member may
        borrow); a queue without a cohort has only its own quota."""
        members = self._cohort(queue)
        if not members:
            return max(0, (queue.gpu_quota or 0) - self.gpus.get(queue.name, 0))
        assert queue.cohort is not None  # members are found by it
        if self._nominal is None or self._held is None:
            self.warm()
        assert self._nominal is not None
        assert self._held is not None
        return max(0, self._nominal[queue.cohort] - self._held[queue.cohort])

    def within_nominal(self, job: Job) -> bool:
        """The job fits its queue's own quota (so it may reclaim borrowed GPUs)."""
        queue = queue_of(job.spec.queue, self.queues)
        if queue is None or queue.gpu_quota is None:
            return False
        return self.gpus.get(queue.name, 0) + job.spec.total_gpus <= queue.gpu_quota
