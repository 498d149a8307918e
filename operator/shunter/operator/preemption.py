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
many candidates) the cheapest-first greedy pick with put-back below stands in.

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

import heapq
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from shunter.domain.admission import AdmissionState
from shunter.domain.estimates import Preempter, Stops
from shunter.domain.model import Job, Phase, StopCause
from shunter.domain.queues import LOWER_PRIORITY, max_grace, queue_of
from shunter.domain.workloss import checkpoints_on_stop, grace_for, stop_cost
from shunter.operator.rules import Rules
from shunter.operator.stopping import StopView, grace_of

# Trial admissions the cheapest-first search may make before the greedy pick stands in.
SEARCH_LIMIT = 256
# Stops made for other jobs: they count against the anti-loop rules alike.
STOPPED_FOR_OTHERS = ("Preempted", "TimeSliced")


@dataclass(frozen=True)
class Preemption:
    victims: tuple[Job, ...]  # new victims to stop now
    waiting_for: int  # victims already stopping for it
    # The grace each victim's stop gives (None: the sized grace), in victims' order.
    graces: tuple[int | None, ...] = ()

    def grace(self, index: int) -> int | None:
        return self.graces[index] if index < len(self.graces) else None


def being_preempted(job: Job) -> bool:
    """Being stopped for another job (a preemption or the end of its time slice)."""
    t = job.status.termination
    return (job.phase is Phase.STOPPING and t is not None
            and t.cause in (StopCause.PREEMPT, StopCause.TIME_SLICE))  # fmt: skip


def reports(job: Job) -> bool:
    """Its trainer has reported progress or a checkpoint."""
    return job.status.progress is not None or job.status.checkpoint is not None


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
    gpus = job.spec.total_gpus
    priced = [(stop_cost(job, now=now, grace=g).gpu_seconds(gpus, waiting=waiting), g)
              for g in grace_options(job, state, rules)]  # fmt: skip
    return min(priced, key=lambda pair: pair[0])


def grace_options(job: Job, state: AdmissionState, rules: Rules) -> list[int]:
    """The graces a victim's stop may get: its sized one (when sizing is on), then its
    own fixed one, both within its queue's bound."""
    queue_max = max_grace(job, state.queues)
    options = [grace_for(job, queue_max=queue_max, cap=None)]
    if rules.size_grace:
        cap = int(rules.max_sized_grace.total_seconds())
        options.insert(0, grace_for(job, queue_max=queue_max, cap=cap))
    return options


def protected(job: Job, *, now: datetime, rules: Rules) -> bool:
    """Preempted too often lately, and has not run long enough since."""
    recent = [a for a in job.status.history if a.reason in STOPPED_FOR_OTHERS
              and a.finished_at and now - a.finished_at < rules.preemption_window]  # fmt: skip
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
    found.sort(key=todays_order(now))
    return found


def todays_order(now: datetime) -> Callable[[Job], tuple[int, float, str]]:
    """The order victims are taken in when nothing else decides: lowest priority first,
    then the most recently started, then by name."""
    since = datetime.min.replace(tzinfo=now.tzinfo)
    return lambda j: (j.spec.priority, -(j.status.running_since or since).timestamp(),
                      j.key.name)  # fmt: skip


def choose(
    preemptor: Job, state: AdmissionState, *, active: Sequence[Job], now: datetime, rules: Rules
) -> Preemption | None:
    """Victims that let the preemptor start, or None if preemption cannot help."""
    trial, stopping, fits = _trial(preemptor, state, active, now=now)
    if fits:
        return Preemption((), stopping) if stopping else None
    found = candidates(preemptor, active, state, now=now, rules=rules)
    return _pick(preemptor, state, trial, found, stopping=stopping, now=now, rules=rules)


def _trial(preemptor: Job, state: AdmissionState, active: Sequence[Job], *,
           now: datetime) -> tuple[AdmissionState, int, bool]:  # fmt: skip
    """The state with the jobs already being stopped for others gone (they count as
    freed: a pass never picks new victims for a preemptor only waiting for earlier
    ones), how many they are, and whether the preemptor fits then."""
    trial = state.copy()
    stopping = [j for j in active if being_preempted(j)]
    for job in stopping:
        trial.give(job)
    return trial, len(stopping), trial.verdict(preemptor, now=now).kind == "admit"


def choose_fair(
    preemptor: Job, state: AdmissionState, *, active: Sequence[Job], now: datetime, rules: Rules
) -> Preemption | None:
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
    trial, stopping, fits = _trial(preemptor, state, active, now=now)
    if fits:
        return Preemption((), stopping) if stopping else None
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
            return Preemption(tuple(chosen), stopping)
    return None


