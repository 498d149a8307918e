"""The order rules of admission, shared by a pass and the estimates (pure).

One owner per rule: the operator's pass (shunter.operator.planning) and the
simulation of the passes ahead that makes the start-time estimates
(shunter.domain.estimates) both call these, so the estimate takes the queue in the
order the pass will.

- LOOKAHEAD: how far past its head a BestEffortFIFO queue is searched;
- `merge_key`: the heads of all queues are merged by priority, then (in a cohort
  with fair sharing, for a job that would borrow) its queue's share once it is
  admitted, then submission: without fair sharing, exactly admission order;
- `Sharing`: a queue with admission fair sharing (halfLifeSeconds) takes its waiting
  jobs by priority, then its tenants' scores (decayed usage plus the GPUs they hold),
  then submission; a job admitted in the pass is charged to its tenant at once
  (shunter.domain.fairshare); `Sharing.ahead` says where a job not waiting yet would
  come (the what-if, shunter.domain.whatif), `Sharing.now` the scores from the
  queues' status as the API has them;
- `CohortHolds`: in a cohort with fair sharing, the idle quota is held for a waiting
  head of lower share that did not fit: a job that would borrow with a share at
  least as high waits (no queue starves behind a stream of small jobs of others).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from shunter.domain.admission import queue_order
from shunter.domain.fairshare import (
    Entry,
    Ledger,
    Scores,
    Tenant,
    fair_key,
    fair_order,
    tenant_of,
)
from shunter.domain.model import Job, JobKey
from shunter.domain.queues import QueueView, QuotaUse, queue_of

# How far past its head a BestEffortFIFO queue is searched for a job that fits.
LOOKAHEAD = 100

MergeKey = tuple[int, float, float, int, str, str]


def merge_key(job: Job, quota: QuotaUse) -> MergeKey:
    """Where a queue's next job comes among the heads of all queues (module doc)."""
    order = queue_order(job)
    return (order[0], quota.borrowing_share(job), *order[1:])


def fold(usage: Mapping[str, Ledger], queues: Mapping[str, QueueView],
         held: Mapping[str, Mapping[Tenant, int]], now: datetime) -> dict[str, Ledger]:  # fmt: skip
    """Every fair queue's decayed usage brought up to now, the `held` GPUs (per queue
    and tenant) counted as held since it was last brought up."""
    folded = dict(usage)
    for queue in queues.values():
        if queue.half_life:
            ledger = usage.get(queue.name) or Ledger()
            folded[queue.name] = ledger.advance(now, held.get(queue.name, {}),
                                                float(queue.half_life))  # fmt: skip
    return folded


def held_by(active: Sequence[Job]) -> dict[str, dict[Tenant, int]]:
    """GPUs held by admitted jobs, per queue and tenant."""
    held: dict[str, dict[Tenant, int]] = {}
    for job in active:
        count_held(held, job, 1)
    return held


def count_held(held: dict[str, dict[Tenant, int]], job: Job, sign: int) -> None:
    """Count a job's GPUs in `held` (per queue and tenant): sign 1 when it is admitted,
    -1 when it gives them back (the estimates' simulation, as its jobs start and end)."""
    per = held.setdefault(job.spec.queue, {})
    tenant = tenant_of(job)
    per[tenant] = per.get(tenant, 0) + sign * job.spec.total_gpus


class Sharing:
    """The tenants' scores of the queues with admission fair sharing during one pass:
    `order` takes a fair queue's waiting jobs in its order, `charge` counts a job
    admitted in the pass (its tenant moves back at once)."""

    def __init__(self, usage: Mapping[str, Ledger],
                 held: Mapping[str, Mapping[Tenant, int]]) -> None:  # fmt: skip
        self.usage, self.held = usage, held
        self.scores: dict[str, Scores] = {}

    @classmethod
    def now(cls, queues: Mapping[str, QueueView], active: Iterable[Job],
            now: datetime) -> Sharing:  # fmt: skip
        """The scores a pass at `now` starts from, from the usage the queues' status
        carries (the operator writes it every few seconds) folded to now with the GPUs
        the `active` jobs hold (what the API has; the operator keeps its own ledger)."""
        if not any(q.half_life for q in queues.values()):
            return cls({}, {})  # no fair queue: nothing to score
        held = held_by(list(active))
        usage = {n: q.usage for n, q in queues.items() if q.half_life and q.usage}
        return cls(fold(usage, queues, held, now), held)

    def ahead(self, queue: QueueView, lanes: Mapping[Tenant, Sequence[Entry]],
              job: Job) -> dict[Tenant, int]:  # fmt: skip
        """How many of each tenant's lane (its waiting jobs in admission order) `order`
        takes before `job`, were it waiting too, with the scores as they stand: `order`
        merges the lanes by `fair_key`, so each lane's share is a prefix, found by
        bisection (a what-if's place without walking the queue)."""
        scores = Scores(self.usage.get(queue.name) or Ledger(), self.held.get(queue.name, {}))
        mine = fair_key(queue_order(job), scores.of(tenant_of(job)))
        return {tenant: bisect.bisect_left(entries, mine, key=_keyed(scores.of(tenant)))
                for tenant, entries in lanes.items()}  # fmt: skip

    def order(self, queue: QueueView, lanes: Mapping[Tenant, Sequence[Entry]]) -> Iterator[JobKey]:
        """A fair queue's waiting jobs (its tenants' lanes, each in admission order)."""
        scores = Scores(self.usage.get(queue.name) or Ledger(), self.held.get(queue.name, {}))
        self.scores[queue.name] = scores
        return fair_order(lanes, scores.of)

    def charge(self, job: Job) -> None:
        scores = self.scores.get(job.spec.queue)
        if scores is not None:
            scores.charge(job)


def _keyed(scores: tuple[float, float]) -> Callable[[Entry], tuple[Any, ...]]:
    return lambda entry: fair_key(entry[0], scores)


class CohortHolds:
    """Cohorts whose idle quota is held, in one pass, for a head that did not fit."""

    def __init__(self, quota: QuotaUse, queues: Mapping[str, QueueView]) -> None:
        self.quota, self.queues = quota, queues
        self.held: dict[str, tuple[float, str]] = {}  # cohort: (share, queue)

    def blocks(self, job: Job) -> str | None:
        """Why a job that would be admitted waits: the idle quota of its cohort is
        held for a queue of lower share (None: it is not)."""
        queue = queue_of(job.spec.queue, self.queues)
        if queue is None or not queue.cohort:
            return None
        held = self.held.get(queue.cohort)
        if held is None or held[1] == queue.name:
            return None
        share = self.quota.borrowing_share(job)
        if share <= 0 or share < held[0]:
            return None
        return (f"the idle GPUs of cohort {queue.cohort} are held for queue {held[1]},"
                f" whose share is lower")  # fmt: skip

    def hold(self, head: Job) -> None:
        """A queue's head waits: hold its cohort's idle quota for it when it would
        borrow and only the others' borrowed GPUs stand in its way."""
        queue = queue_of(head.spec.queue, self.queues)
        if queue is None or not queue.cohort or queue.cohort in self.held:
            return
        share = self.quota.borrowing_share(head)
        if share > 0 and self.quota.short_of_idle(head):
            self.held[queue.cohort] = (share, queue.name)
