"""Phase transitions of one job, decided from the job, its Pod and the admission plan.

    (new) -> queued -> starting -> running -> completed | failed
                 \\           \\        \\
                  cancelled    cancelling -> cancelled      (spec.cancelled=true)

Pod phase drives job phase once admitted. Terminal phases never change, whatever
arrives later (a late `cancelled=true` included). A Pod that disappears from a
running job fails the job with a message saying so; it never leaves it hanging.

`pod_unobserved` means the controller created the Pod but its watch has not shown it
yet: the Pod is treated as present, so it is neither created twice nor reported gone.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shunter.operator.cancellation import cancel_active, cancel_queued
from shunter.operator.decisions import Decision, Event
from shunter.operator.model import Job, Phase, PodView
from shunter.operator.podspec import build_pod, pod_name


@dataclass(frozen=True)
class Context:
    """What the job's reconcile needs to know of the world around it."""

    now: datetime
    admit: bool = False
    queue_position: int | None = None
    pod_unobserved: bool = False
    grace_margin: timedelta = timedelta(seconds=10)
    waiting_message: str | None = None
    # Whether the node the job's Pod is bound to is Ready (True when unknown).
    node_ready: bool = True


def waiting_message(ctx: Context) -> str:
    return ctx.waiting_message or f"Waiting in queue at position {ctx.queue_position}"


def still_waiting(job: Job, ctx: Context) -> bool:
    """A queued job this pass leaves exactly as it is (the common case, checked cheaply)."""
    status = job.status
    return (
        status.phase is Phase.QUEUED
        and not ctx.admit
        and not job.spec.cancelled
        and status.sequence is not None
        and status.queue_position == ctx.queue_position
        and status.message == waiting_message(ctx)
    )


def reconcile_job(job: Job, pod: PodView | None, ctx: Context) -> Decision:
    phase = job.phase
    if phase is not None and phase.terminal:
        return Decision(status=job.status)
    if job.queued:
        return _queued(job, ctx)
    if job.spec.cancelled or phase is Phase.CANCELLING:
        return cancel_active(
            job,
            pod,
            pod_unobserved=ctx.pod_unobserved,
            now=ctx.now,
            margin=ctx.grace_margin,
            node_ready=ctx.node_ready,
        )
    return _admitted(job, pod, ctx)


def _queued(job: Job, ctx: Context) -> Decision:
    status = job.status
    events: tuple[Event, ...] = ()
    if job.phase is None:
        events = (Event("Normal", "Queued", "Waiting for a free slot"),)
    if job.spec.cancelled:
        decision = cancel_queued(job, now=ctx.now)
        return replace(decision, events=events + decision.events)
    if ctx.admit:
        name = pod_name(job.key.name)
        admitted = replace(
            status,
            phase=Phase.STARTING,
            reason="Admitted",
            message=f"Admitted; starting pod {name}",
            queue_position=None,
            pod_name=name,
            admitted_at=ctx.now,
        )
        return Decision(
            status=admitted,
            create_pod=build_pod(replace(job, status=admitted)),
            events=(*events, Event("Normal", "Admitted", f"Admitted; creating pod {name}")),
            logs=(f"[Admit] Job {job.key} admitted; creating pod {name}",),
        )
    message = waiting_message(ctx)
    return Decision(
        status=replace(
            status,
            phase=Phase.QUEUED,
            reason="Queued",
            message=message,
            queue_position=ctx.queue_position,
        ),
        events=events,
    )


def _admitted(job: Job, pod: PodView | None, ctx: Context) -> Decision:
    status = job.status
    name = status.pod_name or pod_name(job.key.name)
    if pod is None:
        if ctx.pod_unobserved:
            return Decision(status=status)
        if job.phase is Phase.STARTING:
            # Never seen: the create failed or the operator stopped before it. Retry;
            # the deterministic name makes a duplicate impossible.
            return Decision(status=status, create_pod=build_pod(job))
        return _vanished(job, name, ctx)
    if pod.job_uid and pod.job_uid != job.uid:
        # A Pod of an earlier job with the same name: it is being garbage-collected.
        return Decision(status=status)
    if pod.phase == "Succeeded":
        return _finished(job, pod, ctx, Phase.COMPLETED)
    if pod.phase == "Failed":
        return _finished(job, pod, ctx, Phase.FAILED)
    if pod.deleting:
        # Deleted outside Shunter (eviction, drain, kubectl delete): wait for it to go.
        return Decision(status=replace(status, node_name=pod.node_name or status.node_name))
    if pod.phase == "Running" and job.phase is Phase.STARTING:
        return Decision(
            status=replace(
                status,
                phase=Phase.RUNNING,
                reason="Running",
                message=f"Pod {name} is running on {pod.node_name}",
                node_name=pod.node_name,
                started_at=pod.started_at or ctx.now,
            ),
            events=(Event("Normal", "Started", f"Pod {name} running on {pod.node_name}"),),
        )
    return Decision(status=replace(status, node_name=pod.node_name or status.node_name))


def _finished(job: Job, pod: PodView, ctx: Context, phase: Phase) -> Decision:
    name = pod.name
    if phase is Phase.COMPLETED:
        reason, message = "Completed", pod.message or "Training finished"
        event = Event("Normal", "Completed", f"Pod {name} succeeded")
    else:
        reason = pod.reason or "Error"
        detail = f": {pod.message}" if pod.message else ""
        message = f"Trainer exited with code {pod.exit_code} ({reason}){detail}"
        event = Event("Warning", "Failed", f"Pod {name} failed: {message}")
    return Decision(
        status=replace(
            job.status,
            phase=phase,
            reason=reason,
            message=message,
            exit_code=pod.exit_code,
            node_name=pod.node_name or job.status.node_name,
            started_at=job.status.started_at or pod.started_at,
            completed_at=ctx.now,
        ),
        events=(event,),
        released=True,
    )


def _vanished(job: Job, name: str, ctx: Context) -> Decision:
    message = (
        f"Pod {name} disappeared while the job was {job.phase}"
        " (deleted outside Shunter, or its node was lost)"
    )
    return Decision(
        status=replace(
            job.status,
            phase=Phase.FAILED,
            reason="PodVanished",
            message=message,
            completed_at=ctx.now,
        ),
        events=(Event("Warning", "PodVanished", message),),
        released=True,
    )
