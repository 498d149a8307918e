"""Which running jobs to stop so a higher-priority (or reclaiming) job can start (pure).

When the head of a queue cannot start for lack of slots, quota or capacity, and its
queue's policy is `lowerPriority`, the operator preempts jobs of the same queue with a
lower priority; a queue below its own nominal GPU quota also reclaims GPUs that other
queues of its cohort borrowed, from any of their jobs. Victims are stopped like a
cancel (SIGTERM, the trainer checkpoints, then force), go back to the queue with
reason `Preempted` and resume from their checkpoint later.

Which victims, when any candidate's trainer reports (and `Rules.checkpoint_aware`):
the set that loses the least work and frees the GPUs soonest, in GPU-seconds
(shunter.domain.workloss.stop_cost: the work since each victim's last complete
checkpoint at the end of its stop, plus the stop's own time on the victim's GPUs and
on the preemptor's, which wait for it; summed over victims, so victims stopping side
by side count the preemptor's wait more than once: a bias to fewer, faster stops,
kept because it makes the cost additive and the search exact); then lower priority,
then the most recently started. The sets are searched cheapest first (subsets in
order of total cost, so the first that lets the preemptor start is the cheapest),
for at most SEARCH_LIMIT trial admissions; beyond that (a preemptor needing many of
many candidates) the cheapest-first greedy pick with put-back below stands in. The
choice itself is shunter.domain.victims's (the API's what-if makes it too); this
module gives it the operator's rules: the anti-loop protection, checkpoint_aware and
the cap on a sized grace.

When no candidate reports, the choice is today's, as Kueue and Slurm users expect:
the fewest jobs, lowest priority first, most recently started first among equals,
and only jobs whose removal is needed (a greedy pick, then every victim that is not
needed is put back). Never a job of equal
or higher priority within the queue. No preemption loops: a job preempted
`preemption_limit` times within `preemption_window` is protected until it has run
`min_run` since it last started. Jobs already being stopped for a preemption count as
gone, so a pass never picks new victims for a preemptor that is only waiting for the
earlier ones to stop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shunter.domain import victims as pure
from shunter.domain.admission import AdmissionState
from shunter.domain.estimates import Preempter, Stops
from shunter.domain.model import Job, Phase
from shunter.domain.queues import max_grace, queue_of
from shunter.domain.victims import Preemption, admits, greedy, todays_order, trial_state
from shunter.domain.workloss import checkpoints_on_stop
from shunter.operator.rules import Rules
from shunter.operator.stopping import StopView, grace_of

# Stops made for other jobs: they count against the anti-loop rules alike.
STOPPED_FOR_OTHERS = ("Preempted", "TimeSliced")


def cost_of(job: Job, state: AdmissionState, *, now: datetime, rules: Rules,
            waiting: int = 0) -> float:  # fmt: skip
    """GPU-seconds a stop of the job started now would cost: its lost work, its GPUs
    held through the stop, and the `waiting` GPUs of the preemptor idle meanwhile (a
    victim that loses nothing but takes five minutes to checkpoint also costs the
    preemptor five minutes)."""
    return stop_plan(job, state, now=now, rules=rules, waiting=waiting)[0]


def stop_plan(job: Job, state: AdmissionState, *, now: datetime, rules: Rules,
              waiting: int = 0) -> tuple[float, int]:  # fmt: skip
    """The cheaper way to stop the job for a preemptor, and its cost: the grace sized
    to its checkpoint (nothing lost, the GPUs held through its write), or its own
    fixed grace (killed before a slow checkpoint: its work since the last one lost,
    the GPUs free sooner). A trainer whose checkpoint fits its own grace gets it."""
    return pure.stop_plan(job, state.queues, now=now, cap=sized_cap(rules), waiting=waiting)


def grace_options(job: Job, state: AdmissionState, rules: Rules) -> list[int]:
    """The graces a victim's stop may get: its sized one (when sizing is on), then its
    own fixed one, both within its queue's bound."""
    return pure.grace_options(job, state.queues, sized_cap(rules))