def for_estimates(rules: Rules) -> Preempter:
    """What a pass stops for a waiting head (`choose`, then `choose_fair`, then the
    end of time slices: planning._Walk._preempt and _slice), for the estimates'
    simulation (shunter.domain.estimates.World.preempt): the victims, each with the
    grace its stop gives (stopping.grace_of)."""

    def preempt(head: Job, state: AdmissionState, active: Sequence[Job], now: datetime) -> Stops:
        found = choose(head, state, active=active, now=now, rules=rules)
        if found is None:
            found = choose_fair(head, state, active=active, now=now, rules=rules)
        behind, wake = False, None
        if found is None:
            slicing = time_slice(head, state, active=active, now=now, rules=rules)
            found, behind, wake = slicing.yielding, True, slicing.next_end
        if found is None:
            return Stops(wake=wake)
        victims = []
        for i, victim in enumerate(found.victims):
            view = StopView({}, max_grace=max_grace(victim, state.queues), grace=found.grace(i))
            victims.append((victim, grace_of(victim, view, rules)))
        return Stops(tuple(victims), behind, wake)

    return preempt


def _pick(preemptor: Job, state: AdmissionState, trial: AdmissionState, found: list[Job], *,
          stopping: int, now: datetime, rules: Rules) -> Preemption | None:  # fmt: skip
    """Victims among `found` (in today's order) that let the preemptor start."""
    if not found or not _admits(preemptor, trial, found, now=now):
        return None  # even every candidate would not be enough
    if rules.checkpoint_aware and any(reports(j) for j in found):
        waiting = preemptor.spec.total_gpus
        plans = {j.key: stop_plan(j, state, now=now, rules=rules, waiting=waiting) for j in found}
        costs = {key: plan[0] for key, plan in plans.items()}
        # Cheapest first; among equals today's order (`found` is sorted by it).
        found.sort(key=lambda j: costs[j.key])
        cheapest = _cheapest(preemptor, trial, found, [costs[j.key] for j in found], now=now)
        if cheapest is not None:
            graces = tuple(plans[j.key][1] for j in cheapest)
            return Preemption(tuple(cheapest), stopping, graces)
    return _greedy(preemptor, trial, found, now=now, stopping=stopping)


def _admits(preemptor: Job, trial: AdmissionState, victims: Iterable[Job], *,
            now: datetime) -> bool:  # fmt: skip
    again = trial.copy()
    for job in victims:
        again.give(job)
    return again.verdict(preemptor, now=now).kind == "admit"


def _cheapest(preemptor: Job, trial: AdmissionState, found: Sequence[Job],
              costs: Sequence[float], *, now: datetime) -> list[Job] | None:  # fmt: skip
    """The cheapest set of `found` (sorted by cost) that lets the preemptor start.

    Subsets come in order of total cost: from a set whose last (costliest) member is
    i, the next ones add i+1, or swap i for i+1; every subset is reached once, never
    before a cheaper one. Ties keep the order of `found`. None when SEARCH_LIMIT
    trials found none."""
    heap: list[tuple[float, tuple[int, ...]]] = [(costs[0], (0,))]
    tried = 0
    while heap and tried < SEARCH_LIMIT:
        cost, members = heapq.heappop(heap)
        tried += 1
        if _admits(preemptor, trial, (found[i] for i in members), now=now):
            return [found[i] for i in members]
        last = members[-1]
        if last + 1 < len(found):
            heapq.heappush(heap, (cost + costs[last + 1], (*members, last + 1)))
            heapq.heappush(heap, (cost - costs[last] + costs[last + 1], (*members[:-1], last + 1)))
    return None


def _greedy(preemptor: Job, trial: AdmissionState, found: Sequence[Job], *, now: datetime,
            stopping: int) -> Preemption | None:  # fmt: skip
    """Victims in `found`'s order until the preemptor fits, then every one not needed
    is put back (the most important first)."""
    chosen: list[Job] = []
    for job in found:
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
    return Preemption(tuple(chosen), stopping)


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
               rules: Rules) -> Slicing:  # fmt: skip
    """Jobs of the head's priority and queue whose slice is over, longest-running
    first, that yield so the head can start (TrainingQueue timeSliceSeconds)."""
    queue = queue_of(head.spec.queue, state.queues)
    if queue is None or queue.time_slice is None:
        return Slicing(None, None)
    trial, stopping, fits = _trial(head, state, active, now=now)
    if stopping and fits:
        return Slicing(Preemption((), stopping), None)
    over: list[tuple[datetime, Job]] = []
    next_end: datetime | None = None
    for job in active:
        same = job.spec.queue == head.spec.queue and job.spec.priority == head.spec.priority
        end = slice_end(job, queue.time_slice) if same and not job.spec.cancelled else None
        if end is None or protected(job, now=now, rules=rules):
            continue
        if end > now:
            next_end = end if next_end is None else min(next_end, end)
            continue
        over.append((job.status.running_since or now, job))
    over.sort(key=lambda pair: (pair[0], pair[1].key.name))
    found = [job for _, job in over]
    if not found or not _admits(head, trial, found, now=now):
        return Slicing(None, next_end)
    return Slicing(_greedy(head, trial, found, now=now, stopping=stopping), next_end)
