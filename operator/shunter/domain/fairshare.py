"""Fair sharing: between the queues of a cohort, and inside a queue (pure).

Between queues (TrainingQueue `spec.fairSharing`). A cohort with at least one
member that sets `fairSharing` shares its idle quota by weight (members without it
weigh 1). A queue's share is Kueue's: the GPUs it holds above its nominal quota
divided by its weight (Kueue also divides by the cohort's lendable GPUs, the same
number for every member of a flat cohort with one resource, so the order is the
same); weight 0 is an infinite share as soon as it borrows. Jobs of equal priority
that would borrow are admitted lowest share (after their admission) first; a queue
whose `fairSharing.preemption` is `aboveFairShare` preempts borrowed GPUs of a
member whose share, without the victim, stays at or above its own share with the
job (Kueue's LessThanOrEqualToFinalShare: it never makes the victim's queue poorer
than the preemptor's, so two queues never take GPUs back and forth).

Inside a queue (TrainingQueue `spec.admissionFairSharing.halfLifeSeconds`). The
queue keeps, per namespace and per user of a namespace (the submitted-by
annotation; jobs without it share the user ""), the GPU-seconds its jobs held,
decayed with the half-life (Slurm's PriorityDecayHalfLife): U(t) = U(t0) 2^-(t-t0)/H
+ the GPU-seconds held since, each decayed from when it was used. Waiting jobs are
ordered by priority, then their namespace's score, then their user's within it, then
submission time; a score is the decayed usage plus HOLD_SECONDS per GPU held now, so
jobs admitted together alternate between teams of close usage instead of all going
to the one that was a second behind. Usage is charged as a job runs, so a team of
long jobs is ahead by about a job's length before its usage shows it (teams of equal
jobs converge to equal shares; of 4-GPU 7-minute jobs against 2-GPU 1-minute ones,
up to ~15 % more in an hour, tests/unit/operator/test_fair_sharing.py). The usage
lives in the queue's status (written
by the operator every few seconds, read back at start and by a new leader), never
in PostgreSQL.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from shunter.domain.model import Job, JobKey, format_time, parse_time

# One GPU held now counts as this many GPU-seconds of usage when ordering a queue.
HOLD_SECONDS = 60.0
# Decayed usage below this many GPU-seconds is dropped from the status.
FORGET_BELOW = 0.5
NEVER = "never"
ABOVE_FAIR_SHARE = "aboveFairShare"

# (namespace, user): who a job's usage is charged to.
Tenant = tuple[str, str]


def tenant_of(job: Job) -> Tenant:
    return job.key.namespace, job.audit.submitted_by or ""


def decay(value: float, seconds: float, half_life: float) -> float:
    return float(value * 2.0 ** (-max(0.0, seconds) / half_life))


def accrued(gpus: float, seconds: float, half_life: float) -> float:
    """GPU-seconds of `gpus` held for `seconds`, decayed to the end of that time."""
    if seconds <= 0:
        return 0.0
    return float(gpus * half_life / math.log(2) * (1.0 - 2.0 ** (-seconds / half_life)))


@dataclass(frozen=True)
class Ledger:
    """A queue's decayed usage at `decayed_at`: per namespace, and per user in it."""

    decayed_at: datetime | None = None
    namespaces: Mapping[str, float] = field(default_factory=dict)
    users: Mapping[Tenant, float] = field(default_factory=dict)

    def advance(self, now: datetime, held: Mapping[Tenant, int], half_life: float) -> Ledger:
        """The usage at `now`, the `held` GPUs having been held since decayed_at."""
        if self.decayed_at is None or now <= self.decayed_at:
            return Ledger(now if self.decayed_at is None else self.decayed_at,
                          self.namespaces, self.users)  # fmt: skip
        seconds = (now - self.decayed_at).total_seconds()
        users = {t: decay(v, seconds, half_life) for t, v in self.users.items()}
        namespaces = {n: decay(v, seconds, half_life) for n, v in self.namespaces.items()}
        for tenant, gpus in held.items():
            if gpus <= 0:
                continue
            more = accrued(gpus, seconds, half_life)
            users[tenant] = users.get(tenant, 0.0) + more
            namespaces[tenant[0]] = namespaces.get(tenant[0], 0.0) + more
        return Ledger(now,
                      {n: v for n, v in namespaces.items() if v >= FORGET_BELOW},
                      {t: v for t, v in users.items() if v >= FORGET_BELOW})  # fmt: skip

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Ledger | None:
        """status.usage of a TrainingQueue (None: none written yet)."""
        if not raw:
            return None
        namespaces: dict[str, float] = {}
        users: dict[Tenant, float] = {}
        for ns, entry in (raw.get("namespaces") or {}).items():
            entry = entry or {}
            namespaces[ns] = float(entry.get("gpuSeconds") or 0.0)
            for user, value in (entry.get("users") or {}).items():
                users[(ns, user)] = float(value or 0.0)
        return cls(parse_time(raw.get("decayedAt")), namespaces, users)

    def to_raw(self) -> dict[str, Any]:
        namespaces: dict[str, Any] = {
            ns: {"gpuSeconds": round(v, 1), "users": {}}
            for ns, v in sorted(self.namespaces.items())
        }
        for (ns, user), value in sorted(self.users.items()):
            entry = namespaces.setdefault(ns, {"gpuSeconds": 0.0, "users": {}})
            entry["users"][user] = round(value, 1)
        return {"decayedAt": format_time(self.decayed_at), "namespaces": namespaces}


