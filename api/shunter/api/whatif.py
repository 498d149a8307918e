"""The answer to a what-if (POST /api/training/submit?dry_run=true), from the kept plan.

The job, as the API server's dry run returned it, is inserted into the operator's
kept plan (shunter.domain.whatif.insert: no simulation, p99 well under 100 ms at
10,000 queued jobs, see bench/RESULTS.md). Besides its position and estimated start:

- whether it would preempt, and whom. The operator's choice of victims lives in
  shunter.operator.preemption, which the API may not import (the import-linter
  contract allows shunter.domain only), so the answer names the candidates by the
  queue's rule as the domain states it: the head of a queue with `preemption:
  lowerPriority` that cannot start now preempts lower-priority running jobs of its
  queue, lowest priority and newest first, until its GPUs are free. The operator may
  pick other victims among them (it ranks them by the work they would lose).
- nearby alternatives that start sooner: with fewer GPUs (halves, down to one), or in
  another queue the caller may use (the API server's own dry run of the job moved
  there says whether they may: queue access is the installer's policy's to judge).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime

from shunter.api.schemas import Alternative, StartRangePublic, WhatIf
from shunter.domain.estimates import MID, Plan
from shunter.domain.model import Job
from shunter.domain.queues import DEFAULT_QUEUE, LOWER_PRIORITY, QueueView, queue_of
from shunter.domain.whatif import insert

# Alternatives looked at: other queues (each one costs a dry run when sooner).
MAX_QUEUES = 5


async def answer_what_if(
    job: Job, kept: Plan | None, *, now: datetime, queues: Mapping[str, QueueView],
    holders: Iterable[Job], allowed: Callable[[str], Awaitable[bool]],
    waiting: Mapping[str, int] | None = None,
) -> WhatIf:  # fmt: skip
    base = {"job_id": job.key.name, "namespace": job.key.namespace, "queue": job.spec.queue}
    if kept is None:
        position = (waiting or {}).get(job.spec.queue, 0) + 1
        why = "no plan of the queue yet (estimates are off, or the operator has not published one)"
        return WhatIf(**base, position=position, ahead=position - 1,
                      estimated_start_range=StartRangePublic(reason=why),
                      message=f"Would wait in queue at position {position}; {why}")  # fmt: skip
    answer = insert(kept, job, now=now, queues=queues)
    e = answer.estimate
    starts_now = e.start is not None and e.start <= now
    victims = [] if starts_now or answer.position > 1 else _candidates(job, holders, queues)
    alternatives = [] if starts_now else await _alternatives(job, kept, now=now, queues=queues,
                                                             sooner_than=e.start,
                                                             allowed=allowed)  # fmt: skip
    return WhatIf(
        **base, position=answer.position, ahead=answer.ahead, estimated_start=e.start,
        estimated_start_range=StartRangePublic(earliest=e.earliest, latest=e.latest,
                                               reason=e.reason),
        starts_now=starts_now, would_preempt=bool(victims),
        preempts=[str(v.key) for v in victims], alternatives=alternatives,
        message=_message(answer.position, e.start, e.reason, now=now, victims=len(victims)),
    )  # fmt: skip


def _candidates(job: Job, holders: Iterable[Job], queues: Mapping[str, QueueView]) -> list[Job]:
    queue = queue_of(job.spec.queue, queues)
    if queue is None or queue.preemption != LOWER_PRIORITY:
        return []
    lower = sorted((h for h in holders if h.spec.queue == job.spec.queue
                    and h.spec.priority < job.spec.priority and h.status.termination is None),
                   key=lambda h: (h.spec.priority, -(h.status.running_since or h.created_at)
                                  .timestamp()))  # fmt: skip
    chosen, freed = [], 0
    for victim in lower:
        if freed >= job.spec.total_gpus:
            break
        chosen.append(victim)
        freed += victim.spec.total_gpus
    return chosen if freed >= job.spec.total_gpus else []


async def _alternatives(job: Job, kept: Plan, *, now: datetime,
                        queues: Mapping[str, QueueView], sooner_than: datetime | None,
                        allowed: Callable[[str], Awaitable[bool]],
                        ) -> list[Alternative]:  # fmt: skip
    def sooner(start: datetime | None) -> bool:
        return start is not None and (sooner_than is None or start < sooner_than)

    found: list[Alternative] = []
    gpus = job.spec.gpus
    while gpus > 1:
        gpus //= 2
        fewer = replace(job, spec=replace(job.spec, gpus=gpus))
        start = insert(kept, fewer, now=now, queues=queues, scenarios=(MID,)).estimate.start
        if start is not None and sooner(start):
            found.append(Alternative(gpus=gpus, queue=job.spec.queue, estimated_start=start,
                                     message=f"with {gpus} GPU{'s' if gpus > 1 else ''}:"
                                             f" {_when(start, now)}"))  # fmt: skip
            break  # the largest that is sooner
    names = sorted({*queues, DEFAULT_QUEUE} - {job.spec.queue})[:MAX_QUEUES]
    for name in names:
        moved = replace(job, spec=replace(job.spec, queue=name))
        start = insert(kept, moved, now=now, queues=queues, scenarios=(MID,)).estimate.start
        if start is not None and sooner(start) and await allowed(name):
            found.append(Alternative(gpus=job.spec.gpus, queue=name, estimated_start=start,
                                     message=f"in queue {name}: {_when(start, now)}"))  # fmt: skip
    return found


def _when(start: datetime, now: datetime) -> str:
    seconds = (start - now).total_seconds()
    if seconds <= 0:
        return "starts now"
    if seconds < 3600:
        return f"in {max(1, round(seconds / 60))} min"
    if seconds < 86400:
        return f"in {seconds / 3600:.1f} h"
    return f"in {seconds / 86400:.1f} days"


def _message(position: int, start: datetime | None, reason: str | None, *, now: datetime,
             victims: int) -> str:  # fmt: skip
    if start is None:
        return f"Would wait in queue at position {position}; no estimate: {reason}"
    if start <= now:
        return "Would start now"
    text = f"Would wait in queue at position {position}; estimated start {_when(start, now)}"
    if victims:
        text += f"; it would preempt {victims} job{'s' if victims > 1 else ''} to start"
    return text