def sized_cap(rules: Rules) -> int | None:
    """The cap on a grace sized to checkpoint writes (None: sizing off)."""
    return int(rules.max_sized_grace.total_seconds()) if rules.size_grace else None


def protected(job: Job, *, now: datetime, rules: Rules) -> bool:
    """Preempted too often lately, and has not run long enough since."""
    recent = [a for a in job.status.history if a.reason in STOPPED_FOR_OTHERS
              and a.finished_at and now - a.finished_at < rules.preemption_window]  # fmt: skip
    if len(recent) < rules.preemption_limit:
        return False
    since = job.status.running_since
    return since is None or now - since < rules.min_run


def candidates(preemptor: Job, active: Sequence[Job], state: AdmissionState, *, now: datetime,
               rules: Rules) -> list[Job]:  # fmt: skip
    """Jobs the preemptor may preempt, in the order they would be chosen."""
    return pure.candidates(preemptor, active, state, now=now,
                           protected=lambda j: protected(j, now=now, rules=rules))  # fmt: skip


def choose(preemptor: Job, state: AdmissionState, *, active: Sequence[Job], now: datetime,
           rules: Rules, stopping: Sequence[Job] | None = None) -> Preemption | None:  # fmt: skip
    """Victims that let the preemptor start, or None if preemption cannot help
    (shunter.domain.victims.choose, with the operator's rules; `stopping`:
    victims.trial_state's)."""
    return pure.choose(
        preemptor, state, active=active, now=now,
        protected=lambda j: protected(j, now=now, rules=rules), aware=rules.checkpoint_aware,
        price=lambda j, waiting: stop_plan(j, state, now=now, rules=rules, waiting=waiting),
        stopping=stopping,
    )  # fmt: skip


def choose_fair(preemptor: Job, state: AdmissionState, *, active: Sequence[Job],
                now: datetime, rules: Rules,
                stopping: Sequence[Job] | None = None) -> Preemption | None:  # fmt: skip
    """Victims in other queues of the preemptor's cohort that borrow above their fair
    share (its queue's fairSharing.preemption is aboveFairShare), or None.

    One victim at a time, from the member with the highest share: a job of priority at
    most the preemptor's whose removal leaves its queue's share at least the
    preemptor queue's share with the preemptor admitted (Kueue's
    LessThanOrEqualToFinalShare), lowest priority and most recently started first;
    until the preemptor fits. Stops are ordinary stops: checkpoint, back to the queue."""
    queue = queue_of(preemptor.spec.queue, state.queues)
    if queue is None or not queue.preempts_above_fair_share or queue.gpu_quota is None:
        return None
    trial, stopping_for, fits = trial_state(preemptor, state, active, now=now, stopping=stopping)
    if fits:
        return Preemption((), stopping_for) if stopping_for else None
    members = {m.name: m for m in trial.quota.members(queue) if m.name != queue.name}
    pool = sorted(
        (j for j in active if j.spec.queue in members and j.phase in (Phase.STARTING, Phase.RUNNING)
         and not j.spec.cancelled and j.spec.priority <= preemptor.spec.priority
         and not protected(j, now=now, rules=rules)),
        key=todays_order(now),
    )  # fmt: skip
    chosen: list[Job] = []
    while pool:
        mine = trial.quota.share(queue, preemptor.spec.total_gpus)
        best: tuple[float, int] | None = None
        for i, job in enumerate(pool):
            member = members[job.spec.queue]
            if trial.quota.borrowed(member.name) <= 0:
                continue
            after = trial.quota.share(member, -job.spec.total_gpus)
            if mine <= after and (best is None or after > best[0]):
                best = (after, i)
        if best is None:
            return None
        victim = pool.pop(best[1])
        trial.give(victim)
        chosen.append(victim)
        if trial.verdict(preemptor, now=now).kind == "admit":
            return Preemption(tuple(chosen), stopping_for)
    return None