def usage_patch(olds: Iterable[Mapping[str, Any] | None], new: Mapping[str, Any]) -> dict[str, Any]:
    """A merge patch of status.usage to `new` from whichever of `olds` the object
    holds: entries in none of new become null."""
    before_ns: set[str] = set()
    before_users: dict[str, set[str]] = {}
    for old in olds:
        for ns, entry in ((old or {}).get("namespaces") or {}).items():
            before_ns.add(ns)
            before_users.setdefault(ns, set()).update((entry or {}).get("users") or {})
    patch: dict[str, Any] = {"decayedAt": new["decayedAt"], "namespaces": {}}
    after = new["namespaces"]
    for ns in before_ns - after.keys():
        patch["namespaces"][ns] = None
    for ns, entry in after.items():
        users = dict(entry["users"])
        for user in before_users.get(ns, set()) - users.keys():
            users[user] = None
        patch["namespaces"][ns] = {"gpuSeconds": entry["gpuSeconds"], "users": users}
    return patch


class Scores:
    """Ordering scores of a queue's tenants now: decayed usage plus HOLD_SECONDS per
    GPU held; `charge` adds a job admitted in this pass."""

    def __init__(self, ledger: Ledger, held: Mapping[Tenant, int]) -> None:
        self.ledger = ledger
        self.held_ns: dict[str, int] = {}
        self.held: dict[Tenant, int] = dict(held)
        for (ns, _), gpus in held.items():
            self.held_ns[ns] = self.held_ns.get(ns, 0) + gpus

    def of(self, tenant: Tenant) -> tuple[float, float]:
        ns = tenant[0]
        spaces = self.ledger.namespaces.get(ns, 0.0) + HOLD_SECONDS * self.held_ns.get(ns, 0)
        users = self.ledger.users.get(tenant, 0.0) + HOLD_SECONDS * self.held.get(tenant, 0)
        return spaces, users

    def charge(self, job: Job) -> None:
        tenant = tenant_of(job)
        self.held[tenant] = self.held.get(tenant, 0) + job.spec.total_gpus
        self.held_ns[tenant[0]] = self.held_ns.get(tenant[0], 0) + job.spec.total_gpus


# An entry of a lane: (order key, job key); the order key starts with -priority.
Entry = tuple[tuple[int, float, int, str, str], JobKey]


def fair_order(lanes: Mapping[Tenant, Sequence[Entry]],
               score: Callable[[Tenant], tuple[float, float]]) -> Iterator[JobKey]:  # fmt: skip
    """The waiting jobs of a queue, each tenant's lane in its own order, merged by
    priority, then tenant score, then submission. Scores are read when a lane's job
    comes up, so a charge made while the caller holds a job moves the tenant back
    (scores only grow within a pass, so a stale entry is pushed back when met)."""
    heap: list[tuple[tuple[Any, ...], Tenant, int]] = []
    for tenant, entries in lanes.items():
        if entries:
            heap.append((fair_key(entries[0][0], score(tenant)), tenant, 0))
    heapq.heapify(heap)
    while heap:
        key, tenant, i = heap[0]
        entries = lanes[tenant]
        fresh = fair_key(entries[i][0], score(tenant))
        if fresh != key:
            heapq.heapreplace(heap, (fresh, tenant, i))
            continue
        heapq.heappop(heap)
        yield entries[i][1]
        if i + 1 < len(entries):
            heapq.heappush(heap, (fair_key(entries[i + 1][0], score(tenant)), tenant, i + 1))


def fair_key(order: tuple[int, float, int, str, str],
             scores: tuple[float, float]) -> tuple[Any, ...]:  # fmt: skip
    """Where a job comes in its fair queue: its admission order (priority first) with
    its tenant's scores after the priority."""
    return (order[0], scores[0], scores[1], *order[1:])
