"""Preemption policies on a synthetic trace, in virtual time (issue 23, "No GPU-hour lost").

    python -m bench.preemption_trace [--seeds 1 2 3 4 5] [--jobs 300]

The operator's real decision code (`planning.plan_pass` over a `JobBook`, with
lifecycle, stopping and preemption as they are) is driven on a virtual clock; this
module plays everything around it: the API server (a decision's status is in the
book at once), the kubelet (Pods start after a delay, go away after their process,
at once on a force delete) and the trainers (periodic checkpoints, what each kind
does on SIGTERM, the reports the operator's report path writes to status). Every
pass runs at the instant its inputs change, so the figures have no API or watch
latency in them: they compare the decisions, not the plumbing (the kwok benches
measure that). bench/RESULTS.md says why a kwok run could not measure this.

Policies on the same trace: today's choice (`checkpoint_aware=False, size_grace=False`),
the defaults (checkpoint-aware victims, sized grace), and the oracle: the defaults with
the operator's victim cost (`preemption.stop_plan`) replaced by the truth (each trainer's
real behaviour). For every preemption of every policy the bench also asks the oracle
for the cheapest victim set on the same state, so a policy's choices can be compared
with the best choice at the same decision points.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import heapq
import itertools
import math
import random
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import percentile, table, write_result
from shunter.domain.admission import AdmissionState, Limits
from shunter.domain.model import (
    ATTEMPT_LABEL,
    JOB_UID_LABEL,
    POD_INDEX_LABEL,
    Job,
    JobKey,
    JobStatus,
    Phase,
    PodView,
    StopCause,
    format_time,
)
from shunter.domain.nodes import NodeView, Resources
from shunter.domain.podspec import pod_names
from shunter.domain.queues import LOWER_PRIORITY, QueueView, max_grace
from shunter.domain.reports import Report, ReportedCheckpoint, Reporter, ReportError, apply, judge
from shunter.domain.workloss import grace_for
from shunter.operator import planning, preemption
from shunter.operator.book import JobBook
from shunter.operator.decisions import Decision
from shunter.operator.planning import plan_pass
from shunter.operator.rules import Rules

T0 = datetime(2026, 6, 1, tzinfo=UTC)
NAMESPACE = "bench"
# A Pod object is gone this long after its process exited (the kubelet's cleanup).
REMOVAL_LAG = 1.0
# Passes at one instant before the bench gives up on it settling (a decision loop).
MAX_PASSES = 50
EXIT_CHECKPOINTED, EXIT_KILLED, EXIT_SIGTERM = 75, 137, 143
KINDS = ("a", "b", "c")


@dataclass(frozen=True)
class TraceParams:
    """The trace's shape (bench/RESULTS.md lists these values)."""

    jobs: int = 300
    nodes: int = 4
    gpus_per_node: int = 8
    initial: int = 40  # jobs at t = 0, priority 0: they fill the cluster
    mean_gap: float = 15 * 60.0  # then Poisson arrivals
    priorities: tuple[tuple[int, float], ...] = ((0, 0.40), (50, 0.35), (100, 0.25))
    max_gpus: int = 8
    work: tuple[float, float] = (30 * 60.0, 4 * 3600.0)
    interval: tuple[float, float] = (5 * 60.0, 30 * 60.0)
    write: tuple[float, float] = (10.0, 300.0)  # kind c's periodic writes
    slow_write: tuple[float, float] = (40.0, 300.0)  # kind b, periodic and on SIGTERM
    # Kind a, periodic and on SIGTERM (v2: in v1 its periodic writes took `write`;
    # a checkpoint of one model takes as long whenever it is written).
    quick_write: tuple[float, float] = (2.0, 8.0)
    start_delay: tuple[float, float] = (5.0, 20.0)


TRACE = TraceParams()


