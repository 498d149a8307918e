"""Phase transitions of one job, decided from the job, its Pods and the pass (pure).

    (new) -> queued -> starting -> running -> completed | failed
               |  ^        \\           \\
               |  |         stopping / cancelling -> cancelled | failed | queued |
               v  |                                  suspended | starting (retry)
             suspended

Pods drive the phase once a job is admitted: `running` when every Pod runs,
`completed` when every Pod succeeded; a failed Pod fails the job, or retries it as a
whole within `spec.backoffLimit` (the other Pods stopped first). Every stop (cancel,
deadline, start timeout, suspend, preemption, a failed gang member) goes through
`stopping`. Terminal phases never change, whatever arrives later.

`unobserved` Pods were created but their watch has not shown them yet: they count
as present, so they are neither created twice nor reported gone.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from shunter.domain.dependencies import CANCELLED_REASON, WAITING_REASON
from shunter.domain.model import (
    Attempt,
    Job,
    JobStatus,
    Phase,
    PodView,
    StopCause,
    TerminationStep,
    shared,
)
from shunter.domain.podspec import Objects, pod_names
from shunter.operator.decisions import Decision, DeletePod, Event
from shunter.operator.rules import Rules
from shunter.operator.stopping import (
    STOP_WHY,
    StopView,
    cancel_unstarted,
    grace_of,
    record_attempt,
    stop,
)


@dataclass(frozen=True)
class Refusal:
    reason: str
    message: str


@dataclass(frozen=True)
class Context:
    """What the job's reconcile needs to know of the world around it."""

    now: datetime
    rules: Rules = field(default_factory=Rules)
    # A queued job: admitted with this placement (a node per Pod), or where it waits.
    admit: tuple[str, ...] | None = None
    queue_position: int | None = None
    waiting_message: str | None = None
    waiting_reason: str = "Queued"
    # Waiting for its dependencies: the conditions not met yet (status.waitingFor).
    waiting_for: str | None = None
    # An admitted job: its current Pods by index, those created but not seen yet, and
    # the nodes that are not Ready.
    pods: Mapping[int, PodView] = field(default_factory=dict)
    unobserved: Collection[int] = ()
    not_ready: Collection[str] = ()
    # Chosen as a preemption victim (the detail names the preemptor), or to yield its
    # time slice (the detail names the job it yields to).
    preempt: str | None = None
    time_slice: str | None = None
    # The grace the preemption chose for this victim (None: the sized grace).
    preempt_grace: int | None = None
    # A queued job that may never start as it is (its checkpoint claim is not
    # allowed): fails with this reason and message.
    refuse: Refusal | None = None
    # A queued job cancelled with its upstream (spec.cancelDependents): why.
    cascade: str | None = None
    # The job's queue's bound on a stop's grace period (TrainingQueue maxGracePeriodSeconds).
    max_grace: int | None = None


def _stop_view(ctx: Context, **given: Any) -> StopView:
    """What a stop of the job needs from its context (`given` adds or overrides)."""
    fields: dict[str, Any] = {"pods": ctx.pods, "unobserved": ctx.unobserved,
                              "not_ready": ctx.not_ready, "max_grace": ctx.max_grace}  # fmt: skip
    return StopView(**{**fields, **given})


def waiting_message(ctx: Context) -> str:
    return ctx.waiting_message or shared(f"Waiting in queue at position {ctx.queue_position}")


def still_waiting(job: Job, ctx: Context) -> bool:
    """A queued job this pass leaves exactly as it is (the common case, checked cheaply)."""
    status = job.status
    return (
        status.phase is Phase.QUEUED
        and ctx.admit is None
        and not job.spec.cancelled
        and not job.spec.suspended
        and ctx.refuse is None
        and ctx.cascade is None
        and status.sequence is not None
        and status.queue_position == ctx.queue_position
        and status.message == waiting_message(ctx)
        and status.reason == ctx.waiting_reason
        and status.waiting_for == ctx.waiting_for
    )


