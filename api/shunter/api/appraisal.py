"""What a live view judges against the clock: a checkpoint's age, and the work a stop
started now would lose ("work lost if stopped now").

The rule is shunter.domain.workloss's, the one the operator ranks preemption victims
by; this module only gathers its inputs as the API has them:

- the time, in whole seconds: every view rendered within one second says the same, so
  a rendered body (shunter.api.rendering) can be reused within that second;
- each queue's `maxGracePeriodSeconds` (the watch cache's TrainingQueues);
- the cap on a grace period sized from observed checkpoint writes where the queue
  sets no bound (SHUNTER_MAX_SIZED_GRACE_SECONDS, the operator's setting, which the
  chart gives both).

Only a running job that is not being stopped has a work-lost figure: a job stopping
already pays for its stop, and a queued or finished one has nothing to lose.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from shunter.domain.estimates import Estimate, Plan
from shunter.domain.model import Job, Phase
from shunter.domain.queues import QueueView, max_grace
from shunter.domain.workloss import StopCost, grace_for, stop_cost


@dataclass(frozen=True)
class Appraisal:
    now: datetime  # whole seconds
    queues: Mapping[str, QueueView]
    max_sized_grace: int
    # What else a rendered body depends on besides the job and the time (the queues'
    # version): part of the key under which it is reused.
    version: object = None
    # The operator's kept plan (shunter.api.plans): queued jobs' estimated starts.
    plan: Plan | None = None

    def estimate(self, job: Job) -> Estimate | None:
        """A queued job's estimated start: the plan's, else what its status shows."""
        if not job.queued:
            return None
        found = self.plan.estimate(job.key) if self.plan is not None else None
        return found if found is not None else Estimate.shown(job.status)

    def work_lost(self, job: Job) -> StopCost | None:
        """What stopping the job now would cost; None unless it runs and no stop began."""
        if job.phase is not Phase.RUNNING or job.status.termination is not None:
            return None
        grace = grace_for(job, queue_max=max_grace(job, self.queues), cap=self.max_sized_grace)
        return stop_cost(job, now=self.now, grace=grace)

    def checkpoint_age(self, job: Job) -> float | None:
        checkpoint = job.status.checkpoint
        if checkpoint is None:
            return None
        return max(0.0, (self.now - checkpoint.time).total_seconds())

    def key_of(self, job: Job) -> tuple[object, ...]:
        """What the job's rendered body depends on besides the job itself: the time and
        the queues for a running job or one with a checkpoint, nothing otherwise."""
        if job.phase is Phase.RUNNING or job.status.checkpoint is not None:
            return (self.now, self.version)
        if job.queued and self.plan is not None:
            return (self.plan.version,)
        return ()
