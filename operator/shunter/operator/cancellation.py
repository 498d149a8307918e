"""Cancelling a job that holds a Pod: SIGTERM with a grace period, then force.

The steps, each recorded in `status.termination` before its API call so that an
operator restart resumes where it stopped:

1. `graceful`: phase `cancelling`; the Pod is deleted with the job's grace period
   (the kubelet sends SIGTERM and the trainer checkpoints).
2. `forced`: the Pod still exists `grace + margin` seconds later (the trainer or its
   node hangs), so it is deleted with gracePeriodSeconds=0.
3. `done`: the Pod object is gone: phase `cancelled`, message "Cancelled by user".

A force delete removes the API object only. When the Pod's node is not Ready (its
kubelet is down or unreachable), the container goes on running until the node comes
back and its kubelet kills the orphan (without a grace period, so no checkpoint):
the log line and the Events then say so instead of implying that the process was
stopped. Node readiness is passed in (`node_ready`); this module stays pure.

The exit code of the trainer, once its Pod shows one (75 after a checkpoint on
SIGTERM, 137 when the kubelet killed it at the end of its grace period), is kept in
status.

The slot is released at step 3, when the Pod object is gone from the API server,
whether it went gracefully or was force-deleted. Holding it longer after a force
delete protects nothing: the scheduler already stops counting the Pod's GPUs once the
object is gone and would place another Pod there anyway; a node that really still
runs the container is a node problem (Kueue faces the same choice with
stuck-terminating pods and also frees quota when the Pod is gone).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from shunter.operator.decisions import Decision, DeletePod, Event
from shunter.operator.model import (
    CANCELLED_BY_USER,
    Job,
    JobStatus,
    Phase,
    PodView,
    Termination,
    TerminationStep,
)
from shunter.operator.podspec import pod_name

# 128 + SIGKILL: what a container killed at the end of its grace period exits with.
EXIT_SIGKILL = 137
# A force delete is repeated at most this often while the Pod still shows up.
FORCE_RETRY = timedelta(seconds=5)


def cancel_active(
    job: Job,
    pod: PodView | None,
    *,
    pod_unobserved: bool,
    now: datetime,
    margin: timedelta,
    node_ready: bool = True,
) -> Decision:
    """Advance the cancellation of a starting/running/cancelling job one step.

    node_ready: whether the node the Pod is bound to (status.nodeName) is Ready; True
    when unknown or when the Pod was never bound.
    """
    name = job.status.pod_name or pod_name(job.key.name)
    ref = f"{job.key.namespace}/{name}"
    step = job.status.termination.step if job.status.termination else None
    present = pod is not None or pod_unobserved
    if pod is not None and pod.exit_code is not None and pod.exit_code != job.status.exit_code:
        job = replace(job, status=replace(job.status, exit_code=pod.exit_code))

    if step is None:
        termination = Termination(
            step=TerminationStep.GRACEFUL, requested_at=now, graceful_delete_at=now
        )
        grace = job.spec.termination_grace_period_seconds
        return Decision(
            status=replace(
                job.status,
                phase=Phase.CANCELLING,
                reason="Cancelling",
                message=f"Cancelled by user; stopping pod {name} (grace period {grace}s)",
                termination=termination,
            ),
            delete_pod=DeletePod(job.key.namespace, name, grace),
            events=(Event("Normal", "Terminating", f"Deleting pod {name} with grace {grace}s"),),
            logs=(f"[Terminate] Attempting graceful termination of pod {ref}",),
            wake_at=now + timedelta(seconds=grace) + margin,
        )

    assert job.status.termination is not None
    termination = job.status.termination
    if not present:
        return _finished(job, termination, ref=ref, now=now, node_ready=node_ready)

    if step is TerminationStep.GRACEFUL:
        started = termination.graceful_delete_at or termination.requested_at or now
        deadline = started + timedelta(seconds=job.spec.termination_grace_period_seconds) + margin
        if now < deadline:
            # Re-sent after a restart that fell between the status write and the delete.
            resend = pod is not None and not pod.deleting
            grace = job.spec.termination_grace_period_seconds
            return Decision(
                status=job.status,
                delete_pod=DeletePod(job.key.namespace, name, grace) if resend else None,
                wake_at=deadline,
            )
        return _force(job, termination, name=name, ref=ref, now=now, node_ready=node_ready)

    # Forced, the Pod still shows up: the watch lags, or the delete failed. Repeat it.
    last = termination.force_delete_at or now
    if now - last >= FORCE_RETRY:
        return Decision(
            status=replace(job.status, termination=replace(termination, force_delete_at=now)),
            delete_pod=DeletePod(job.key.namespace, name, 0),
            wake_at=now + FORCE_RETRY,
        )
    return Decision(status=job.status, wake_at=last + FORCE_RETRY)


def _force(
    job: Job, termination: Termination, *, name: str, ref: str, now: datetime, node_ready: bool
) -> Decision:
    grace = job.spec.termination_grace_period_seconds
    node = job.status.node_name or "its node"
    log = f"[Terminate] Pod {ref} did not terminate gracefully, forcing deletion"
    event = (
        f"Pod {name} did not stop within {grace}s + margin; deleting it with gracePeriodSeconds=0"
    )
    message = f"Cancelled by user; pod {name} did not stop in time, force-deleting"
    if not node_ready:
        log += f"; node {node} is not Ready: {_LEFT_RUNNING}"
        event = (
            f"Pod {name} did not stop within {grace}s + margin and node {node} is not Ready:"
            f" force-deleting the Pod object; {_LEFT_RUNNING} (its GPUs stay in use there)"
        )
        message = f"Cancelled by user; node {node} is not Ready: force-deleting pod {name}"
    return Decision(
        status=replace(
            job.status,
            message=message,
            termination=replace(termination, step=TerminationStep.FORCED, force_delete_at=now),
        ),
        delete_pod=DeletePod(job.key.namespace, name, 0),
        events=(Event("Warning", "ForceDeleting", event),),
        logs=(log,),
        wake_at=now + FORCE_RETRY,
    )


# What a force delete leaves behind on a node that is not Ready.
_LEFT_RUNNING = "its process keeps running until the node returns and its kubelet stops it"


def _cancelled(job: Job, termination: Termination, *, now: datetime) -> JobStatus:
    """The final status of every cancelled job: the guide's message and a completion time."""
    return replace(
        job.status,
        phase=Phase.CANCELLED,
        reason="Cancelled",
        message=CANCELLED_BY_USER,
        queue_position=None,
        completed_at=now,
        termination=termination,
    )


