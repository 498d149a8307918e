"""Which running jobs to stop so a higher-priority (or reclaiming) job can start (pure).

When the head of a queue cannot start for lack of slots, quota or capacity, and its
queue's policy is `lowerPriority`, the operator preempts jobs of the same queue with a
lower priority; a queue below its own nominal GPU quota also reclaims GPUs that other
queues of its cohort borrowed, from any of their jobs. Victims are stopped like a
cancel (SIGTERM, the trainer checkpoints, then force), go back to the queue with
reason `Preempted` and resume from their checkpoint later.

The choice, as Kueue and Slurm users expect: the fewest jobs, lowest priority first,
most recently started first among equals, and only jobs whose removal is needed (a
greedy pick, then every victim that is not needed is put back). Never a job of equal
or higher priority within the queue. No preemption loops: a job preempted
`preemption_limit` times within `preemption_window` is protected until it has run
`min_run` since it last started. Jobs already being stopped for a preemption count as
gone, so a pass never picks new victims for a preemptor that is only waiting for the
earlier ones to stop.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from shunter.domain.admission import AdmissionState
from shunter.domain.model import Job, Phase, StopCause
from shunter.domain.queues import LOWER_PRIORITY, queue_of
from shunter.operator.rules import Rules


@dataclass(frozen=True)
class Preemption:
    victims: tuple[Job, ...]  # new victims to stop now
    waiting_for: int  # victims already stopping for it


def being_preempted(job: Job) -> bool:
    t = job.status.termination
    return job.phase is Phase.STOPPING and t is not None and t.cause is StopCause.PREEMPT


def protected(job: Job, *, now: datetime, rules: Rules) -> bool:
    """Preempted too often lately, and has not run long enough since."""
    recent = [a for a in job.status.history if a.reason in ("Preempted", "TimeSliced") and a.finished_at
              and now - a.finished_at < rules.preemption_window]  # fmt: skip
    if len(recent) < rules.preemption_limit:
        return False
    since = job.status.running_since
    return since is None or now - since < rules.min_run


def candidates(preemptor: Job, active: Iterable[Job], state: AdmissionState, *, now: datetime,
               rules: Rules) -> list[Job]:  # fmt: skip
    """Jobs the preemptor may preempt, in the order they would be chosen."""
    queue = queue_of(preemptor.spec.queue, state.queues)
    if queue is None:
        return []
    same = queue.preemption == LOWER_PRIORITY
    reclaim = queue.cohort is not None and state.quota.within_nominal(preemptor)
    found = []
    for job in active:
        if job.phase not in (Phase.STARTING, Phase.RUNNING) or job.spec.cancelled:
            continue
        if protected(job, now=now, rules=rules):
            continue
        if job.spec.queue == preemptor.spec.queue:
            if same and job.spec.priority < preemptor.spec.priority:
                found.append(job)
            continue
        other = queue_of(job.spec.queue, state.queues)
        if (
            reclaim
            and other is not None
            and other.cohort == queue.cohort
            and (state.quota.borrowed(other.name) > 0)
        ):
            found.append(job)
    since = datetime.min.replace(tzinfo=now.tzinfo)
    found.sort(key=lambda j: (j.spec.priority, -(j.status.running_since or since).timestamp(),
                              j.key.name))  # fmt: skip
    return found


def choose(
    preemptor: Job, state: AdmissionState, *, active: Sequence[Job], now: datetime, rules: Rules
) -> Preemption | None:
    """Victims that let the preemptor start, or None if preemption cannot help."""
    trial = state.copy()
    stopping = [j for j in active if being_preempted(j)]
    for job in stopping:
        trial.give(job)
    if trial.verdict(preemptor, now=now).kind == "admit":
        return Preemption((), len(stopping)) if stopping else None
    chosen: list[Job] = []
    for job in candidates(preemptor, active, state, now=now, rules=rules):
        trial.give(job)
        chosen.append(job)
        if trial.verdict(preemptor, now=now).kind == "admit":
            break
    else:
        return None
    # Put back every victim that is not needed (the most important first).
    for job in reversed(list(chosen)):
        again = trial.copy()
        again.take(job, job.status.placement)
        if again.verdict(preemptor, now=now).kind == "admit":
            trial = again
            chosen.remove(job)
    return Preemption(tuple(chosen), len(stopping))