def for_estimates(rules: Rules) -> Preempter:
    """What a pass stops for a waiting head (`choose`, then `choose_fair`, then the
    end of time slices: planning._Walk._preempt and _slice), for the estimates'
    simulation (shunter.domain.estimates.World.preempt): the victims, each with the
    grace its stop gives (stopping.grace_of)."""

    def preempt(head: Job, state: AdmissionState, active: Sequence[Job], now: datetime) -> Stops:
        grouped = pure.Grouped.of(active, state.queues)
        near, stopping = grouped.near(head, state.queues), grouped.stopping
        found = choose(head, state, active=near, now=now, rules=rules, stopping=stopping)
        if found is None:
            found = choose_fair(head, state, active=near, now=now, rules=rules, stopping=stopping)
        behind, wake = False, None
        if found is None:
            slicing = time_slice(head, state, active=near, now=now, rules=rules,
                                 stopping=stopping)  # fmt: skip
            found, behind, wake = slicing.yielding, True, slicing.next_end
        if found is None:
            return Stops(wake=wake)
        victims = []
        for i, victim in enumerate(found.victims):
            view = StopView({}, max_grace=max_grace(victim, state.queues), grace=found.grace(i))
            victims.append((victim, grace_of(victim, view, rules)))
        return Stops(tuple(victims), behind, wake)

    return preempt


def slice_end(job: Job, slice_seconds: int) -> datetime | None:
    """When the running job yields its time slice (None: it is not running).

    At the end of its slice, when it checkpoints on a stop (or reports nothing, and is
    stopped as any stop does: SIGTERM, checkpoint, exit 75). A trainer that reports
    checkpoints but cannot checkpoint on a stop yields at its next reported checkpoint
    after the slice, or one more slice later if none comes."""
    since = job.status.running_since
    if job.phase is not Phase.RUNNING or since is None:
        return None
    end = since + timedelta(seconds=slice_seconds)
    checkpoint = job.status.checkpoint
    if checkpoint is None or checkpoints_on_stop(job):
        return end
    if checkpoint.attempt == job.status.attempts and checkpoint.time >= end:
        return checkpoint.time
    return end + timedelta(seconds=slice_seconds)


@dataclass(frozen=True)
class Slicing:
    yielding: Preemption | None  # jobs to stop now (None: none can help now)
    next_end: datetime | None  # when the next slice of a job of this priority ends


def time_slice(head: Job, state: AdmissionState, *, active: Sequence[Job], now: datetime,
               rules: Rules, stopping: Sequence[Job] | None = None) -> Slicing:  # fmt: skip
    """Jobs of the head's priority and queue whose slice is over, longest-running
    first, that yield so the head can start (TrainingQueue timeSliceSeconds;
    `stopping`: victims.trial_state's)."""
    queue = queue_of(head.spec.queue, state.queues)
    if queue is None or queue.time_slice is None:
        return Slicing(None, None)
    trial, stopping_for, fits = trial_state(head, state, active, now=now, stopping=stopping)
    if stopping_for and fits:
        return Slicing(Preemption((), stopping_for), None)
    over: list[tuple[datetime, Job]] = []
    next_end: datetime | None = None
    for job in active:
        same = job.spec.queue == head.spec.queue and job.spec.priority == head.spec.priority
        end = slice_end(job, queue.time_slice) if same and not job.spec.cancelled else None
        if end is None:
            continue
        if protected(job, now=now, rules=rules):  # it yields once it has run min_run
            end = max(end, (job.status.running_since or now) + rules.min_run)
        if end > now:
            next_end = end if next_end is None else min(next_end, end)
            continue
        over.append((job.status.running_since or now, job))
    over.sort(key=lambda pair: (pair[0], pair[1].key.name))
    found = [job for _, job in over]
    if not found or not admits(head, trial, found, now=now):
        return Slicing(None, next_end)
    return Slicing(greedy(head, trial, found, now=now, stopping=stopping_for), next_end)