@dataclass(frozen=True)
class Spec:
    """One job of the trace and its trainer."""

    name: str
    arrival: float  # seconds from T0
    gpus: int
    priority: int
    kind: str
    work: float  # seconds of training it needs
    interval: float  # seconds of work between periodic checkpoints
    write: float  # seconds a periodic write takes
    stop_write: float | None  # seconds to checkpoint on SIGTERM (None: it cannot)


def make_trace(seed: int, params: TraceParams = TRACE) -> list[Spec]:
    rng = random.Random(seed)
    kinds = [KINDS[i % 3] for i in range(params.jobs)]
    rng.shuffle(kinds)
    levels, weights = zip(*params.priorities, strict=True)
    specs, at = [], 0.0
    for i, kind in enumerate(kinds):
        if i >= params.initial:
            at += rng.expovariate(1 / params.mean_gap)
        priority = 0 if i < params.initial else rng.choices(levels, weights)[0]
        span = {"a": params.quick_write, "b": params.slow_write, "c": params.write}[kind]
        write = rng.uniform(*span)
        stop_write = {"a": write, "b": write, "c": None}[kind]
        specs.append(Spec(f"j{i:03d}", at, rng.randint(1, params.max_gpus), priority, kind,
                          rng.uniform(*params.work), rng.uniform(*params.interval), write,
                          stop_write))  # fmt: skip
    return specs


@dataclass(frozen=True)
class StopOutcome:
    """How a trainer's process ends when its Pod is deleted with a grace period."""

    end: float  # when the process exits
    exit_code: int | None  # None: no process had started
    resume_at: float  # work in the checkpoint it will resume from
    checkpointed: bool  # it wrote a checkpoint on SIGTERM
    done: float  # work done at SIGTERM

    @property
    def lost(self) -> float:
        return self.done - self.resume_at


@dataclass
class Trainer:
    """One job's trainer across its attempts (virtual time in seconds from T0)."""

    spec: Spec
    saved: float = 0.0  # work in the last complete checkpoint: where a run resumes
    pod: int = 0  # the current Pod (its number), to ignore events of earlier ones
    started: float | None = None  # the process began training
    resumed: float = 0.0
    signalled: float | None = None
    # Periodic snapshots taken in this run: (work level, taken at, complete at).
    pending: list[tuple[float, float, float]] = field(default_factory=list)
    stopping: StopOutcome | None = None  # where the current stop is heading

    def work_at(self, t: float) -> float:
        if self.started is None:
            return self.resumed
        until = t if self.signalled is None else min(t, self.signalled)
        return min(self.spec.work, self.resumed + max(0.0, until - self.started))

    def stop_outcome(self, t: float, grace: int) -> StopOutcome:
        """What a delete with `grace` at t leads to (the truth the oracle knows)."""
        if self.started is None:
            return StopOutcome(t, None, self.saved, False, self.saved)
        done, write = self.work_at(t), self.spec.stop_write
        if write is not None and write <= grace:
            return StopOutcome(t + write, EXIT_CHECKPOINTED, done, True, done)
        end = t if write is None else t + grace
        code = EXIT_SIGTERM if write is None else EXIT_KILLED
        complete = [level for level, taken, at in self.pending if taken <= t and at <= end]
        return StopOutcome(end, code, max([self.saved, *complete]), False, done)


@dataclass
class Stats:
    redone: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))
    stop_gpu_seconds: float = 0.0
    victims: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    preemptions: int = 0  # decisions that chose victims
    chosen_cost: float = 0.0  # true GPU-seconds (lost + stop) of the sets chosen
    least_cost: float = 0.0  # the oracle's cheapest set at the same decisions
    victims_starting: int = 0  # chosen before their Pods ran
    chosen_lost: float = 0.0  # true GPU-seconds of work the chosen sets lose (= redone)
    # The operator's estimate (preemption.cost_of) and the truth, for the victims chosen.
    estimated: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))
    actual: dict[str, float] = field(default_factory=lambda: dict.fromkeys(KINDS, 0.0))
    # A preemptor's wait from entering the queue (submitted, or requeued) to running,
    # and from its first preemption to running (the part the victims' stops make).
    preemptor_waits: list[float] = field(default_factory=list)
    preemptor_stop_waits: list[float] = field(default_factory=list)
    first_waits: dict[int, list[float]] = field(default_factory=dict)
    completed: int = 0
    makespan: float = 0.0
    passes: int = 0
    refused_reports: list[str] = field(default_factory=list)  # none expected
    # The work lost as the operator records it (status.history, lostSeconds x GPUs).
    recorded_lost: float = 0.0