def all_succeeded(job: Job, pods: Mapping[int, PodView]) -> bool:
    """Every Pod of the job's attempt succeeded: its work is done."""
    return len(pods) == job.spec.nodes and all(p.phase == "Succeeded" for p in pods.values())


def stale_stop(job: Job, decision: Decision, pods: Mapping[int, PodView]) -> bool:
    """A stop of the operator's own, decided while the job ran and not sent yet,
    whose job has finished meanwhile: sent, it would queue done work to run again.
    (A user's cancel is sent as asked.)"""
    began = decision.status.termination
    return (
        began is not None
        and job.status.termination is None
        and began.cause is not StopCause.CANCEL
        and all_succeeded(job, pods)
    )


def reconcile_job(job: Job, ctx: Context) -> Decision:
    phase = job.phase
    if phase is not None and phase.terminal:
        return _finished(job, ctx)
    if phase is Phase.SUSPENDED:
        return _suspended(job, ctx)
    if job.queued:
        return _queued(job, ctx)
    view = _stop_view(ctx)
    termination = job.status.termination
    stopping = termination is not None and termination.step is not TerminationStep.DONE
    if job.spec.cancelled:
        return stop(job, view, cause=StopCause.CANCEL, now=ctx.now, rules=ctx.rules)
    if stopping:
        assert termination is not None
        return stop(job, _view_for(job, termination.cause, ctx), cause=termination.cause,
                    now=ctx.now, rules=ctx.rules)  # fmt: skip
    if all_succeeded(job, ctx.pods):
        # Done before a stop of the operator's own began (a preemption, a time slice,
        # a deadline, a suspend): it completes; a stop would run it again.
        return _completed(job, ctx)
    if ctx.preempt is not None:
        view = replace(view, detail=ctx.preempt, grace=ctx.preempt_grace)
        return stop(job, view, cause=StopCause.PREEMPT, now=ctx.now, rules=ctx.rules)
    if ctx.time_slice is not None:
        view = replace(view, detail=ctx.time_slice)
        return stop(job, view, cause=StopCause.TIME_SLICE, now=ctx.now, rules=ctx.rules)
    if job.spec.suspended:
        return stop(job, view, cause=StopCause.SUSPEND, now=ctx.now, rules=ctx.rules)
    return _admitted(job, ctx)


def _finished(job: Job, ctx: Context) -> Decision:
    """A finished job never changes, and it has no live Pod: one that shows up anyway
    (a create that reached the API server late, e.g. held by the network while its
    replica lost the Lease; one of a gang created before another was rejected) is
    deleted, with the job's grace period."""
    live = [p for _, p in sorted(ctx.pods.items()) if not p.finished and not p.deleting]
    if not live:
        return Decision(status=job.status)
    grace = grace_of(job, _stop_view(ctx), ctx.rules)
    return Decision(
        status=job.status,
        delete_pods=tuple(DeletePod(p.namespace, p.name, grace) for p in live),
        events=tuple(
            Event("Warning", "OrphanPod", f"Pod {p.name} of a job already {job.phase}: deleting it")
            for p in live
        ),
        logs=tuple(
            f"[Orphan] Pod {p.namespace}/{p.name} of job {job.key}, already"
            f" {job.phase}: deleting it"
            for p in live
        ),
    )


def _view_for(job: Job, cause: StopCause, ctx: Context) -> StopView:
    """A failed gang that will not retry keeps its finished Pods (their logs)."""
    targets = None
    if cause is StopCause.FAILURE and job.status.failures + 1 > job.spec.backoff_limit:
        targets = [i for i in range(job.spec.nodes)
                   if not (i in ctx.pods and ctx.pods[i].finished)]  # fmt: skip
    # The detail of the stop (who preempted, which Pod failed) is in its message.
    head = (job.status.message or "").split(";")[0]
    prefix = STOP_WHY[cause]
    if cause is StopCause.FAILURE:
        detail = head
    else:
        detail = head[len(prefix) :].strip() if head.startswith(prefix) else ""
    return _stop_view(ctx,
                    targets=targets, detail=detail)  # fmt: skip


