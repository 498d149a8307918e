"""Job dependencies (spec.dependsOn): when a job may start, and when it never will (pure).

A job lists jobs of its own namespace and a condition on each, as Slurm's
`--dependency` does (afterok, afterany, afternotok) and Volcano's JobFlow:

- `Completed`: the upstream completed (Slurm's afterok);
- `Finished`: it ended in any way, completed, failed or cancelled (afterany);
- `Failed`: it failed (afternotok; a cancelled upstream did not fail, so it is not met);
- `Checkpointed` with `step`: its reported checkpoint (status.checkpoint.step, written
  by the report channel) reached the step; a job that ended below it never will.

Every condition must be met. Until then the job waits in its queue with reason
`Dependency`, blocking no one (the planning pass skips it like a job waiting for its
checkpoint claim). It fails with `DependencyFailed` when a condition can no longer be
met: the upstream ended the other way, it is missing, or the jobs wait on each other
in a cycle. Names are names in the job's own namespace: there is no way to name a
job of another namespace, so a dependency never reveals one.

An upstream whose TrainingJob was deleted is judged by its final state in the
PostgreSQL mirror (its last phase and checkpoint step); a name neither live nor in the
mirror is missing. A job created within MISSING_GRACE of its upstream's name being
absent waits instead: `kubectl apply -f dir/` creates the files in name order, which
need not be the chain's order.

Cancelling an upstream with `spec.cancelDependents` cancels its dependents that have
not started, and theirs in turn (a job cancelled so cascades like its upstream).
Without it, a cancelled upstream is an ended job like any other: `Finished` is met,
`Completed`, `Failed` and an unreached checkpoint are not.

Everything here is decided from what the operator's book holds (the TrainingJobs, and
what the mirror said of deleted ones), so a restarted operator decides the same.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from shunter.domain.model import Dependency, Job, Phase

CONDITIONS = ("Completed", "Finished", "Failed", "Checkpointed")
# How many jobs a job may depend on (the CRD's maxItems and the API's bound): a job
# gated on more than a few dozen others is better written as a chain or an array,
# and each entry costs a look per pass and a line in its status.
MAX_DEPENDENCIES = 32
MISSING_GRACE = timedelta(seconds=10)
# Conditions named in status.waitingFor (a table column stays readable; the message
# names them all).
SHOWN = 3

WAITING_REASON = "Dependency"
FAILED_REASON = "DependencyFailed"
# The reason of a job cancelled with its upstream (spec.cancelDependents).
CANCELLED_REASON = "UpstreamCancelled"


class Absent(StrEnum):
    """An upstream name with no TrainingJob."""

    MISSING = "missing"  # and the mirror has no record of it (or there is no mirror)
    PENDING = "pending"  # the mirror has not been asked yet


@dataclass(frozen=True)
class Upstream:
    """What a dependency needs to know of the job it names."""

    name: str
    phase: Phase | None
    checkpoint_step: int | None = None
    live: bool = True  # False: its TrainingJob is gone; this is the mirror's last state
    reason: str | None = None
    message: str | None = None
    # Cancelling it cancels its dependents (see the module doc).
    cascades: bool = False
    # The names it waits on, while it waits (a job that started waits on nothing).
    waits_on: tuple[str, ...] = ()

    @classmethod
    def of(cls, job: Job) -> Upstream:
        phase = job.status.phase
        checkpoint = job.status.checkpoint
        ended = phase is not None and phase.terminal
        cancelled = phase is Phase.CANCELLED or (job.spec.cancelled and not ended)
        cascades = cancelled and (
            job.spec.cancel_dependents or job.status.reason == CANCELLED_REASON
        )
        return cls(
            name=job.key.name,
            phase=phase,
            checkpoint_step=checkpoint.step if checkpoint else None,
            reason=job.status.reason,
            message=job.status.message,
            cascades=cascades,
            waits_on=tuple(d.name for d in job.spec.depends_on) if job.queued else (),
        )

    @classmethod
    def gone(cls, name: str, phase: Phase | None, checkpoint_step: int | None) -> Upstream:
        return cls(name=name, phase=phase, checkpoint_step=checkpoint_step, live=False)


Lookup = Callable[[str], "Upstream | Absent"]


class State(StrEnum):
    MET = "met"
    WAITING = "waiting"
    IMPOSSIBLE = "impossible"


@dataclass(frozen=True)
class ConditionState:
    """One dependency judged: its state and, in words, why."""

    dependency: Dependency
    state: State
    why: str


class Outcome(StrEnum):
    SATISFIED = "satisfied"  # an ordinary queued job
    WAITING = "waiting"  # reason Dependency
    FAILED = "failed"  # reason DependencyFailed
    CANCELLED = "cancelled"  # cancelled with its upstream


@dataclass(frozen=True)
class Judgement:
    outcome: Outcome
    message: str = ""
    conditions: tuple[ConditionState, ...] = ()
    wake_at: datetime | None = None  # look again then (a missing name's grace ends)

    @property
    def reason(self) -> str | None:
        return {Outcome.WAITING: WAITING_REASON, Outcome.FAILED: FAILED_REASON,
                Outcome.CANCELLED: CANCELLED_REASON}.get(self.outcome)  # fmt: skip

    @property
    def waiting_for(self) -> str | None:
        """A waiting job's conditions not met yet, short (`a Completed, b Checkpointed
        500`; past SHOWN of them, how many more): status.waitingFor, a kubectl column."""
        if self.outcome is not Outcome.WAITING:
            return None
        waiting = [s.dependency for s in self.conditions if s.state is State.WAITING]
        shown = ", ".join(f"{d.name} {d.condition}{'' if d.step is None else f' {d.step}'}"
                          for d in waiting[:SHOWN])  # fmt: skip
        more = len(waiting) - SHOWN
        return f"{shown} (+{more} more)" if more > 0 else shown


def describe(dependency: Dependency) -> str:
    """`a to complete`, `a to reach checkpoint step 100`..."""
    what = {"Completed": "to complete", "Finished": "to finish", "Failed": "to fail"}
    if dependency.condition == "Checkpointed":
        return f"{dependency.name} to reach checkpoint step {dependency.step}"
    return f"{dependency.name} {what.get(dependency.condition, dependency.condition)}"


def judge_condition(dependency: Dependency, upstream: Upstream | Absent) -> ConditionState:
    """One condition on what is known of its upstream."""
    name, condition = dependency.name, dependency.condition
    if upstream is Absent.PENDING:
        return ConditionState(dependency, State.WAITING, f"{name}: its history is being read")
    if upstream is Absent.MISSING:
        why = f"{name}: no such job in this namespace, and no record of it in the history"
        return ConditionState(dependency, State.IMPOSSIBLE, why)
    assert isinstance(upstream, Upstream)
    phase = upstream.phase
    ended = phase is not None and phase.terminal
    gone = "" if upstream.live else " (its TrainingJob was deleted; judged from the history)"
    if condition == "Checkpointed":
        step = upstream.checkpoint_step
        if step is not None and dependency.step is not None and step >= dependency.step:
            return ConditionState(dependency, State.MET, f"{name} checkpointed step {step}{gone}")
        if ended or not upstream.live:
            last = f"its last checkpoint was step {step}" if step is not None else "no checkpoint"
            how = phase.value if phase is not None else "deleted"
            why = f"{name} {how} with {last}, below step {dependency.step}{gone}"
            return ConditionState(dependency, State.IMPOSSIBLE, why)
        return ConditionState(dependency, State.WAITING, describe(dependency))
    if not ended:
        if not upstream.live:
            why = f"{name} was deleted before it finished (last {phase or 'queued'})"
            return ConditionState(dependency, State.IMPOSSIBLE, why)
        return ConditionState(dependency, State.WAITING, describe(dependency))
    assert phase is not None
    met = {
        "Completed": phase is Phase.COMPLETED,
        "Finished": True,
        "Failed": phase is Phase.FAILED,
    }.get(condition, False)
    if met:
        return ConditionState(dependency, State.MET, f"{name} {phase.value}{gone}")
    detail = f": {upstream.message}" if upstream.message and phase is Phase.FAILED else ""
    why = f"{name} {phase.value}{detail}, so it will never {_verb(condition)}{gone}"
    return ConditionState(dependency, State.IMPOSSIBLE, why)


def _verb(condition: str) -> str:
    return {"Completed": "complete", "Failed": "fail"}.get(condition, condition.lower())


def judge(job: Job, lookup: Lookup, *, now: datetime, cleared: set[str] | None = None) -> Judgement:
    """Whether a queued job's dependencies let it start. `cleared`: names known (in
    this pass) to lead to no cycle, shared between calls to keep a pass linear."""
    if not job.spec.depends_on:
        return Judgement(Outcome.SATISFIED)
    found = {d.name: lookup(d.name) for d in job.spec.depends_on}
    for name, upstream in found.items():
        if isinstance(upstream, Upstream) and upstream.cascades:
            return Judgement(Outcome.CANCELLED, f"Cancelled with its upstream job {name}"
                             " (cancelDependents)")  # fmt: skip
    states = tuple(judge_condition(d, found[d.name]) for d in job.spec.depends_on)
    young = now < job.created_at + MISSING_GRACE
    if young:  # a name missing so soon after creation may still be on its way
        states = tuple(
            ConditionState(s.dependency, State.WAITING, f"{s.dependency.name} to be created")
            if found[s.dependency.name] is Absent.MISSING else s
            for s in states
        )  # fmt: skip
    impossible = [s for s in states if s.state is State.IMPOSSIBLE]
    if impossible:
        message = "Its dependencies can never be met: " + "; ".join(s.why for s in impossible)
        return Judgement(Outcome.FAILED, message, states)
    waiting = [s for s in states if s.state is State.WAITING]
    if not waiting:
        return Judgement(Outcome.SATISFIED, "", states)
    cycle = find_cycle(job.key.name, lambda n: _waits_on(n, job, lookup), cleared=cleared)
    if cycle is not None:
        message = f"Its dependencies can never be met: they form a cycle: {' -> '.join(cycle)}"
        return Judgement(Outcome.FAILED, message, states)
    wake = job.created_at + MISSING_GRACE if young else None
    message = "Waiting for " + "; ".join(s.why for s in waiting)
    return Judgement(Outcome.WAITING, message, states, wake_at=wake)


def _waits_on(name: str, job: Job, lookup: Lookup) -> Iterable[str]:
    if name == job.key.name:
        return [d.name for d in job.spec.depends_on]
    upstream = lookup(name)
    return upstream.waits_on if isinstance(upstream, Upstream) else ()


def find_cycle(
    start: str, waits_on: Callable[[str], Iterable[str]], *, cleared: set[str] | None = None
) -> list[str] | None:
    """A cycle of waiting jobs reachable from start, as a path that ends where it
    began (`a -> b -> a`), or None. Names fully explored without finding one are added
    to `cleared` and not explored again. Iterative: a chain of thousands is no
    recursion limit."""
    cleared = cleared if cleared is not None else set()
    if start in cleared:
        return None
    path: list[str] = [start]
    on_path = {start: 0}
    stack = [iter(list(waits_on(start)))]
    while stack:
        following = next(stack[-1], None)
        if following is None:
            stack.pop()
            done = path.pop()
            del on_path[done]
            cleared.add(done)
            continue
        if following in on_path:
            return [*path[on_path[following] :], following]
        if following in cleared:
            continue
        on_path[following] = len(path)
        path.append(following)
        stack.append(iter(list(waits_on(following))))
    return None


def submit_cycle(name: str, depends_on: Iterable[str], jobs: Mapping[str, Job]) -> list[str] | None:
    """The cycle a new job named `name` would close among `jobs` (its namespace's
    jobs by name), for a refusal at submit; None if it closes none."""
    wanted = list(depends_on)

    def waits_on(n: str) -> Iterable[str]:
        if n == name:
            return wanted
        job = jobs.get(n)
        return [d.name for d in job.spec.depends_on] if job is not None and job.queued else ()

    return find_cycle(name, waits_on)


def dependents(name: str, jobs: Iterable[Job]) -> list[Job]:
    """The jobs (of one namespace) that name `name` in their dependsOn."""
    return [j for j in jobs if any(d.name == name for d in j.spec.depends_on)]