class Simulation:
    def __init__(self, specs: list[Spec], rules: Rules, *, oracle: bool = False,
                 params: TraceParams = TRACE, seed: int = 0) -> None:  # fmt: skip
        self.rules, self.oracle, self.params, self.seed = rules, oracle, params, seed
        nodes = [_node(f"kwok-gpu-{i}", params.gpus_per_node) for i in range(params.nodes)]
        queue = QueueView("default", preemption=LOWER_PRIORITY)
        self.book = JobBook.of([], nodes=nodes, queues=[queue])
        self.trainers = {JobKey(NAMESPACE, s.name): Trainer(s) for s in specs}
        self.specs = specs
        self.stats = Stats()
        self.now = 0.0
        self._events: list[tuple[float, int, Callable[[], None]]] = []
        self._order = itertools.count()
        self._versions = itertools.count(1)
        self._queued_since: dict[JobKey, float] = {}
        self._preempting: dict[JobKey, float] = {}  # preemptor -> its first preemption
        self._signalled_at: dict[JobKey, float] = {}
        for spec in specs:
            self._at(spec.arrival, functools.partial(self._arrive, spec))

    # -- the clock -------------------------------------------------------------------

    def _at(self, t: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._events, (t, next(self._order), action))

    def run(self) -> Stats:
        with _watching_choices(self):
            while self.stats.completed < len(self.specs):
                timer = self.book.next_timer()
                due = _seconds(timer) if timer is not None else float("inf")
                t = min(self._events[0][0] if self._events else float("inf"), due)
                if t == float("inf"):
                    raise RuntimeError(f"stuck at {self.now:.0f}s: {self._unfinished()}")
                self.now = max(self.now, t)
                while self._events and self._events[0][0] <= self.now:
                    heapq.heappop(self._events)[2]()
                self._settle()
        self.stats.makespan = self.now
        return self.stats

    def _unfinished(self) -> list[str]:
        return [f"{k.name}: {j.phase} {j.status.message}" for k, j in self.book.jobs.items()
                if j.phase is not Phase.COMPLETED][:5]  # fmt: skip

    def _settle(self) -> None:
        """Passes at this instant until one decides nothing (each write is seen at once)."""
        now = _time(self.now)
        for _ in range(MAX_PASSES):
            result = plan_pass(self.book, changed=self.book.take_due(now), now=now,
                               rules=self.rules)  # fmt: skip
            self.stats.passes += 1
            for key, at in result.wake_at.items():
                self.book.wake_at(key, at)
            if not result.decisions:
                return
            for key, decision in result.decisions.items():
                self._apply(key, decision)
        raise RuntimeError(f"no settled state at {self.now:.0f}s after {MAX_PASSES} passes")

    # -- the API server: decisions carried out -----------------------------------------

    def _write(self, job: Job, status: JobStatus) -> Job:
        job = replace(job, status=status, resource_version=str(next(self._versions)))
        self.book.put_job(job)
        return job

    def _apply(self, key: JobKey, decision: Decision) -> None:
        before = self.book.jobs[key]
        job = self._write(before, decision.status)
        self._observe(before, job, decision)
        for manifest in decision.create_pods:
            self._create_pod(job, manifest["metadata"]["name"])
        for delete in decision.delete_pods:
            self._delete_pod(job, delete.name, delete.grace_seconds)

    def _observe(self, before: Job, job: Job, decision: Decision) -> None:
        key, old, new = job.key, before.status, job.status
        if any(e.reason == "Preempting" for e in decision.events):
            self._preempting.setdefault(key, self.now)
        t = new.termination
        if t is not None and t.cause is StopCause.PREEMPT and old.termination is None:
            self.stats.victims[self.trainers[key].spec.kind] += 1
        if new.phase is Phase.QUEUED and old.phase is not Phase.QUEUED:
            self._queued_since[key] = self.now
            run = new.history[-1] if new.history else None
            if new.reason == "Preempted" and run is not None and run.lost_seconds is not None:
                self.stats.recorded_lost += job.spec.total_gpus * run.lost_seconds
        if new.phase is Phase.RUNNING and old.phase is not Phase.RUNNING:
            waited = self.now - self._queued_since[key]
            if key in self._preempting:
                self.stats.preemptor_waits.append(waited)
                self.stats.preemptor_stop_waits.append(self.now - self._preempting.pop(key))
            if new.attempts == 1:
                priority = job.spec.priority
                self.stats.first_waits.setdefault(priority, []).append(waited)
        if new.phase is Phase.COMPLETED and old.phase is not Phase.COMPLETED:
            self.stats.completed += 1
        elif new.phase is not None and new.phase.terminal and old.phase != new.phase:
            raise RuntimeError(f"{key} ended {new.phase}: {new.message}")

    def _arrive(self, spec: Spec) -> None:
        meta = {"name": spec.name, "namespace": NAMESPACE, "uid": f"uid-{spec.name}",
                "resourceVersion": str(next(self._versions)),
                "creationTimestamp": format_time(_time(spec.arrival))}  # fmt: skip
        job_spec = {"image": "bench/trainer", "gpus": spec.gpus, "priority": spec.priority}
        body = {"metadata": meta, "spec": job_spec}
        key = JobKey(NAMESPACE, spec.name)
        self._queued_since[key] = spec.arrival
        self.book.put_job(Job.parse(body))

    # -- the kubelet -------------------------------------------------------------------

    def _pod(self, job: Job, name: str, number: int, **fields: Any) -> PodView:
        return PodView(namespace=NAMESPACE, name=name, uid=f"{name}-{number}",
                       job_name=job.key.name, job_uid=job.uid, node_name=job.status.placement[0],
                       attempt=job.status.attempts, **fields)  # fmt: skip

    def _create_pod(self, job: Job, name: str) -> None:
        trainer = self.trainers[job.key]
        trainer.pod += 1
        number = trainer.pod
        trainer.started, trainer.signalled, trainer.pending = None, None, []
        trainer.resumed = trainer.saved
        self.book.put_pod(self._pod(job, name, number, phase="Pending", deleting=False))
        rng = random.Random(f"{self.seed}/{job.key.name}/{job.status.attempts}")
        delay = rng.uniform(*self.params.start_delay)
        self._at(self.now + delay, lambda: self._start(job.key, name, number))

    def _current(self, key: JobKey, number: int) -> PodView | None:
        trainer = self.trainers[key]
        pods = self.book.pods.get(key, {})
        pod = next((p for p in pods.values() if p.uid.endswith(f"-{number}")), None)
        return pod if trainer.pod == number else None

    def _start(self, key: JobKey, name: str, number: int) -> None:
        pod = self._current(key, number)
        if pod is None or pod.deleting:
            return
        trainer = self.trainers[key]
        trainer.started = self.now
        self.book.put_pod(replace(pod, phase="Running", ready=True, started_at=_time(self.now)))
        self._report(key)
        left = trainer.spec.work - trainer.resumed
        self._at(self.now + left, lambda: self._finish(key, number))
        self._next_snapshot(key, number, trainer.resumed)

    def _finish(self, key: JobKey, number: int) -> None:
        pod = self._current(key, number)
        if pod is None or pod.deleting or self.trainers[key].signalled is not None:
            return
        self.trainers[key].saved = self.trainers[key].spec.work
        self.book.put_pod(replace(pod, phase="Succeeded", exit_code=0, ready=False))

    def _delete_pod(self, job: Job, name: str, grace: int) -> None:
        pod = self.book.pods.get(job.key, {}).get(name)
        if pod is None or (pod.finished and not pod.deleting):
            return
        trainer, number = self.trainers[job.key], _number(pod)
        if grace == 0:  # forced: the object goes now, and with it the process
            if not pod.deleting:
                self._signal(job.key, number)
                trainer.stopping = trainer.stop_outcome(self.now, 0)
            self._gone(job.key, pod)
            return
        if pod.deleting:
            return  # the kubelet is already stopping it
        self.book.put_pod(replace(pod, deleting=True))
        outcome = trainer.stop_outcome(self.now, grace)
        self._signal(job.key, number)
        trainer.stopping = outcome
        self._at(outcome.end, lambda: self._exit(job.key, number))

    def _signal(self, key: JobKey, number: int) -> None:
        """SIGTERM (or the force delete's kill): training stops."""
        trainer = self.trainers[key]
        self._signalled_at[key] = self.now
        if trainer.pod == number and trainer.started is not None:
            trainer.signalled = self.now

    def _exit(self, key: JobKey, number: int) -> None:
        """The process ends as its stop outcome says; the Pod object goes a moment later."""
        trainer = self.trainers[key]
        pod, outcome = self._current(key, number), trainer.stopping
        if pod is None or outcome is None:
            return
        self._settle_loss(key)
        if outcome.exit_code is None:
            self._gone(key, pod)
            return
        self.book.put_pod(replace(pod, phase="Failed", exit_code=outcome.exit_code, ready=False))
        self._at(self.now + REMOVAL_LAG, lambda: self._gone(key, pod))

    def _settle_loss(self, key: JobKey) -> None:
        """The run is over: its last complete checkpoint is where the job resumes, and
        the work after it is redone."""
        trainer = self.trainers[key]
        outcome, trainer.stopping = trainer.stopping, None
        if outcome is None:
            return
        if self.now < outcome.end:  # killed before the outcome it was heading for
            complete = [lvl for lvl, taken, at in trainer.pending if taken <= outcome.end
                        and at <= self.now]  # fmt: skip
            outcome = replace(outcome, checkpointed=False,
                              resume_at=max([trainer.saved, *complete]))  # fmt: skip
        if outcome.checkpointed:
            self._checkpoint(key, outcome.done, trainer.spec.stop_write or 0.0)
        trainer.saved = max(trainer.saved, outcome.resume_at)
        self.stats.redone[trainer.spec.kind] += trainer.spec.gpus * (outcome.done - trainer.saved)

    def _gone(self, key: JobKey, pod: PodView) -> None:
        if self.book.pods.get(key, {}).get(pod.name) is None:
            return
        self._settle_loss(key)  # a process still running is killed with its object
        signalled = self._signalled_at.pop(key, self.now)
        self.stats.stop_gpu_seconds += self.trainers[key].spec.gpus * (self.now - signalled)
        self.book.remove_pod(pod)

    # -- the trainers ------------------------------------------------------------------

    def _next_snapshot(self, key: JobKey, number: int, after: float) -> None:
        """The next save every N steps: at the next multiple of the interval past `after`."""
        trainer = self.trainers[key]
        spec = trainer.spec
        level = (math.floor(after / spec.interval + 1e-9) + 1) * spec.interval
        if level >= spec.work:
            return
        at = self.now + level - after
        self._at(at, lambda: self._snapshot(key, number, level))

    def _snapshot(self, key: JobKey, number: int, level: float) -> None:
        trainer = self.trainers[key]
        if trainer.pod != number or trainer.signalled is not None:
            return
        done = self.now + trainer.spec.write
        trainer.pending.append((level, self.now, done))
        self._at(done, lambda: self._written(key, number, level))
        self._next_snapshot(key, number, level)

    def _written(self, key: JobKey, number: int, level: float) -> None:
        """A periodic write is complete, if its process still lives."""
        trainer = self.trainers[key]
        if trainer.pod != number or not self._alive(key, number) or trainer.saved >= level:
            return
        trainer.saved = level
        self._checkpoint(key, level, trainer.spec.write)

    def _alive(self, key: JobKey, number: int) -> bool:
        pod = self._current(key, number)
        return pod is not None and not pod.finished

    def _checkpoint(self, key: JobKey, level: float, write: float) -> None:
        """A complete checkpoint of `level` work, reported at once."""
        trainer = self.trainers[key]
        spec = trainer.spec
        written = ReportedCheckpoint(int(level), _time(self.now), spec.gpus * 2**30, write)
        self._report(key, written)

    def _report(self, key: JobKey, checkpoint: ReportedCheckpoint | None = None) -> None:
        """A report from the job's Pod, judged and taken in by the report channel's own
        rules (shunter.domain.reports), its status written at once."""
        job, trainer = self.book.jobs[key], self.trainers[key]
        spec, attempt = trainer.spec, job.status.attempts
        report = Report(job_uid=job.uid, step=int(trainer.work_at(self.now)), attempt=attempt,
                        total_steps=int(spec.work), checkpoint=checkpoint,
                        checkpoint_on_stop=spec.stop_write is not None,
                        resumed_from_step=int(trainer.resumed))  # fmt: skip
        name = pod_names(job)[0]
        uid = f"{name}-{trainer.pod}"
        labels = {JOB_UID_LABEL: job.uid, POD_INDEX_LABEL: "0", ATTEMPT_LABEL: str(attempt)}
        try:
            judge(report, job, Reporter(NAMESPACE, name, uid, labels, uid))
        except ReportError as exc:
            self.stats.refused_reports.append(f"{key.name} at {self.now:.0f}s: {exc.message}")
            return
        self._write(job, apply(job.status, report, now=_time(self.now)))

    # -- the oracle --------------------------------------------------------------------

    def true_stop(self, job: Job, state: AdmissionState, *, now: datetime,
                  rules: Rules, grace: int | None = None) -> StopOutcome:  # fmt: skip
        """How a stop started now really ends, with `grace`, or the sized grace the
        operator would give."""
        if grace is None:
            cap = int(rules.max_sized_grace.total_seconds()) if rules.size_grace else None
            grace = grace_for(job, queue_max=max_grace(job, state.queues), cap=cap)
        return self.trainers[job.key].stop_outcome(_seconds(now), grace)

    def true_cost(self, job: Job, state: AdmissionState, *, now: datetime, rules: Rules,
                  waiting: int = 0) -> float:  # fmt: skip
        """GPU-seconds a stop started now really costs (lost work plus the time until
        its Pod is gone, on its GPUs and the `waiting` preemptor's):
        `preemption.cost_of` with perfect knowledge."""
        return self._true_cost_at(job, state, now=now, rules=rules, waiting=waiting)

    def _true_cost_at(self, job: Job, state: AdmissionState, *, now: datetime, rules: Rules,
                      waiting: int, grace: int | None = None) -> float:  # fmt: skip
        outcome = self.true_stop(job, state, now=now, rules=rules, grace=grace)
        stop = outcome.end - _seconds(now) + REMOVAL_LAG
        return job.spec.total_gpus * (outcome.lost + stop) + waiting * stop

    def true_plan(self, job: Job, state: AdmissionState, *, now: datetime, rules: Rules,
                  waiting: int = 0) -> tuple[float, int]:  # fmt: skip
        """`preemption.stop_plan` with perfect knowledge: the same grace options
        (`preemption.grace_options`), each priced by how the stop really ends."""
        priced = [(self._true_cost_at(job, state, now=now, rules=rules, waiting=waiting,
                                      grace=g), g)
                  for g in preemption.grace_options(job, state, rules)]  # fmt: skip
        return min(priced, key=lambda pair: pair[0])

    def note_choice(self, found: tuple[Job, ...], best: tuple[Job, ...] | None,
                    state: AdmissionState, *, now: datetime, rules: Rules) -> None:  # fmt: skip
        """A preemption: its true cost, the least at this decision, the operator's view."""
        stats = self.stats

        def true(victims: tuple[Job, ...]) -> float:
            return sum(self.true_cost(v, state, now=now, rules=rules) for v in victims)

        chosen = true(found)
        stats.preemptions += 1
        stats.chosen_cost += chosen
        stats.least_cost += min(chosen, true(best)) if best is not None else chosen
        for victim in found:
            stats.victims_starting += victim.phase is Phase.STARTING
            kind = self.trainers[victim.key].spec.kind
            outcome = self.true_stop(victim, state, now=now, rules=rules)
            stats.chosen_lost += victim.spec.total_gpus * outcome.lost
            stats.estimated[kind] += preemption.cost_of(victim, state, now=now, rules=rules)
            stats.actual[kind] += self.true_cost(victim, state, now=now, rules=rules)


