"""One reconcile pass over every job: the whole cluster's decisions at once (pure).

Admitted jobs are reconciled first, so a slot freed in this pass (a Pod that
completed, failed or finished terminating) is handed to the next queued job in the
same pass rather than on a later timer. Then admission runs on the updated view and
the queued jobs get their new phase or queue position.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shunter.operator.admission import Limits, fits_budget, plan_admission
from shunter.operator.decisions import Decision
from shunter.operator.lifecycle import Context, reconcile_job, still_waiting
from shunter.operator.model import Job, JobKey, PodView


@dataclass(frozen=True)
class Pass:
    decisions: dict[JobKey, Decision]
    next_sequence: int
    wake_at: datetime | None


def _changed(job: Job, decision: Decision) -> bool:
    return (
        decision.status != job.status
        or decision.create_pod is not None
        or decision.delete_pod is not None
        or bool(decision.events or decision.logs)
    )


def plan_pass(
    jobs: Sequence[Job],
    pods: Mapping[JobKey, PodView],
    *,
    now: datetime,
    limits: Limits,
    grace_margin: timedelta,
    unobserved: Collection[JobKey] = (),
    next_sequence: int = 1,
    exact_positions: int = 20,
    not_ready_nodes: Collection[str] = (),
) -> Pass:
    """Decide every job's next step.

    not_ready_nodes: names of the nodes whose Ready condition is not True (from a
    Node watch); a job whose Pod is bound to one of them is told so when cancelled.
    """
    decisions: dict[JobKey, Decision] = {}
    updated: list[Job] = []
    waiting: list[Job] = []
    for job in jobs:
        if job.queued:
            waiting.append(job)
            continue
        pod = pods.get(job.key)
        node = job.status.node_name or (pod.node_name if pod is not None else None)
        decision = reconcile_job(
            job,
            pod,
            Context(
                now=now,
                pod_unobserved=job.key in unobserved,
                grace_margin=grace_margin,
                node_ready=node not in not_ready_nodes,
            ),
        )
        decisions[job.key] = decision
        updated.append(replace(job, status=decision.status))

    for job in sorted((j for j in waiting if j.status.sequence is None), key=_arrival):
        updated.append(replace(job, status=replace(job.status, sequence=next_sequence)))
        next_sequence += 1
    updated.extend(j for j in waiting if j.status.sequence is not None)

    admission = plan_admission(updated, limits)
    admit = set(admission.admit)
    for job in (j for j in updated if j.queued):
        waiting_message = None
        position = admission.positions.get(job.key)
        if position is not None and position > exact_positions:
            # Every admission shifts every position behind it; writing them all would
            # cost one status write per queued job per admission. Beyond the first
            # few, the status only says the job is further back (GET /queue has them all).
            waiting_message = f"Waiting in queue (more than {exact_positions} jobs ahead)"
            position = None
        if not fits_budget(job, limits):
            waiting_message = (
                f"Requests {job.spec.gpus} GPUs, more than the GPU budget of"
                f" {limits.gpu_budget}: it cannot start until the budget grows"
            )
        ctx = Context(
            now=now, admit=job.key in admit, queue_position=position,
            waiting_message=waiting_message,
        )  # fmt: skip
        if still_waiting(job, ctx):
            continue  # nothing to decide: skipping it keeps a pass cheap with long queues
        decisions[job.key] = reconcile_job(job, None, ctx)

    original = {job.key: job for job in jobs}
    changed = {k: d for k, d in decisions.items() if _changed(original[k], d)}
    wakes = [d.wake_at for d in decisions.values() if d.wake_at is not None]
    return Pass(decisions=changed, next_sequence=next_sequence, wake_at=min(wakes, default=None))


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
