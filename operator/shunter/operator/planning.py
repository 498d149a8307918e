"""One reconcile pass: the decisions for what changed, then admission (pure).

A pass looks at the jobs the book marks as changed (or whose timers are due), then
walks each queue from its head (the heads of all queues merged in priority and
submission order, since the global limits and the nodes are shared): admission by
the rules of `admission`, preemption where a queue allows it, queue positions for
the first `exact_positions` jobs of each queue, and the first status of new jobs. It
stops walking a queue as soon as nothing further back can start or needs a new
position, so its cost does not grow with the length of the queue.

Admitted jobs are reconciled first, so a slot freed in this pass (Pods that
completed, failed or finished stopping) is handed to the next queued job in the
same pass rather than on a later timer.

A queue's walk that decided nothing is kept (`WalkMemo`, in the book), and the next
pass takes it again instead of walking the queue when nothing it read has changed:
with many queues, a pass after one completion walks the few queues the completion
concerns, not all of them. Kept only when every job of the walk waited for a reason
that stays the same as long as its queue's jobs, its queue's use and its cohort's
idle GPUs do, the queues, Nodes and claims do, and no victim search could find one
(`_Record`, `_Walk._replays`, checked when its head comes). A cohort all of whose
walks were kept, and none of whose jobs changed since, is not looked at at all
(`GroupMemo`, `_Walk._quiet`): a pass then costs what the changed cohorts cost.
Anything else walks again; a pass over every job (`changed=None`, the periodic
resync) walks every queue. `test_walk_memos` feeds the same histories to a pass with
kept walks and one without, and compares them.

What the active jobs hold (slots, GPUs, each queue's use, each node's free resources,
the jobs by victim group) is not counted again either: the book keeps it as jobs
change (shunter.domain.holdings), a pass takes a copy (`admission_state`) and lays its
decisions over the groups (`_Walk.overlay`); `test_holdings` compares it with a count.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from shunter.domain import arrays
from shunter.domain.admission import AdmissionState, Verdict
from shunter.domain.claims import Claimant, judge_claim
from shunter.domain.dependencies import Outcome
from shunter.domain.dependencies import judge as judge_dependencies
from shunter.domain.model import Job, JobKey, Phase, shared
from shunter.domain.ordering import LOOKAHEAD, CohortHolds, MergeKey, Sharing, merge_key
from shunter.domain.podspec import claim_name
from shunter.domain.queues import (
    BEST_EFFORT_FIFO,
    LOWER_PRIORITY,
    QueueView,
    group_of,
    max_grace,
    queue_group,
    queue_of,
)
from shunter.operator.book import GroupMemo, JobBook, WalkMemo
from shunter.operator.decisions import Decision, Event
from shunter.operator.lifecycle import Context, Refusal, reconcile_job, still_waiting
from shunter.operator.preemption import choose, choose_fair, time_slice
from shunter.operator.rules import Rules


@dataclass(frozen=True)
class Pass:
    decisions: dict[JobKey, Decision]
    next_sequence: int
    wake_at: dict[JobKey, datetime]


def changes(job: Job, decision: Decision) -> bool:
    """Whether the decision changes anything (a write, a Pod, an Event, a log line)."""
    return decision.status != job.status or bool(
        decision.create
        or decision.delete_pods
        or decision.events
        or decision.logs
        or decision.runs
        or decision.patch_jobs
    )


def admission_state(book: JobBook, rules: Rules) -> AdmissionState:
    """What the active jobs hold, as the book keeps it, for a pass to consume."""
    return book.holdings().state(rules.limits)


def plan_pass(
    book: JobBook,
    *,
    changed: Collection[JobKey] | None = None,
    now: datetime,
    rules: Rules,
    unobserved: Callable[[JobKey], Collection[int]] = lambda _: (),
    kept_walks: bool = True,
) -> Pass:
    """Decide for `changed` (None: every job) and the heads of the queues.
    `kept_walks=False`: every queue walks (what the kept walks must equal; the tests
    and bench.pass_cost compare)."""
    keys = book.jobs.keys() if changed is None else changed
    book.fold_usage(now)
    decisions: dict[JobKey, Decision] = {}
    state = admission_state(book, rules)
    not_ready = book.not_ready()
    fresh: list[Job] = []
    for key in keys:
        job = book.jobs.get(key)
        if job is None:
            continue
        if job.queued and key not in book.arrays:
            if job.status.sequence is None or job.spec.cancelled or job.spec.suspended:
                fresh.append(job)
            continue
        decision = decide_alone(book, job, now=now, rules=rules, unobserved=unobserved,
                                not_ready=not_ready)  # fmt: skip
        if decision is None:
            continue
        decisions[key] = decision
        if (
            job.phase is not None
            and job.phase.holds_slot
            and not (decision.status.phase is not None and decision.status.phase.holds_slot)
        ):
            state.give(job)  # its Pods are gone: the slot, quota and GPUs are free

    # New jobs are numbered in arrival order; cancelled or suspended queued jobs leave.
    sequence = book.max_sequence + 1
    numbered: dict[JobKey, int] = {}
    for job in sorted((j for j in fresh if j.status.sequence is None), key=_arrival):
        numbered[job.key] = sequence
        sequence += 1
    for job in fresh:
        if job.spec.cancelled or job.spec.suspended:
            decisions[job.key] = reconcile_job(
                _numbered(job, numbered), Context(now=now, rules=rules)
            )

    # Dependents of what changed look again, wherever they wait in their queue.
    woken = {d for key in keys for d in book.dependents_of(key)}
    woken.update(k for k in keys if k in book.jobs and book.jobs[k].spec.depends_on)
    woken.difference_update(book.arrays)  # an array waits for nothing: its runs do
    # Queues whose walks kept from before may not be taken again: a job of theirs is
    # looked at (changed, due, woken); None: every queue walks.
    dirty = None
    if changed is not None and kept_walks:
        dirty = {job.spec.queue for k in (*keys, *woken) if (job := book.jobs.get(k)) is not None}
    walk = _Walk(book, state, numbered, rules=rules, now=now, decided=decisions, woken=woken,
                 dirty=dirty)  # fmt: skip
    for job, ctx in walk.run():
        notes = walk.notes.get(job.key, ())
        if still_waiting(job, ctx) and not notes:
            continue  # nothing to decide: skipping it keeps a pass cheap with long queues
        decision = reconcile_job(job, ctx)
        decisions[job.key] = replace(decision, events=(*decision.events, *notes))
    walk.keep(decisions)

    changed_decisions = {k: d for k, d in decisions.items() if changes(book.jobs[k], d)}
    wakes = {k: d.wake_at for k, d in decisions.items() if d.wake_at is not None}
    wakes.update(walk.wakes)
    return Pass(decisions=changed_decisions, next_sequence=sequence, wake_at=wakes)


def decide_alone(
    book: JobBook,
    job: Job,
    *,
    now: datetime,
    rules: Rules,
    unobserved: Callable[[JobKey], Collection[int]],
    not_ready: frozenset[str],
) -> Decision | None:
    """The decision about a job that no queue's walk takes part in: an array's (from
    its runs), a finished job's with a live Pod (deleted), an admitted job's (its Pods,
    its `running`, its finish, a cancel or suspend), and a waiting job's leaving its
    queue (cancelled or suspended). None: a waiting job's decision is its queue walk's
    (plan_pass), or a finished job has nothing left to do. Both a pass and the
    controller's quick look between passes (`Controller.quick`) decide these. (A pass
    first numbers a new job that leaves, with the others that arrived; the look leaves
    it without a number: at 60,000 jobs the first numbers wait many minutes to be
    written, and a cancel must not wait for them.)"""
    key = job.key
    if key in book.arrays:  # runs nothing itself: decided from its runs
        found = arrays.plan(job, book.named_runs(key), now=now)
        return Decision(found.status, runs=found.create, patch_jobs=found.patches)
    if job.phase is not None and job.phase.terminal:
        if book.pods.get(key):  # a live Pod of a finished job is deleted (lifecycle)
            ctx = Context(now=now, rules=rules, pods=book.pods_of(job),
                          max_grace=max_grace(job, book.queues))  # fmt: skip
            return reconcile_job(job, ctx)
        return None
    if job.queued:
        if job.spec.cancelled or job.spec.suspended:
            return reconcile_job(job, Context(now=now, rules=rules))
        return None
    ctx = Context(now=now, rules=rules, pods=book.pods_of(job), unobserved=unobserved(key),
                  not_ready=not_ready, max_grace=max_grace(job, book.queues))  # fmt: skip
    return reconcile_job(job, ctx)


@dataclass(slots=True)
class _Record:
    """What a queue's walk reads, noted as it goes; whether it may be kept."""

    head: Job
    verdict: Verdict
    quota: tuple[int, int, int | None]
    keys: list[JobKey] = field(default_factory=list)
    keep: bool = True