def _suspended(job: Job, ctx: Context) -> Decision:
    if job.spec.cancelled:
        return cancel_unstarted(job, now=ctx.now, rules=ctx.rules)
    if job.spec.suspended:
        return Decision(status=job.status)
    resumed = replace(job.status, phase=Phase.QUEUED, reason="Resumed",
                      message="Resumed; waiting in queue", termination=None)  # fmt: skip
    return Decision(
        status=resumed,
        events=(Event("Normal", "Resumed", "Resumed; back in the queue in its original place"),),
        logs=(f"[Resume] Job {job.key} resumed; back in the queue",),
    )


# How long `running` waits for a job's Pods to end after they started (_running_hold).
RUNNING_HOLD = timedelta(seconds=2)
# One for every first numbering (tens of thousands wait for their writes at once).
QUEUED_EVENTS = (Event("Normal", "Queued", "Waiting for a free slot"),)


def _queued(job: Job, ctx: Context) -> Decision:
    if job.status.waiting_for is not None:  # shown only while it waits (below)
        job = replace(job, status=replace(job.status, waiting_for=None))
    status = job.status
    events: tuple[Event, ...] = ()
    if job.phase is None and ctx.admit is None:
        # A job admitted in its first pass never waited: its Admitted Event says it all
        # (one write less per job, which counts at a hundred jobs a second).
        events = QUEUED_EVENTS
        if ctx.waiting_reason == WAITING_REASON:  # what it waits for is its dependencies
            events = (Event("Normal", WAITING_REASON, waiting_message(ctx)),)
    if job.spec.cancelled:
        decision = cancel_unstarted(job, now=ctx.now, rules=ctx.rules)
        return replace(decision, events=events + decision.events)
    if job.spec.suspended:
        suspended = replace(status, phase=Phase.SUSPENDED, reason="Suspended",
                            message="Suspended while queued; resume to queue it again",
                            queue_position=None, suspensions=status.suspensions + 1)  # fmt: skip
        return Decision(status=suspended, events=(
            *events, Event("Normal", "Suspended", "Suspended while queued")))  # fmt: skip
    if ctx.cascade is not None:
        return _cancelled_with_upstream(job, ctx, events)
    if ctx.refuse is not None:
        reason, message = ctx.refuse.reason, ctx.refuse.message
        failed = replace(status, phase=Phase.FAILED, reason=reason, message=message,
                         queue_position=None, completed_at=ctx.now)  # fmt: skip
        return Decision(
            status=failed,
            events=(*events, Event("Warning", reason, message)),
            logs=(f"[Refuse] Job {job.key} not admitted: {message}",),
        )
    if ctx.admit is not None:
        return _admit(job, ctx, events)
    return Decision(
        status=replace(
            status,
            phase=Phase.QUEUED,
            reason=ctx.waiting_reason,
            message=waiting_message(ctx),
            queue_position=ctx.queue_position,
            waiting_for=ctx.waiting_for,
        ),
        events=events,
    )


def _cancelled_with_upstream(job: Job, ctx: Context, events: tuple[Event, ...]) -> Decision:
    """Cancelled like a queued job the user cancels, with its own reason: its dependents
    are cancelled in turn (shunter.domain.dependencies)."""
    assert ctx.cascade is not None
    decision = cancel_unstarted(job, now=ctx.now, rules=ctx.rules)
    status = replace(decision.status, reason=CANCELLED_REASON, message=ctx.cascade)
    return Decision(
        status=status,
        events=(*events, Event("Normal", CANCELLED_REASON, ctx.cascade)),
        logs=(f"[Cancel] Job {job.key} removed from queue: {ctx.cascade}",),
    )


