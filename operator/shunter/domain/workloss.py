"""What stopping a running job costs, from what its trainer reported (pure).

The one owner of two rules the operator and the API both show:

- `grace_for`: the grace period a stop gives the job's Pods. The job's own
  `terminationGracePeriodSeconds`, raised to fit its observed checkpoint writes
  (the longest write seen, with half again and SIZING_MARGIN on top), never above
  its queue's `maxGracePeriodSeconds` (or the operator's cap when the queue sets
  none). A trainer that never reported a checkpoint keeps the fixed grace.
- `stop_cost`: the work a stop started now would lose, and how long the stop would
  hold the GPUs. Work lost is the work since the last complete checkpoint at the
  moment the process ends:
  - nothing, when the trainer checkpoints on a stop and its writes fit the grace
    (it said so in its reports, or an earlier stop ended with exit code 75); the
    stop then lasts about one checkpoint write;
  - everything since its last checkpoint of this attempt (or since the attempt
    started) otherwise: it cannot checkpoint on a signal, or its write takes longer
    than the grace and the kubelet kills it first (the stop then lasts the grace).
  A job that never reported anything is assumed to lose everything since it
  started, unless an earlier stop of it ended with exit code 75.

Preemption ranks victims by `GPU-seconds = total GPUs x (lost + stop)`; the API shows
the same figure as "work lost if stopped now".
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from shunter.domain.model import Job

# Seconds added to a sized grace period on top of 1.5 x the longest observed write.
SIZING_MARGIN = 5
# The exit code of a trainer that checkpointed on SIGTERM (the acceptance contract).
CHECKPOINTED_EXIT = 75


def grace_for(job: Job, *, queue_max: int | None, cap: int | None) -> int:
    """The grace period a stop of the job gives its Pods (see the module doc).

    `cap` bounds a sized grace where the queue sets no bound; None turns sizing off
    (the job's own grace within its queue's bound, as before reports existed).
    """
    grace = job.spec.termination_grace_period_seconds
    checkpoint = job.status.checkpoint
    if cap is not None and checkpoint is not None and checkpoint.max_write_seconds > 0:
        needed = math.ceil(checkpoint.max_write_seconds * 1.5) + SIZING_MARGIN
        grace = max(grace, min(needed, queue_max if queue_max is not None else cap))
    return grace if queue_max is None else min(grace, queue_max)


# Attempts that ended in a stop the trainer was asked to checkpoint for.
CHECKPOINTING_STOPS = ("Preempted", "TimeSliced", "Suspended")


def checkpoints_on_stop(job: Job) -> bool:
    """Known to checkpoint when stopped: it says so in its reports and no such stop
    ended otherwise than with exit code 75 (killed, or it did not handle SIGTERM); or,
    reporting nothing, an earlier stop ended with exit 75."""
    stops = [a for a in job.status.history
             if a.reason in CHECKPOINTING_STOPS and a.exit_code is not None]  # fmt: skip
    checkpoint = job.status.checkpoint
    if checkpoint is not None:
        return checkpoint.on_stop and all(a.exit_code == CHECKPOINTED_EXIT for a in stops)
    return any(a.exit_code == CHECKPOINTED_EXIT for a in stops)


def attempt_began(job: Job) -> datetime | None:
    """When the current attempt began: it last started running, or, admitted again
    and not running yet, its admission (running_since still names the last run)."""
    marks = [t for t in (job.status.running_since, job.status.admitted_at) if t is not None]
    return max(marks) if marks else None


@dataclass(frozen=True)
class StopCost:
    lost_seconds: float  # work since the last complete checkpoint at the stop's end
    stop_seconds: float  # how long the stop holds the GPUs
    basis: str  # how it was judged, for the UI and the preemption log

    def gpu_seconds(self, gpus: int, *, waiting: int = 0) -> float:
        """The GPU-seconds lost: the job's own work and the time its GPUs spend in the
        stop, plus the time `waiting` GPUs (a preemptor's) sit idle until it is over."""
        return gpus * (self.lost_seconds + self.stop_seconds) + waiting * self.stop_seconds


def stop_cost(job: Job, *, now: datetime, grace: int) -> StopCost:
    """What stopping the (running) job now would cost (see the module doc)."""
    status = job.status
    began = attempt_began(job) or now
    checkpoint = status.checkpoint
    last = began
    if checkpoint is not None and checkpoint.attempt == status.attempts:
        last = max(began, checkpoint.time)
    since = max(0.0, (now - last).total_seconds())
    if checkpoints_on_stop(job):
        write = checkpoint.max_write_seconds if checkpoint is not None else None
        if write is None:
            return StopCost(0.0, float(grace), "checkpointed on an earlier stop (exit 75)")
        if write <= grace:
            return StopCost(0.0, write, f"checkpoints on a stop in about {write:g}s")
        why = f"its checkpoint ({write:g}s) takes longer than the grace ({grace}s)"
        return StopCost(since, float(grace), why)
    if checkpoint is None:
        return StopCost(since, 0.0, "reports no checkpoints: loses everything since it started")
    return StopCost(since, 0.0, "does not checkpoint on a stop: loses the work since its last")