def _number(pod: PodView) -> int:
    """Which of its job's Pods this is (the bench's uid carries the number)."""
    return int(pod.uid.rsplit("-", 1)[1])


@contextlib.contextmanager
def _costs(plan: Callable[..., tuple[float, int]]) -> Iterator[None]:
    """The oracle's victim choice: the operator's own search with `preemption.stop_plan`
    (which the choice calls for each candidate's cost and grace) told the truth."""
    real = preemption.stop_plan
    preemption.stop_plan = plan
    try:
        yield
    finally:
        preemption.stop_plan = real


@contextlib.contextmanager
def _watching_choices(sim: Simulation) -> Iterator[None]:
    """Every victim choice of the pass goes through here: the oracle policy's with the
    true costs; every policy's is priced at its true cost and against the oracle's
    cheapest set on the same state (choose is pure: asking twice changes nothing)."""
    real = preemption.choose  # planning's own name for it, swapped below

    def choose(preemptor: Job, state: AdmissionState, *, active: Any, now: datetime,
               rules: Rules, stopping: Any = None) -> preemption.Preemption | None:  # fmt: skip
        if sim.oracle:
            with _costs(sim.true_plan):
                found = real(preemptor, state, active=active, now=now, rules=rules,
                             stopping=stopping)  # fmt: skip
        else:
            found = real(preemptor, state, active=active, now=now, rules=rules,
                         stopping=stopping)  # fmt: skip
        if found is None or not found.victims:
            return found
        with _costs(sim.true_plan):
            best = real(preemptor, state, active=active, now=now, stopping=stopping,
                        rules=replace(rules, checkpoint_aware=True))  # fmt: skip
        sim.note_choice(found.victims, best.victims if best is not None else None, state,
                        now=now, rules=rules)  # fmt: skip
        return found

    setattr(planning, "choose", choose)  # noqa: B010 (planning does not export it)
    try:
        yield
    finally:
        setattr(planning, "choose", real)  # noqa: B010