def _admit(job: Job, ctx: Context, events: tuple[Event, ...]) -> Decision:
    assert ctx.admit is not None
    names = pod_names(job)
    shown = ", ".join(names)
    admitted = replace(
        job.status,
        phase=Phase.STARTING,
        reason="Admitted",
        message=f"Admitted; starting pod{'s' if len(names) > 1 else ''} {shown}",
        queue_position=None,
        estimated_start=None,
        estimated_range=None,
        pod_name=names[0],
        node_name=ctx.admit[0] if len(ctx.admit) == 1 else None,
        admitted_at=ctx.now,
        placement=ctx.admit,
        attempts=job.status.attempts + 1,
        not_before=None,
        termination=None,
        exit_code=None,
        pods_ready=0,
    )
    started = replace(job, status=admitted)
    on = ", ".join(ctx.admit)
    return Decision(
        status=admitted,
        create=_objects(started, ctx),
        events=(
            *events,
            Event(
                "Normal",
                "Admitted",
                f"Admitted; creating pod{'s' if len(names) > 1 else ''} {shown} on {on}",
            ),
        ),
        logs=(
            f"[Admit] Job {job.key} admitted; creating pod{'s' if len(names) > 1 else ''} {shown}",
        ),
    )


def _objects(job: Job, ctx: Context, missing: Collection[int] | None = None) -> Objects:
    """Built when the decision's write goes out (podspec.Objects), not now."""
    return Objects(
        job, default_size=ctx.rules.checkpoint_size,
        storage_class=ctx.rules.checkpoint_storage_class, missing=missing,
        report_url=ctx.rules.report_url,
    )  # fmt: skip


def _admitted(job: Job, ctx: Context) -> Decision:
    status, now, pods = job.status, ctx.now, ctx.pods
    names = pod_names(job)
    if status.reason == "Retrying":
        return _retry(job, ctx)
    missing = [i for i in range(job.spec.nodes) if i not in pods and i not in ctx.unobserved]
    if missing and job.phase is Phase.STARTING:
        # Never seen: the create failed or the operator stopped before it. Retry;
        # the deterministic names make a duplicate impossible.
        return Decision(status=status, create=_objects(job, ctx, missing))
    if missing:
        return _vanished(job, ctx, [names[i] for i in missing])
    failed = [p for _, p in sorted(pods.items()) if p.phase == "Failed"]
    if failed:
        return _pod_failed(job, ctx, failed[0])
    # (Every Pod succeeded: completed by reconcile_job before it comes here.)
    ready = sum(1 for p in pods.values() if p.ready or p.phase == "Running")
    node = pods[0].node_name if 0 in pods else None
    single = job.spec.nodes == 1
    current = replace(status, pods_ready=ready,
                      node_name=(node or status.node_name) if single else None)  # fmt: skip
    if any(p.deleting for p in pods.values()):
        # Deleted outside Shunter (eviction, drain, kubectl delete): wait for it to go.
        return Decision(status=current)
    running = len(pods) == job.spec.nodes and all(p.phase == "Running" for p in pods.values())
    if job.phase is Phase.STARTING:
        if running:
            hold = _running_hold(ctx)
            if hold is not None:
                return Decision(status=status, wake_at=hold)
            return _running(job, current, ctx)
        return _starting(job, current, ctx)
    limit = job.spec.max_runtime_seconds
    if limit and status.running_since is not None:
        deadline = status.running_since + timedelta(seconds=limit)
        if now >= deadline:
            view = _stop_view(ctx, pods=pods)
            return stop(replace(job, status=current), view, cause=StopCause.DEADLINE,
                        now=now, rules=ctx.rules)  # fmt: skip
        return Decision(status=current, wake_at=deadline)
    return Decision(status=current)


def _running_hold(ctx: Context) -> datetime | None:
    """Until when `running` waits after its Pods started (None: not at all).

    As the Job controller holds a Pod's updates for a second before it syncs the Job:
    a job that ends within RUNNING_HOLD of its start goes from `starting` straight to
    its end, one status write instead of two (at 60,000 jobs of 200 ms the `running`
    writes cost the API server a quarter of what it took; bench/RESULTS.md). Counted
    from the Pods' start by the node's clock (whole seconds): never longer than
    RUNNING_HOLD from now, whatever the node's clock says."""
    starts = [p.started_at for p in ctx.pods.values() if p.started_at is not None]
    if not starts:
        return None
    until = max(starts) + RUNNING_HOLD
    return until if ctx.now < until <= ctx.now + RUNNING_HOLD else None