def _finished(
    job: Job, termination: Termination, *, ref: str, now: datetime, node_ready: bool
) -> Decision:
    forced = termination.step is TerminationStep.FORCED
    name = ref.split("/")[1]
    if forced and not node_ready:
        node = job.status.node_name or "its node"
        log = f"[Terminate] Pod {ref} force deleted; node {node} is not Ready: {_LEFT_RUNNING}"
        event = Event(
            "Warning",
            "Cancelled",
            f"Pod {name} force deleted while node {node} is not Ready; job cancelled;"
            f" {_LEFT_RUNNING}",
        )
    else:
        log = (
            f"[Terminate] Pod {ref} force deleted"
            if forced
            else f"[Terminate] Pod {ref} terminated gracefully"
        )
        how = "force deleted" if forced else "stopped gracefully"
        if not forced and job.status.exit_code == EXIT_SIGKILL:
            # The kubelet ended the grace period itself: the trainer got no checkpoint.
            how = (
                "stopped: its trainer ignored SIGTERM and was killed when the grace period ran out"
            )
        code = f" (exit code {job.status.exit_code})" if job.status.exit_code is not None else ""
        event = Event("Normal", "Cancelled", f"Pod {name} {how}{code}; job cancelled")
    done = replace(
        termination, step=TerminationStep.DONE, outcome="forced" if forced else "graceful"
    )
    return Decision(
        status=_cancelled(job, done, now=now),
        events=(event,),
        logs=(log,),
        released=True,
    )


def cancel_queued(job: Job, *, now: datetime) -> Decision:
    """A job that never got a Pod leaves the queue at once."""
    never = Termination(step=TerminationStep.DONE, requested_at=now, outcome="never-started")
    return Decision(
        status=_cancelled(job, never, now=now),
        events=(Event("Normal", "Cancelled", "Removed from the queue and cancelled"),),
        logs=(f"[Cancel] Job {job.key} removed from queue and cancelled",),
    )
