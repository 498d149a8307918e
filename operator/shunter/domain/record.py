"""A job flattened into one row: the one mapping from a TrainingJob to its fields.

The mirror stores it (one column per field, shunter.operator.mirror adds what only
the mirror keeps), GET /jobs serves it back from PostgreSQL (HistoryRow), and the live
views show it (JobPublic, with what only a live job has: its actions, its stop in
progress). Each of them takes these fields by name from here, so a field means the
same everywhere and a new one is added once (tests/unit/api/test_records.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from shunter.domain.model import CANCELLED_BY_USER, Job, Phase


@dataclass(frozen=True, kw_only=True, slots=True)
class JobRecord:
    id: str  # the TrainingJob's uid: a job deleted and submitted again is a new row
    namespace: str
    name: str
    status: str
    reason: str | None
    message: str | None
    # The guide's `error`: "Cancelled by user", or why a failed job failed.
    error: str | None
    queue: str
    priority: int
    gpus: int
    nodes: int
    image: str
    queue_position: int | None
    pod_name: str | None
    node_name: str | None
    exit_code: int | None
    created_at: datetime
    admitted_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    attempts: int
    failures: int
    start_timeouts: int
    preemptions: int
    suspensions: int
    submitted_by: str | None
    cancelled_by: str | None
    # How far the trainer got (its last progress report) and its last complete
    # checkpoint: kept in the history, which outlives the TrainingJob.
    progress_step: int | None
    total_steps: int | None
    checkpoint_step: int | None
    checkpointed_at: datetime | None


def record_of(job: Job) -> JobRecord:
    status = job.status
    phase = status.phase or Phase.QUEUED
    progress, checkpoint = status.progress, status.checkpoint
    error = None
    if phase is Phase.CANCELLED:
        error = CANCELLED_BY_USER
    elif phase is Phase.FAILED:
        error = status.message
    return JobRecord(
        id=job.uid,
        namespace=job.key.namespace,
        name=job.key.name,
        status=phase.value,
        reason=status.reason,
        message=status.message,
        error=error,
        queue=job.spec.queue,
        priority=job.spec.priority,
        gpus=job.spec.gpus,
        nodes=job.spec.nodes,
        image=job.spec.image,
        queue_position=status.queue_position,
        pod_name=status.pod_name,
        node_name=status.node_name,
        exit_code=status.exit_code,
        created_at=job.created_at,
        admitted_at=status.admitted_at,
        started_at=status.started_at,
        completed_at=status.completed_at,
        attempts=status.attempts,
        failures=status.failures,
        start_timeouts=status.start_timeouts,
        preemptions=status.preemptions,
        suspensions=status.suspensions,
        submitted_by=job.audit.submitted_by,
        cancelled_by=job.audit.cancelled_by,
        progress_step=progress.step if progress else None,
        total_steps=progress.total_steps if progress else None,
        checkpoint_step=checkpoint.step if checkpoint else None,
        checkpointed_at=checkpoint.time if checkpoint else None,
    )