def _running(job: Job, status: JobStatus, ctx: Context) -> Decision:
    pods = ctx.pods
    starts = [p.started_at for p in pods.values() if p.started_at is not None]
    first = min(starts) if starts else ctx.now
    if job.spec.nodes == 1:
        pod = pods[0]
        message = f"Pod {pod.name} is running on {pod.node_name}"
        event = f"Pod {pod.name} running on {pod.node_name}"
    else:
        message = f"All {job.spec.nodes} Pods are running"
        on = ", ".join(sorted(p.node_name or "?" for p in pods.values()))
        event = f"All {job.spec.nodes} Pods running on {on}"
    running = replace(
        status, phase=Phase.RUNNING, reason="Running", message=message,
        started_at=job.status.started_at or first, running_since=ctx.now,
        pods_ready=job.spec.nodes,
    )  # fmt: skip
    wake = None
    if job.spec.max_runtime_seconds:
        wake = ctx.now + timedelta(seconds=job.spec.max_runtime_seconds)
    return Decision(status=running, events=(Event("Normal", "Started", event),), wake_at=wake)


def stamped_when_sent(before: JobStatus, after: JobStatus, now: datetime) -> JobStatus:
    """The status a decision writes, its start's clock set to when the write is sent.

    A start is decided with its time (`admitted_at`, or a retry's `not_before`), and
    the start timeout (`_starting`) counts from it. When the API server takes fewer
    writes than the passes decide, an admission can wait minutes in the operator's
    own line before its status and Pods are written (60,000 jobs on a small control
    plane): counted from the decision, those minutes ran out its start timeout
    before its Pod existed, and each such job was stopped and queued again, more
    writes in the same line. A time the decision set that has passed when it is
    sent becomes now; a time still ahead (a backoff's end) is left."""

    def moved(at: datetime | None, was: datetime | None) -> datetime | None:
        return now if at is not None and at != was and at < now else at

    admitted_at = moved(after.admitted_at, before.admitted_at)
    not_before = moved(after.not_before, before.not_before)
    if (admitted_at, not_before) == (after.admitted_at, after.not_before):
        return after
    return replace(after, admitted_at=admitted_at, not_before=not_before)


def _starting(job: Job, status: JobStatus, ctx: Context) -> Decision:
    rules, now = ctx.rules, ctx.now
    # This attempt began at admission, or when a retry started (not_before).
    marks = [t for t in (job.status.admitted_at, job.status.not_before) if t is not None]
    began = max(marks) if marks else now
    deadline = began + rules.start_timeout
    waiting = [p for _, p in sorted(ctx.pods.items()) if p.unschedulable]
    message = status.message
    if waiting:
        pod = waiting[0]
        message = f"Admitted; pod {pod.name} is not scheduled yet: {pod.unschedulable}"
    current = replace(status, message=message)
    if now >= deadline:
        view = _stop_view(ctx)
        return stop(replace(job, status=current), view, cause=StopCause.START_TIMEOUT,
                    now=now, rules=rules)  # fmt: skip
    return Decision(status=current, wake_at=deadline)


def _retry(job: Job, ctx: Context) -> Decision:
    """After a failed run within the backoff limit: wait, then start a new attempt."""
    status = job.status
    if status.not_before is not None and ctx.now < status.not_before:
        return Decision(status=status, wake_at=status.not_before)
    if ctx.pods or ctx.unobserved:
        return Decision(status=status)  # the last attempt's Pods are still going away
    names = pod_names(job)
    attempt = replace(
        status, reason="Admitted", attempts=status.attempts + 1, not_before=ctx.now,
        message=f"Retry {status.failures} of {job.spec.backoff_limit}: starting"
        f" pod{'s' if len(names) > 1 else ''} {', '.join(names)}", pods_ready=0,
    )  # fmt: skip
    started = replace(job, status=attempt)
    return Decision(
        status=attempt,
        create=_objects(started, ctx),
        events=(
            Event(
                "Normal", "Restarted", f"Attempt {attempt.attempts}: creating {', '.join(names)}"
            ),
        ),
        logs=(f"[Retry] Job {job.key} attempt {attempt.attempts}: creating {', '.join(names)}",),
    )


