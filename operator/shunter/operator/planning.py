"""One reconcile pass: the decisions for what changed, then admission (pure).

A pass looks at the jobs the book marks as changed (or whose timers are due), then
walks the queue from its head: admission by the rules of `admission`, queue positions
for the first `exact_positions` jobs, and the first status of new jobs. It stops
walking as soon as nothing further back can be admitted or needs a new position, so
its cost does not grow with the length of the queue.

Admitted jobs are reconciled first, so a slot freed in this pass (a Pod that
completed, failed or finished terminating) is handed to the next queued job in the
same pass rather than on a later timer.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shunter.operator.admission import Limits, Usage, fits_budget
from shunter.operator.book import JobBook
from shunter.operator.decisions import Decision
from shunter.operator.lifecycle import Context, reconcile_job, still_waiting
from shunter.operator.model import Job, JobKey


@dataclass(frozen=True)
class Pass:
    decisions: dict[JobKey, Decision]
    next_sequence: int
    wake_at: dict[JobKey, datetime]


def _changed(job: Job, decision: Decision) -> bool:
    return (
        decision.status != job.status
        or decision.create_pod is not None
        or decision.delete_pod is not None
        or bool(decision.events or decision.logs)
    )


def plan_pass(
    book: JobBook,
    *,
    changed: Collection[JobKey] | None = None,
    now: datetime,
    limits: Limits,
    grace_margin: timedelta,
    unobserved: Collection[JobKey] = (),
    exact_positions: int = 20,
    not_ready_nodes: Collection[str] = (),
) -> Pass:
    """Decide for `changed` (None: every job) and the head of the queue.

    not_ready_nodes: names of the nodes whose Ready condition is not True (from a
    Node watch); a job whose Pod is bound to one of them is told so when cancelled.
    """
    keys = book.jobs.keys() if changed is None else changed
    decisions: dict[JobKey, Decision] = {}
    usage = Usage.of(book.active.values())
    fresh: list[Job] = []
    for key in keys:
        job = book.jobs.get(key)
        if job is None or (job.phase is not None and job.phase.terminal):
            continue
        if job.queued:
            if job.status.sequence is None or job.spec.cancelled:
                fresh.append(job)
            continue
        pod = book.pods.get(key)
        node = job.status.node_name or (pod.node_name if pod is not None else None)
        decision = reconcile_job(
            job,
            pod,
            Context(
                now=now,
                pod_unobserved=key in unobserved,
                grace_margin=grace_margin,
                node_ready=node not in not_ready_nodes,
            ),
        )
        decisions[key] = decision
        usage = usage.after(job, decision.status)

    # New jobs are numbered in arrival order; cancelled queued jobs leave at once.
    sequence = book.max_sequence + 1
    numbered: dict[JobKey, int] = {}
    for job in sorted((j for j in fresh if j.status.sequence is None), key=_arrival):
        numbered[job.key] = sequence
        sequence += 1
    for job in fresh:
        if job.spec.cancelled:
            decisions[job.key] = reconcile_job(_numbered(job, numbered), None, Context(now=now))

    for job, ctx in _walk(book, usage, numbered, limits=limits, now=now,
                          exact_positions=exact_positions):  # fmt: skip
        if still_waiting(job, ctx):
            continue  # nothing to decide: skipping it keeps a pass cheap with long queues
        decisions[job.key] = reconcile_job(job, None, ctx)

    changed_decisions = {k: d for k, d in decisions.items() if _changed(book.jobs[k], d)}
    wakes = {k: d.wake_at for k, d in decisions.items() if d.wake_at is not None}
    return Pass(decisions=changed_decisions, next_sequence=sequence, wake_at=wakes)


def _walk(
    book: JobBook,
    usage: Usage,
    numbered: dict[JobKey, int],
    *,
    limits: Limits,
    now: datetime,
    exact_positions: int,
) -> list[tuple[Job, Context]]:
    """The queued jobs this pass must decide for, each with its context."""
    out: list[tuple[Job, Context]] = []
    seen: set[JobKey] = set()
    position = 0
    blocked = False
    beyond = f"Waiting in queue (more than {exact_positions} jobs ahead)"
    for job in book.waiting():
        job = _numbered(job, numbered)
        if not fits_budget(job, limits):
            # Can never start: it waits (with a message) but blocks no one.
            message = (
                f"Requests {job.spec.gpus} GPUs, more than the GPU budget of"
                f" {limits.gpu_budget}: it cannot start until the budget grows"
            )
            out.append((job, Context(now=now, waiting_message=message)))
            seen.add(job.key)
            continue
        if not blocked and usage.admits(job, limits):
            usage = usage.plus(job)
            out.append((job, Context(now=now, admit=True)))
            seen.add(job.key)
            continue
        blocked = True
        position += 1
        if position > exact_positions:
            break
        out.append((job, Context(now=now, queue_position=position)))
        seen.add(job.key)
    # Jobs past the walk: new ones get their first status, and those whose status
    # still shows an exact place learn that they are further back now.
    for key in (*numbered, *book.positioned):
        behind = book.jobs.get(key)
        if key in seen or behind is None or not behind.queued or behind.spec.cancelled:
            continue
        seen.add(key)
        out.append((_numbered(behind, numbered), Context(now=now, waiting_message=beyond)))
    return out


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
    try:
        revision = int(job.resource_version)
    except ValueError:
        revision = 0
    return (job.created_at.timestamp(), revision, job.key.namespace, job.key.name)