def _node(name: str, gpus: int) -> NodeView:
    return NodeView(name, (("shunter.dev/node-pool", "gpu"),), (),
                    Resources(gpus=gpus, cpu=64_000, memory=512 * 2**30), True, False)  # fmt: skip


def _time(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _seconds(at: datetime) -> float:
    return (at - T0).total_seconds()


POLICIES: dict[str, tuple[Rules, bool]] = {
    "today": (Rules(checkpoint_aware=False, size_grace=False), False),
    "checkpoint-aware": (Rules(), False),
    "oracle": (Rules(), True),
    # Not one of the policies: checkpoint-aware victims with the fixed grace, to
    # tell the victim choice's effect from the sized grace's.
    "aware-fixed-grace": (Rules(size_grace=False), False),
}
LIMITS = Limits(max_running=1000)


def simulate(seed: int, policy: str, params: TraceParams = TRACE) -> Stats:
    rules, oracle = POLICIES[policy]
    sim = Simulation(make_trace(seed, params), replace(rules, limits=LIMITS), oracle=oracle,
                     params=params, seed=seed)  # fmt: skip
    return sim.run()


def summarize(stats: Stats) -> dict[str, float]:
    """One run's figures (GPU-hours, hours, seconds)."""
    waits = stats.preemptor_waits
    high = [w for p, ws in stats.first_waits.items() if p > 0 for w in ws]
    return {
        "redone_gpu_h": sum(stats.redone.values()) / 3600,
        **{f"redone_gpu_h_{k}": v / 3600 for k, v in stats.redone.items()},
        "recorded_lost_gpu_h": stats.recorded_lost / 3600,
        "refused_reports": len(stats.refused_reports),
        "stop_gpu_h": stats.stop_gpu_seconds / 3600,
        "preemptions": stats.preemptions,
        "victims": sum(stats.victims.values()),
        **{f"victims_{k}": v for k, v in stats.victims.items()},
        "victims_starting": stats.victims_starting,
        "preemptors": len(waits),
        "preemptor_wait_mean_s": _mean(waits),
        "preemptor_wait_p50_s": percentile(waits, 50),
        "preemptor_wait_p95_s": percentile(waits, 95),
        "preempted_to_running_mean_s": _mean(stats.preemptor_stop_waits),
        "preempted_to_running_p50_s": percentile(stats.preemptor_stop_waits, 50),
        "preempted_to_running_p95_s": percentile(stats.preemptor_stop_waits, 95),
        "preempted_to_running_max_s": max(stats.preemptor_stop_waits, default=0.0),
        "high_first_wait_mean_s": _mean(high),
        "high_first_wait_p95_s": percentile(high, 95),
        "chosen_true_cost_gpu_h": stats.chosen_cost / 3600,
        **{f"victim_cost_estimated_gpu_h_{k}": v / 3600 for k, v in stats.estimated.items()},
        **{f"victim_cost_true_gpu_h_{k}": v / 3600 for k, v in stats.actual.items()},
        "least_true_cost_gpu_h": stats.least_cost / 3600,
        "makespan_h": stats.makespan / 3600,
        "passes": stats.passes,
    }


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else 0.0


def aggregate(runs: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    out = {}
    for key in runs[0]:
        values = [r[key] for r in runs]
        out[key] = {"mean": statistics.fmean(values),
                    "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "min": min(values), "max": max(values)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--jobs", type=int, default=TRACE.jobs)
    parser.add_argument("--policies", nargs="+", default=list(POLICIES), choices=list(POLICIES))
    args = parser.parse_args()
    params = replace(TRACE, jobs=args.jobs)
    runs: dict[str, list[dict[str, float]]] = {p: [] for p in args.policies}
    for seed in args.seeds:
        for policy in args.policies:
            began = time.perf_counter()
            row = summarize(simulate(seed, policy, params))
            row["wall_s"] = time.perf_counter() - began
            runs[policy].append(row)
            print(f"seed {seed} {policy}: redone {row['redone_gpu_h']:.1f} GPU-h, preemptor"
                  f" wait p50 {row['preemptor_wait_p50_s']:.0f}s, {row['wall_s']:.0f}s wall",
                  flush=True)  # fmt: skip
    summary = {p: aggregate(r) for p, r in runs.items()}
    for policy, figures in summary.items():
        table(f"{policy}: mean / sd / min / max over seeds {args.seeds}",
              [(k, f"{v['mean']:.2f} / {v['sd']:.2f} / {v['min']:.2f} / {v['max']:.2f}")
               for k, v in figures.items()])  # fmt: skip
    if "today" in summary:
        today = summary["today"]["redone_gpu_h"]["mean"]
        for policy in summary:
            share = summary[policy]["redone_gpu_h"]["mean"] / today if today else float("nan")
            print(f"redone work, {policy} / today: {100 * share:.1f} %")
    result = {"trace": asdict(params), "seeds": args.seeds, "runs": runs, "summary": summary}
    print(f"\nwrote {write_result('preemption-trace', result)}")


if __name__ == "__main__":
    main()