def _pod_failed(job: Job, ctx: Context, pod: PodView) -> Decision:
    status = job.status
    reason = pod.reason or "Error"
    detail = f": {pod.message}" if pod.message else ""
    if job.spec.nodes == 1:
        what = f"Trainer exited with code {pod.exit_code} ({reason}){detail}"
    else:
        what = f"Pod {pod.name} failed with exit code {pod.exit_code} ({reason}){detail}"
    current = replace(status, exit_code=pod.exit_code, message=what, node_name=pod.node_name
                      if job.spec.nodes == 1 else None)  # fmt: skip
    retry = status.failures + 1 <= job.spec.backoff_limit
    if job.spec.nodes == 1 and not retry:
        # Nothing else to stop; the failed Pod stays for its logs.
        runs = status.failures + 1
        message = what if not job.spec.backoff_limit else f"{what} (after {runs} attempts)"
        failed = replace(
            current, phase=Phase.FAILED, reason=reason, completed_at=ctx.now, message=message,
            started_at=status.started_at or pod.started_at, failures=status.failures + 1,
            history=_history(job, current, ctx, reason),
        )  # fmt: skip
        event = Event("Warning", "Failed", f"Pod {pod.name} failed: {what}")
        return Decision(status=failed, events=(event,), released=True)
    targets = None if retry else [i for i in range(job.spec.nodes)
                                  if not (i in ctx.pods and ctx.pods[i].finished)]  # fmt: skip
    view = _stop_view(ctx,
                    targets=targets, detail=what)  # fmt: skip
    return stop(replace(job, status=current), view, cause=StopCause.FAILURE, now=ctx.now,
                rules=ctx.rules)  # fmt: skip


def _history(job: Job, status: JobStatus, ctx: Context, reason: str) -> tuple[Attempt, ...]:
    return record_attempt(replace(job, status=status), reason=reason, now=ctx.now)


def _completed(job: Job, ctx: Context) -> Decision:
    pods = ctx.pods
    first = pods[0]
    message = first.message or "Training finished"
    done_status = replace(
        job.status, phase=Phase.COMPLETED, reason="Completed", message=message, exit_code=0,
        node_name=first.node_name if job.spec.nodes == 1 else None,
        started_at=job.status.started_at or first.started_at, completed_at=ctx.now,
        pods_ready=0,
    )  # fmt: skip
    done_status = replace(done_status, history=_history(job, done_status, ctx, "Completed"))
    names = ", ".join(p.name for _, p in sorted(pods.items()))
    event = Event("Normal", "Completed", f"Pod {names} succeeded")
    return Decision(status=done_status, events=(event,), released=True)


def _vanished(job: Job, ctx: Context, names: list[str]) -> Decision:
    message = (
        f"Pod {', '.join(names)} disappeared while the job was {job.phase}"
        " (deleted outside Shunter, or its node was lost)"
    )
    if job.spec.nodes > 1 and ctx.pods:
        current = replace(job.status, message=message)
        view = _stop_view(ctx,
                        detail=message)  # fmt: skip
        return stop(replace(job, status=current), view, cause=StopCause.FAILURE, now=ctx.now,
                    rules=ctx.rules)  # fmt: skip
    failed = replace(job.status, phase=Phase.FAILED, reason="PodVanished", message=message,
                     completed_at=ctx.now)  # fmt: skip
    # The run is recorded like every other, or the accounting would count it missing.
    failed = replace(failed, history=_history(job, failed, ctx, "PodVanished"))
    return Decision(status=failed, events=(Event("Warning", "PodVanished", message),),
                    released=True)  # fmt: skip
