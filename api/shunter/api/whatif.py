"""The answer to a what-if (POST /api/training/submit?dry_run=true), from the kept plan.

The job, as the API server's dry run returned it, is inserted into the operator's
kept plan (shunter.domain.whatif.insert: no simulation, p99 well under 100 ms at
10,000 queued jobs, see bench/RESULTS.md). Besides its position and estimated start:

- its position in the order the operator's pass takes its queue: in a queue with
  admission fair sharing, by its tenant's score (the usage the queue's status
  carries, folded to now with the GPUs the slot holders hold: `Sharing.now`);
- whether it would preempt, and whom: the operator's own choice of victims
  (shunter.domain.victims, which the operator's pass calls too: checkpoint-aware,
  with the same cap on a sized grace, SHUNTER_MAX_SIZED_GRACE_SECONDS), made for the
  head of its queue that cannot start now, against the slot holders the API sees.
  Its estimated start is then, at the latest, the end of the victims' stops (now plus
  each one's grace), at the earliest now. Not applied: the operator's anti-loop
  protection (its settings are its own), so a job protected from preemption loops
  may be named where the operator then picks another.
- a job whose dependencies are not met: no position (it would hold none and block no
  one, as the pass does), the conditions it would wait for, or why it would fail at
  once where they can never be met;
- nearby alternatives that start sooner: with fewer GPUs (halves, down to one), or in
  another queue the caller may use (the API server's own dry run of the job moved
  there says whether they may: queue access is the installer's policy's to judge).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime

from shunter.api.schemas import Alternative, StartRangePublic, WhatIf
from shunter.domain.dependencies import Judgement, Outcome
from shunter.domain.estimates import MID, Estimate, Plan
from shunter.domain.model import Job
from shunter.domain.ordering import Sharing
from shunter.domain.queues import DEFAULT_QUEUE, QueueView
from shunter.domain.victims import what_if_preempter
from shunter.domain.whatif import insert

# Alternatives looked at: other queues (each one costs a dry run when sooner).
MAX_QUEUES = 5


async def answer_what_if(
    job: Job, kept: Plan | None, *, now: datetime, queues: Mapping[str, QueueView],
    holders: Iterable[Job], allowed: Callable[[str], Awaitable[bool]],
    waiting: Mapping[str, int] | None = None, max_sized_grace: int | None = None,
    dependencies: Judgement | None = None,
) -> WhatIf:  # fmt: skip
    base = {"job_id": job.key.name, "namespace": job.key.namespace, "queue": job.spec.queue}
    if dependencies is not None and dependencies.outcome is not Outcome.SATISFIED:
        return _not_queued(base, dependencies)
    if kept is None:
        position = (waiting or {}).get(job.spec.queue, 0) + 1
        why = "no plan of the queue yet (estimates are off, or the operator has not published one)"
        return WhatIf(**base, position=position, ahead=position - 1,
                      estimated_start_range=StartRangePublic(reason=why),
                      message=f"Would wait in queue at position {position}; {why}")  # fmt: skip
    active = list(holders)
    sharing = Sharing.now(queues, active, now)
    answer = insert(kept, job, now=now, queues=queues, sharing=sharing,
                    preempt=what_if_preempter(max_sized_grace), active=active)  # fmt: skip
    e = answer.estimate
    starts_now = e.start is not None and e.start <= now
    victims = [v for v, _ in answer.victims]
    alternatives = [] if starts_now else await _alternatives(job, kept, now=now, queues=queues,
                                                             sooner_than=e.start,
                                                             allowed=allowed,
                                                             sharing=sharing)  # fmt: skip
    return WhatIf(
        **base, position=answer.position, ahead=answer.ahead, estimated_start=e.start,
        estimated_start_range=StartRangePublic(earliest=e.earliest, latest=e.latest,
                                               reason=e.reason),
        starts_now=starts_now, would_preempt=bool(victims),
        preempts=[str(v.key) for v in victims], alternatives=alternatives,
        message=_message(answer.position, e.start, e.reason, now=now, victims=len(victims)),
        plan_made_at=kept.version,
    )  # fmt: skip


def _not_queued(base: Mapping[str, str], dependencies: Judgement) -> WhatIf:
    """A job whose dependencies are not met holds no place in its queue (the pass
    judges it as shunter.domain.dependencies.judge does here): it would wait for them,
    or fail at once where they can never be met."""
    if dependencies.outcome is Outcome.WAITING:
        estimate = Estimate.waiting_for_dependencies(dependencies.message)
        message = (f"Would wait for its dependencies, holding no place in its queue:"
                   f" {dependencies.message}")  # fmt: skip
    else:
        estimate = Estimate(reason=dependencies.message)
        message = f"Would end at once ({dependencies.reason}): {dependencies.message}"
    return WhatIf(**base, position=None, ahead=0,
                  estimated_start_range=StartRangePublic(reason=estimate.reason),
                  message=message)  # fmt: skip


async def _alternatives(job: Job, kept: Plan, *, now: datetime,
                        queues: Mapping[str, QueueView], sooner_than: datetime | None,
                        allowed: Callable[[str], Awaitable[bool]],
                        sharing: Sharing | None = None) -> list[Alternative]:  # fmt: skip
    def sooner(start: datetime | None) -> bool:
        return start is not None and (sooner_than is None or start < sooner_than)

    found: list[Alternative] = []
    gpus = job.spec.gpus
    while gpus > 1:
        gpus //= 2
        fewer = replace(job, spec=replace(job.spec, gpus=gpus))
        start = insert(kept, fewer, now=now, queues=queues, scenarios=(MID,),
                       sharing=sharing).estimate.start  # fmt: skip
        if start is not None and sooner(start):
            found.append(Alternative(gpus=gpus, queue=job.spec.queue, estimated_start=start,
                                     message=f"with {gpus} GPU{'s' if gpus > 1 else ''}:"
                                             f" {_when(start, now)}"))  # fmt: skip
            break  # the largest that is sooner
    names = sorted({*queues, DEFAULT_QUEUE} - {job.spec.queue})[:MAX_QUEUES]
    for name in names:
        moved = replace(job, spec=replace(job.spec, queue=name))
        start = insert(kept, moved, now=now, queues=queues, scenarios=(MID,),
                       sharing=sharing).estimate.start  # fmt: skip
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
        text = "Would start now"
    else:
        text = f"Would wait in queue at position {position}; estimated start {_when(start, now)}"
    if victims:
        text += f"; it would preempt {victims} job{'s' if victims > 1 else ''} to start"
    return text
