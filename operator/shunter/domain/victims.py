"""Which running jobs a preemptor stops, by its queue's rules (pure).

The pure part of shunter.operator.preemption's `choose`, so the operator's pass (and
its estimates, through World.preempt) and the API's what-if choose victims with one
rule. What only the operator knows comes in as arguments: which jobs its anti-loop
rule protects (`protected`), whether the choice is checkpoint-aware (`aware`), and
how a stop of a victim is priced (`price`: its cost in GPU-seconds and the grace it
gets, `stop_plan` with the operator's cap on a sized grace).

The rule (shunter.operator.preemption's module doc has the why): candidates are the
queue's running jobs of lower priority where its policy is `lowerPriority`, and the
jobs of other queues of its cohort that borrow while the preemptor's queue is within
its nominal quota (reclaim). When a candidate's trainer reports and the choice is
aware, the cheapest set in GPU-seconds that lets the preemptor start (searched
cheapest first, at most SEARCH_LIMIT trial admissions); otherwise the fewest jobs,
lowest priority first, most recently started first among equals, and only those
whose removal is needed. Jobs already being stopped for others count as gone.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from shunter.domain.admission import AdmissionState
from shunter.domain.estimates import Preempter, Stops
from shunter.domain.model import Job, Phase, StopCause
from shunter.domain.queues import LOWER_PRIORITY, QueueView, group_of, max_grace, queue_of
from shunter.domain.workloss import grace_for, stop_cost

# Trial admissions the cheapest-first search may make before the greedy pick stands in.
SEARCH_LIMIT = 256

# A victim's stop priced for a preemptor holding `waiting` GPUs idle meanwhile:
# (GPU-seconds, the grace the stop gives).
Price = Callable[[Job, int], tuple[float, int]]


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


@dataclass(frozen=True)
class Grouped:
    """Running jobs as the victim searches take them: by group (group_of), and those
    being stopped for others anywhere (trial_state's `stopping`)."""

    groups: Mapping[tuple[str, str], Sequence[Job]]
    stopping: Sequence[Job]

    @classmethod
    def of(cls, active: Iterable[Job], queues: Mapping[str, QueueView]) -> Grouped:
        groups: dict[tuple[str, str], list[Job]] = {}
        stopping = []
        for job in active:
            groups.setdefault(group_of(job, queues), []).append(job)
            if being_preempted(job):
                stopping.append(job)
        return cls(groups, stopping)

    def near(self, head: Job, queues: Mapping[str, QueueView]) -> Sequence[Job]:
        """The jobs a search for the head may pick from."""
        return self.groups.get(group_of(head, queues), ())


def reports(job: Job) -> bool:
    """Its trainer has reported progress or a checkpoint."""
    return job.status.progress is not None or job.status.checkpoint is not None


def grace_options(job: Job, queues: Mapping[str, QueueView], cap: int | None) -> list[int]:
    """The graces a victim's stop may get: its sized one (when `cap` is set: sizing
    on), then its own fixed one, both within its queue's bound."""
    queue_max = max_grace(job, queues)
    options = [grace_for(job, queue_max=queue_max, cap=None)]
    if cap is not None:
        options.insert(0, grace_for(job, queue_max=queue_max, cap=cap))
    return options


def stop_plan(job: Job, queues: Mapping[str, QueueView], *, now: datetime, cap: int | None,
              waiting: int = 0) -> tuple[float, int]:  # fmt: skip
    """The cheaper way to stop the job for a preemptor, and its cost: the grace sized
    to its checkpoint (nothing lost, the GPUs held through its write), or its own
    fixed grace (killed before a slow checkpoint: its work since the last one lost,
    the GPUs free sooner). A trainer whose checkpoint fits its own grace gets it."""
    gpus = job.spec.total_gpus
    priced = [(stop_cost(job, now=now, grace=g).gpu_seconds(gpus, waiting=waiting), g)
              for g in grace_options(job, queues, cap)]  # fmt: skip
    return min(priced, key=lambda pair: pair[0])


def victim_grace(job: Job, chosen: int | None, queues: Mapping[str, QueueView],
                 cap: int | None) -> int:  # fmt: skip
    """The grace a victim's stop gives: the one its preemption chose, else its own
    sized to its checkpoint writes within its queue's bound (as stopping.grace_of
    gives a stop that has not begun)."""
    if chosen is not None:
        return chosen
    return grace_for(job, queue_max=max_grace(job, queues), cap=cap)


def todays_order(now: datetime) -> Callable[[Job], tuple[int, float, str]]:
    """The order victims are taken in when nothing else decides: lowest priority first,
    then the most recently started, then by name."""
    since = datetime.min.replace(tzinfo=now.tzinfo)
    return lambda j: (j.spec.priority, -(j.status.running_since or since).timestamp(),
                      j.key.name)  # fmt: skip


def candidates(preemptor: Job, active: Iterable[Job], state: AdmissionState, *, now: datetime,
               protected: Callable[[Job], bool]) -> list[Job]:  # fmt: skip
    """Jobs the preemptor may preempt, in the order they would be chosen."""
    queue = queue_of(preemptor.spec.queue, state.queues)
    if queue is None:
        return []
    same = queue.preemption == LOWER_PRIORITY
    reclaim = queue.cohort is not None and state.quota.within_nominal(preemptor)
    found = []
    # Per queue of the jobs looked at: whether the preemptor may reclaim from it (its
    # cohort's, borrowing). A search looks at every running job of a cohort.
    borrowing: dict[str, bool] = {}
    for job in active:
        if job.phase not in (Phase.STARTING, Phase.RUNNING) or job.spec.cancelled:
            continue
        name = job.spec.queue
        if name == preemptor.spec.queue:
            if not same or job.spec.priority >= preemptor.spec.priority:
                continue
        elif not reclaim:
            continue
        else:
            may = borrowing.get(name)
            if may is None:
                other = queue_of(name, state.queues)
                may = borrowing[name] = (other is not None and other.cohort == queue.cohort
                                         and state.quota.borrowed(other.name) > 0)  # fmt: skip
            if not may:
                continue
        if not protected(job):
            found.append(job)
    found.sort(key=todays_order(now))
    return found


def choose(preemptor: Job, state: AdmissionState, *, active: Sequence[Job], now: datetime,
           protected: Callable[[Job], bool], aware: bool, price: Price,
           stopping: Sequence[Job] | None = None) -> Preemption | None:  # fmt: skip
    """Victims that let the preemptor start, or None if preemption cannot help.
    (`stopping`: trial_state's.)"""
    found: list[Job] | None = None
    if stopping is not None and not stopping:
        # Nothing is being stopped: the trial would be the state itself, where the
        # preemptor does not fit (or it would not be searching), and with no candidate
        # the answer is None whatever it is; finding none is the common case.
        found = candidates(preemptor, active, state, now=now, protected=protected)
        if not found:
            return None
    trial, stopping_for, fits = trial_state(preemptor, state, active, now=now, stopping=stopping)
    if fits:
        return Preemption((), stopping_for) if stopping_for else None
    if found is None:  # (candidates read the state, not the trial)
        found = candidates(preemptor, active, state, now=now, protected=protected)
    if not found or not admits(preemptor, trial, found, now=now):
        return None  # even every candidate would not be enough
    if aware and any(reports(j) for j in found):
        waiting = preemptor.spec.total_gpus
        plans = {j.key: price(j, waiting) for j in found}
        costs = {key: plan[0] for key, plan in plans.items()}
        # Cheapest first; among equals today's order (`found` is sorted by it).
        found.sort(key=lambda j: costs[j.key])
        cheapest = _cheapest(preemptor, trial, found, [costs[j.key] for j in found], now=now)
        if cheapest is not None:
            graces = tuple(plans[j.key][1] for j in cheapest)
            return Preemption(tuple(cheapest), stopping_for, graces)
    return greedy(preemptor, trial, found, now=now, stopping=stopping_for)


def trial_state(preemptor: Job, state: AdmissionState, active: Sequence[Job], *,
                now: datetime, stopping: Sequence[Job] | None = None,
                ) -> tuple[AdmissionState, int, bool]:  # fmt: skip
    """The state with the jobs already being stopped for others gone (they count as
    freed: a pass never picks new victims for a preemptor only waiting for earlier
    ones), how many they are, and whether the preemptor fits then. `stopping`: those
    jobs of `active`, when the caller knows them already (a pass asks for every
    waiting head; `active` may then be only the jobs near the preemptor)."""
    trial = state.copy()
    if stopping is None:
        stopping = [j for j in active if being_preempted(j)]
    for job in stopping:
        trial.give(job)
    return trial, len(stopping), trial.verdict(preemptor, now=now).kind == "admit"


def admits(preemptor: Job, trial: AdmissionState, victims: Iterable[Job], *,
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
        if admits(preemptor, trial, (found[i] for i in members), now=now):
            return [found[i] for i in members]
        last = members[-1]
        if last + 1 < len(found):
            heapq.heappush(heap, (cost + costs[last + 1], (*members, last + 1)))
            heapq.heappush(heap, (cost - costs[last] + costs[last + 1], (*members[:-1], last + 1)))
    return None


def greedy(preemptor: Job, trial: AdmissionState, found: Sequence[Job], *, now: datetime,
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


def what_if_preempter(cap: int | None) -> Preempter:
    """`choose` as the API's what-if can make it (shunter.domain.whatif.insert's
    `preempt`): checkpoint-aware, stops priced with `cap` on a sized grace (the
    operator's setting, which the API reads too), each victim with the grace its stop
    gives (`victim_grace`). The operator's anti-loop protection reads its own settings
    and is not applied: a job it protects may be named, and then it picks another."""

    def preempt(head: Job, state: AdmissionState, active: Sequence[Job], now: datetime) -> Stops:
        def price(job: Job, waiting: int) -> tuple[float, int]:
            return stop_plan(job, state.queues, now=now, cap=cap, waiting=waiting)

        found = choose(head, state, active=active, now=now, protected=lambda _: False,
                       aware=True, price=price)  # fmt: skip
        if found is None:
            return Stops()
        return Stops(tuple((v, victim_grace(v, found.grace(i), state.queues, cap))
                           for i, v in enumerate(found.victims)))  # fmt: skip

    return preempt