# Verdicts that stay the same while the memo's inputs do (WalkMemo): a job the cluster
# can never run (the budget, the Nodes), one backing off (until its timer), one whose
# queue does not exist, and one refused by its queue's quota. A refusal by the global
# limits, a namespace's cap or free capacity depends on other queues: never kept.
_KEPT_CHECKS = frozenset({"budget", "nodes", "backoff", "queue", "quota"})


@dataclass
class _QueueWalk:
    best_effort: bool
    position: int = 0
    blocked: bool = False
    looked: int = 0
    done: bool = False
    started: bool = False
    # The fewest GPUs refused for their size in this pass (Verdict.sized): no job of
    # the queue asking as many or more can start in this pass.
    refused: int | None = None


class _Walk:
    """The queued jobs a pass decides for, each with its context (see the module doc)."""

    def __init__(self, book: JobBook, state: AdmissionState, numbered: dict[JobKey, int], *,
                 rules: Rules, now: datetime, decided: dict[JobKey, Decision],
                 woken: Collection[JobKey] = (),
                 dirty: Collection[str] | None = None) -> None:  # fmt: skip
        self.book, self.state, self.numbered = book, state, numbered
        self.woken = woken
        # Walks kept from before (module doc): not for the `dirty` queues (None: for
        # none), and not at all with a cap per namespace (a refusal by it depends on
        # every queue's jobs of the namespace).
        self.dirty = dirty
        self.memos = dirty is not None and not rules.limits.namespace_gpus
        self.records: dict[str, _Record] = {}
        self.skipped: set[str] = set()  # queues whose kept walk was taken again
        self.quiet: set[tuple[str, str]] = set()  # cohorts whose queues were not looked at
        # The group (queues.group_of) of each queue with waiting jobs, and of each
        # queue looked at (`dirty`), found once per pass.
        self.groups: dict[str, tuple[str, str]] = {}
        self.dirty_groups = {queue_group(name, state.queues) for name in dirty or ()}
        self._lowest: dict[str, int] | None = None
        # Names known in this pass to lead to no cycle of dependencies, per namespace.
        self.cleared: dict[str, set[str]] = {}
        self.rules, self.now, self.decided = rules, now, decided
        self.wakes: dict[JobKey, datetime] = {}
        # Events for a queued job beside its status (a preemptor's decision).
        self.notes: dict[JobKey, tuple[Event, ...]] = {}
        # Queues with admission fair sharing: their tenants' scores in this pass.
        self.sharing = Sharing(book.usage, {})
        # Cohorts whose idle quota is held for a head that did not fit.
        self.holds = CohortHolds(state.quota, state.queues)
        # This pass's decisions about active jobs (None: it holds nothing any more),
        # laid over what the book keeps of them (`_active`, and `grouped`: those being
        # stopped for others, and per cohort, or queue without one, the jobs a head of
        # it may preempt or take the time slice of; the victim searches look at no
        # other: shunter.domain.victims.candidates, preemption.choose_fair, time_slice).
        self.overlay: dict[JobKey, Job | None] = {}
        for key, decision in decided.items():
            job = book.active.get(key)
            if job is not None:
                holds = decision.status.phase is not None and decision.status.phase.holds_slot
                self.overlay[key] = replace(job, status=decision.status) if holds else None
        self.grouped = book.holdings().grouped(self.overlay)
        self._stopping = {group_of(job, self.state.queues) for job in self.grouped.stopping}

    def _near(self, job: Job) -> Sequence[Job]:
        return self.grouped.near(job, self.state.queues)

    def run(self) -> Iterator[tuple[Job, Context]]:
        seen: set[JobKey] = set()
        # The heads of all queues, merged in order: each job is taken in its queue's
        # state (position, blocked); a queue that is done contributes no more jobs.
        # (Each queue's iterator past its head is made only when its walk goes on: most
        # walks end at their head, kept from before.)
        heap: list[tuple[MergeKey, str, Job, Iterator[Job] | None]] = []
        states: dict[str, _QueueWalk] = {}
        held = self.book.held() if any(q.half_life for q in self.book.queues.values()) else {}
        self.sharing = Sharing(self.book.usage, held)
        self.groups = {name: queue_group(name, self.state.queues)
                       for name in self.book.queue_names()}  # fmt: skip
        self.quiet = self._quiet()
        for name, group in self.groups.items():
            if group in self.quiet:
                self.skipped.add(name)
                self.wakes.update(self.book.walks[name].wakes)
                continue
            queue = queue_of(name, self.state.queues)
            jobs: Iterator[Job] | None = None
            if queue is None or not queue.half_life:
                first = self.book.first_waiting(name)
            else:
                jobs = self._waiting(name, queue)
                first = next(jobs, None)
            if first is not None:
                states[name] = _QueueWalk(queue is not None and queue.strategy == BEST_EFFORT_FIFO)
                heap.append((self._key(first), name, first, jobs))
        heapq.heapify(heap)
        while heap:
            _, name, job, rest = heapq.heappop(heap)
            walk = states[name]
            if not walk.started:
                walk.started = True
                if self._replays(name, job):
                    walk.done = True  # as its last walk: nothing to decide
                    self.skipped.add(name)
                    continue
                self._start(name, job)
            decided = self._one(_numbered(job, self.numbered), walk)
            if decided is not None:
                seen.add(job.key)
                yield decided
            if not walk.done:
                if rest is None:
                    rest = itertools.islice(self.book.waiting(name), 1, None)
                following = next(rest, None)
                if following is not None:
                    heapq.heappush(heap, (self._key(following), name, following, rest))
        # Jobs past the walk: new ones get their first status, and those whose status
        # still shows an exact place learn that they are further back now.
        beyond = self._beyond()
        # (Not those of a queue whose kept walk was taken: that walk saw them all.)
        positioned = (key for name, keys in self.book.positioned_in.items()
                      if name not in self.skipped for key in keys)  # fmt: skip
        for key in (*self.numbered, *positioned, *self.woken):
            behind = self.book.jobs.get(key)
            if key in seen or behind is None or not behind.queued or behind.spec.cancelled:
                continue
            if behind.spec.queue in self.skipped:
                continue  # its last walk saw it, and decided nothing
            if behind.spec.suspended:
                continue
            seen.add(key)
            waiting = Context(now=self.now, rules=self.rules, waiting_message=beyond)
            yield _numbered(behind, self.numbered), self._refused_or_waiting(behind) or waiting

    def _replays(self, name: str, head: Job) -> bool:
        """The queue's kept walk holds: its queued jobs, the queues, Nodes and claims,
        and its use and its cohort's idle GPUs are as that walk saw them, its head's
        verdict is the same, and no victim search could help its head. Then walking
        it would decide nothing again; its head holds its cohort's idle quota as it
        would, and its timers stay. Its later jobs meet at most what its head met,
        less what this pass admits before them, and the refusals of their kept
        verdicts stay refusals, with the same status (`_Record`)."""
        if not self.memos or name in self.dirty:  # type: ignore[operator]
            return False
        memo = self.book.walks.get(name)
        if (
            memo is None
            or memo.head != head.key
            or memo.rules is not self.rules
            or memo.structure != self.book.structure
            or memo.version != self.book.queue_versions.get(name, 0)
            or memo.quota != self._quota(head)
        ):
            return False
        verdict = self.state.verdict(head, now=self.now)
        if verdict != memo.verdict:
            return False
        if verdict.reason == "Queued":
            if not self._no_victims(head):
                return False
            self.holds.hold(head)
        self.wakes.update(memo.wakes)
        return True

    def _quiet(self) -> set[tuple[str, str]]:
        """The cohorts whose kept walks are all taken again without looking at their
        queues: none of their jobs changed since a pass that kept every walk of
        theirs and decided nothing for any of their jobs (`GroupMemo`), none is looked
        at now, nothing near them is being stopped for others, and this pass cannot
        reach the global limits before their heads come: it admits at most the queued
        jobs of the other queues. Their quota, their heads' verdicts and their victim
        searches are then those their kept walks saw (`_replays`)."""
        if not self.memos or not self.book.group_walks:
            return set()
        book = self.book
        found = {
            group: memo
            for group, memo in book.group_walks.items()
            if group not in self.dirty_groups and group not in self._stopping
            and memo.version == book.group_versions.get(group, 0)
            and memo.structure == book.structure and memo.rules is self.rules
            and all(name in book.walks for name in memo.queues)
        }  # fmt: skip
        if not found:
            return set()
        others = [name for name, group in self.groups.items() if group not in found]
        limits, usage = self.rules.limits, self.state.usage
        if usage.running + sum(book.waiting_count(name) for name in others) >= limits.max_running:
            return set()
        if limits.gpu_budget:
            most = usage.gpus + sum(book.waiting_gpus(name) for name in others)
            found = {g: m for g, m in found.items() if most + m.gpus <= limits.gpu_budget}
        return set(found)

    def _start(self, name: str, head: Job) -> None:
        """Note what the walk of a queue starting at `head` reads (`_Record`)."""
        queue = queue_of(name, self.state.queues)
        keep = self.memos and not (queue is not None and queue.half_life)
        verdict = Verdict("")  # the head's, once decided (a head not decided: not kept)
        self.records[name] = _Record(head, verdict, self._quota(head), keep=keep)

    def _note(self, job: Job, verdict: Verdict | None) -> None:
        """One job of a walk: whether the walk may still be kept (`_Record`)."""
        record = self.records.get(job.spec.queue)
        if record is None:
            return
        record.keys.append(job.key)
        if not record.keep:
            return
        if verdict is None or job.spec.depends_on:  # refused or waiting before a verdict
            record.keep = bool(record.verdict.kind) and not job.spec.depends_on
            return
        if not record.verdict.kind:
            record.verdict = verdict
            record.keep = verdict.kind == "wait"
        if verdict.check not in _KEPT_CHECKS or self._quota(job) != record.quota:
            record.keep = False

    def keep(self, decisions: Mapping[JobKey, Decision]) -> None:
        """Keep the walks of this pass that decided nothing for a queued job of their
        queue (the book's `walks`); drop the others' kept walks. (Decisions for the
        jobs holding a slot are not the walk's; a victim's comes with an Event for
        its preemptor, in `notes`.)"""
        book = self.book
        jobs = [job for k in (*decisions, *self.notes) if (job := book.jobs.get(k)) is not None]
        decided = {job.spec.queue for job in jobs if job.queued}
        for name, record in self.records.items():
            if not record.keep or name in decided:
                book.walks.pop(name, None)
                continue
            wakes = tuple((k, self.wakes[k]) for k in record.keys if k in self.wakes)
            book.walks[name] = WalkMemo(
                book.queue_versions.get(name, 0), book.structure, self.rules,
                record.head.key, record.verdict, record.quota, wakes,
                record.head.spec.total_gpus,
            )  # fmt: skip
        # Cohorts: kept when every walk of theirs is, nothing of theirs was decided,
        # and none of their jobs was looked at (the pass saw them as the book has them).
        touched = {group_of(job, self.state.queues) for job in jobs}
        touched.update(self.dirty_groups)
        touched.update(self._stopping)
        members: dict[tuple[str, str], list[str]] = {}
        for name, group in self.groups.items():
            members.setdefault(group, []).append(name)
        for group, names in members.items():
            if group in self.quiet:
                continue  # kept as it was
            if group in touched or not self.memos or not all(n in book.walks for n in names):
                book.group_walks.pop(group, None)
                continue
            book.group_walks[group] = GroupMemo(
                book.group_versions.get(group, 0), book.structure, self.rules, tuple(names),
                max(book.walks[n].gpus for n in names),
            )  # fmt: skip

    def _quota(self, job: Job) -> tuple[int, int, int | None]:
        """What a quota verdict of the job's queue reads (QuotaUse.admits)."""
        quota, name = self.state.quota, job.spec.queue
        queue = queue_of(name, self.state.queues)
        idle = quota.cohort_idle(queue) if queue is not None and queue.cohort else None
        return quota.running.get(name, 0), quota.gpus.get(name, 0), idle

    def _no_victims(self, head: Job) -> bool:
        """No victim search for the head could find one (what `_preempt` and `_slice`
        do would return nothing), whatever the time: its queue slices no time and
        preempts none above their fair share, nothing near it is being stopped for
        others, it could not reclaim (its queue would pass its nominal quota), and its
        queue runs no job of lower priority it could preempt."""
        queue = queue_of(head.spec.queue, self.state.queues)
        if queue is None:
            return True
        if queue.time_slice is not None or queue.preempts_above_fair_share:
            return False
        if group_of(head, self.state.queues) in self._stopping:
            return False
        if queue.cohort and self.state.quota.within_nominal(head):
            return False
        if queue.preemption != LOWER_PRIORITY:
            return True
        if self._lowest is None:
            self._lowest = {}
            for job in self._active():
                if job.phase in (Phase.STARTING, Phase.RUNNING) and not job.spec.cancelled:
                    now = self._lowest.get(job.spec.queue)
                    if now is None or job.spec.priority < now:
                        self._lowest[job.spec.queue] = job.spec.priority
        lowest = self._lowest.get(queue.name)
        return lowest is None or lowest >= head.spec.priority

    def _active(self) -> Iterator[Job]:
        """The jobs holding a slot after this pass's decisions so far."""
        overlay = self.overlay
        for key, job in self.book.active.items():
            found = overlay.get(key, job)
            if found is not None:
                yield found

    def _beyond(self) -> str:
        """The message of a queued job further back than the exact positions."""
        return shared(f"Waiting in queue (more than {self.rules.exact_positions} jobs ahead)")

    def _waiting(self, name: str, queue: QueueView | None) -> Iterator[Job]:
        """A queue's waiting jobs in its order: admission order, or with admission
        fair sharing by priority, then its tenants' decayed usage, then submission
        (shunter.domain.ordering.Sharing)."""
        if queue is None or not queue.half_life:
            return self.book.waiting(name)
        return (self.book.jobs[key] for key in self.sharing.order(queue, self.book.lanes(name)))

    def _key(self, job: Job) -> MergeKey:
        """Where the job comes among the heads of all queues (ordering.merge_key)."""
        return merge_key(job, self.state.quota)

    def _dependency(self, job: Job) -> Context | None:
        """A job whose dependencies are not met waits (reason Dependency), blocking no
        one; one whose dependencies never will be fails (DependencyFailed), or is
        cancelled with its upstream (shunter.domain.dependencies)."""
        namespace = job.key.namespace
        found = judge_dependencies(
            job, lambda name: self.book.upstream(namespace, name), now=self.now,
            cleared=self.cleared.setdefault(namespace, set()),
        )  # fmt: skip
        if found.outcome is Outcome.SATISFIED:
            return None
        if found.wake_at is not None:
            self.wakes[job.key] = found.wake_at
        if found.outcome is Outcome.FAILED:
            refusal = Refusal(found.reason or "", found.message)
            return Context(now=self.now, rules=self.rules, refuse=refusal)
        if found.outcome is Outcome.CANCELLED:
            return Context(now=self.now, rules=self.rules, cascade=found.message)
        return Context(now=self.now, rules=self.rules, waiting_reason=found.reason or "",
                       waiting_message=found.message, waiting_for=found.waiting_for)  # fmt: skip

    def _refused_or_waiting(self, job: Job) -> Context | None:
        if job.spec.depends_on:
            held = self._dependency(job)
            if held is not None:
                return held
        return self._claim(job)

    def _claim(self, job: Job) -> Context | None:
        """A job that may not start as it is fails: its checkpoint claim is one it may
        not mount. (What the installer's policy allows, Secrets in spec.env among it,
        the API server judges: shunter.operator.actions.policy_refusal.) One whose
        claim does not exist yet,
        or still belongs to an earlier job of its name, waits, blocking no one. The
        claim the operator would create for the job is judged by the same rule:
        absent is fine, present must be the job's or offered (shunter.domain.claims)."""
        claim = claim_name(job.key.name, job.spec, self.rules.checkpoint_size)
        if not claim:
            return None
        namespace = job.key.namespace
        verdict = judge_claim(namespace, claim, found=self.book.claims.get((namespace, claim)),
                              allowed=self.rules.allowed_claims,
                              job=Claimant.of(job.key.name, job.spec, uid=job.uid))  # fmt: skip
        if verdict is None:
            return None
        if verdict.refused:
            refusal = Refusal(verdict.reason, verdict.message)
            return Context(now=self.now, rules=self.rules, refuse=refusal)
        waiting = f"Waiting for its checkpoint claim: {verdict.message}"
        return Context(now=self.now, rules=self.rules, waiting_reason=verdict.reason,
                       waiting_message=waiting)  # fmt: skip

    def _one(self, job: Job, walk: _QueueWalk) -> tuple[Job, Context] | None:
        refused = self._refused_or_waiting(job)
        if refused is not None:
            self._note(job, None)
            return job, refused
        verdict = self.state.verdict(job, now=self.now)
        if verdict.kind == "admit" and not walk.blocked:
            held = self.holds.blocks(job)
            if held is not None:
                verdict = Verdict("wait", "Queued", held, check="holds")
        self._note(job, verdict)
        if verdict.kind in ("never", "backoff", "capped"):
            if verdict.kind == "backoff" and job.status.not_before is not None:
                self.wakes[job.key] = job.status.not_before
            return job, Context(now=self.now, rules=self.rules, waiting_message=verdict.message,
                                waiting_reason=verdict.reason)  # fmt: skip
        if verdict.kind == "admit" and not walk.blocked:
            self.state.take(job, verdict.placement)
            self.sharing.charge(job)
            return job, Context(now=self.now, rules=self.rules, admit=verdict.placement)
        if verdict.sized:
            gpus = job.spec.total_gpus
            walk.refused = gpus if walk.refused is None else min(walk.refused, gpus)
        walk.position += 1
        walk.looked += 1
        message = f"Waiting in queue at position {walk.position}"
        if walk.position == 1 and verdict.kind == "wait":
            message += f": {verdict.message}"
            if verdict.reason == "Queued":
                record = self.records.get(job.spec.queue)
                if record is not None and not self._no_victims(job):
                    record.keep = False
                message = self._preempt(job, verdict.message) or self._slice(job) or message
                self.holds.hold(job)
        walk.blocked = walk.blocked or not walk.best_effort
        past = walk.position > self.rules.exact_positions
        if past and (walk.blocked or walk.looked > LOOKAHEAD or self._none_fits(job, walk)):
            walk.done = True
            return None
        reason = verdict.reason or "Queued"
        if past:  # a BestEffortFIFO queue looks further, but numbers only the first N
            return job, Context(now=self.now, rules=self.rules, waiting_message=self._beyond(),
                                waiting_reason=reason)  # fmt: skip
        return job, Context(now=self.now, rules=self.rules, queue_position=walk.position,
                            waiting_message=message, waiting_reason=reason)  # fmt: skip

    def _none_fits(self, job: Job, walk: _QueueWalk) -> bool:
        """No job of the queue can start in this pass: the smallest it has was refused
        for its size, or is not smaller than one that was (what BestEffortFIFO looks
        further back for cannot be there; past the exact positions, the walk stops)."""
        smallest = self.book.smallest_waiting(job.spec.queue)
        return walk.refused is not None and smallest is not None and smallest >= walk.refused

    def _preempt(self, job: Job, why: str) -> str | None:
        """Preempt for the head of a queue if its policy allows; the head's message."""
        near = self._near(job)
        found = choose(job, self.state, active=near, now=self.now, rules=self.rules,
                       stopping=self.grouped.stopping)  # fmt: skip
        if found is None:
            found = choose_fair(job, self.state, active=near, now=self.now,
                                rules=self.rules, stopping=self.grouped.stopping)  # fmt: skip
        if found is None:
            return None
        detail = f"by {job.key} (priority {job.spec.priority})"
        for i, victim in enumerate(found.victims):
            ctx = Context(now=self.now, rules=self.rules, pods=self.book.pods_of(victim),
                          not_ready=self.book.not_ready(), preempt=detail,
                          preempt_grace=found.grace(i),
                          max_grace=max_grace(victim, self.book.queues))  # fmt: skip
            decision = reconcile_job(victim, ctx)
            reason = (f"[Preempt] Job {victim.key} (priority {victim.spec.priority}) preempted"
                      f" {detail}: {why}")  # fmt: skip
            self.decided[victim.key] = replace(decision, logs=(reason, *decision.logs))
        if found.victims:
            names = ", ".join(f"{v.key} (priority {v.spec.priority})" for v in found.victims)
            self.notes[job.key] = (Event("Normal", "Preempting", f"Preempting {names} to start"),)
        total = found.waiting_for + len(found.victims)
        if not total:
            return None
        return f"Waiting for {total} preempted job{'s' if total > 1 else ''} to stop"

    def _slice(self, job: Job) -> str | None:
        """Time slicing for the head of a queue (TrainingQueue timeSliceSeconds): jobs of
        its priority past their slice yield; the head's message, or None."""
        slicing = time_slice(job, self.state, active=self._near(job), now=self.now,
                             rules=self.rules, stopping=self.grouped.stopping)  # fmt: skip
        if slicing.next_end is not None:
            self.wakes[job.key] = slicing.next_end
        found = slicing.yielding
        if found is None:
            return None
        detail = f"for {job.key} (priority {job.spec.priority})"
        for victim in found.victims:
            ctx = Context(now=self.now, rules=self.rules, pods=self.book.pods_of(victim),
                          not_ready=self.book.not_ready(), time_slice=detail,
                          max_grace=max_grace(victim, self.book.queues))  # fmt: skip
            decision = reconcile_job(victim, ctx)
            line = f"[TimeSlice] Job {victim.key} yields its time slice {detail}"
            self.decided[victim.key] = replace(decision, logs=(line, *decision.logs))
        if found.victims:
            names = ", ".join(str(v.key) for v in found.victims)
            self.notes[job.key] = (
                Event("Normal", "TimeSlicing", f"{names} yield their time slice to let it start"),
            )
        total = found.waiting_for + len(found.victims)
        if not total:
            return None
        return f"Waiting for {total} job{'s' if total > 1 else ''} to yield their time slice"


def _numbered(job: Job, numbered: dict[JobKey, int]) -> Job:
    sequence = numbered.get(job.key)
    if sequence is None:
        return job
    return replace(job, status=replace(job.status, sequence=sequence))


def _arrival(job: Job) -> tuple[float, int, str, str]:
    """Submission order of jobs not numbered yet.

    creationTimestamp has one-second resolution; within a second, the resourceVersion
    of a job the operator sees for the first time (nobody has written it since its
    creation) is its etcd creation revision, which orders creations exactly.
    resourceVersion is opaque by contract, so a non-numeric one falls back to names.
    """
    return (job.created_at.timestamp(), job.revision, job.key.namespace, job.key.name)
