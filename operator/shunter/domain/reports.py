"""Trainer reports: what a report may say, whose it is, and what it changes (pure).

The one owner of the report channel's rules (the API serves the channel,
shunter.api.reports; the trainer library speaks it, trainer-image/shunter_trainer/
report.py). A report comes from a trainer Pod with a projected ServiceAccount token
(audience `shunter`) bound to that Pod; the API server's TokenReview names the Pod
(`authentication.kubernetes.io/pod-name` and `pod-uid`). It is accepted only when:

- the Pod is the first Pod (index 0, rank 0) of the job's current attempt: its name
  is the job's, its uid is the token's, and its labels carry the job's uid and the
  attempt. A token of any other Pod (another job's, or one a namespace member made
  with the job's labels under another name) is refused: 403;
- the job is admitted and not finished: a report for a queued or finished job is 409;
- it is not older than what is known: a step below the last reported step of the same
  attempt, or a checkpoint older than the last, is 409 (a delayed retry, or a replay).

An accepted report sets `status.progress` (the newest step, with a trail of losses for
the UI) and, with a checkpoint, `status.checkpoint` (the longest write seen sizes the
grace period; `onStop` is the trainer's word that it checkpoints when stopped, until
a stop ends without that checkpoint: shunter.domain.workloss).

The answer carries the notice of a stop in progress for a preemption or a time slice
(`reason`, `checkpoint_by`): the trainer checkpoints at once and exits with 75.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shunter.domain.model import (
    ATTEMPT_LABEL,
    JOB_UID_LABEL,
    LOSS_TRAIL,
    POD_INDEX_LABEL,
    Checkpoint,
    Job,
    JobStatus,
    Phase,
    Progress,
    StopCause,
    TerminationStep,
    format_time,
    parse_time,
)
from shunter.domain.podspec import REPORT_AUDIENCE, pod_name

AUDIENCE = REPORT_AUDIENCE
PATH = "/api/trainer/v1/report"
POD_NAME_EXTRA = "authentication.kubernetes.io/pod-name"
POD_UID_EXTRA = "authentication.kubernetes.io/pod-uid"
SERVICE_ACCOUNT_PREFIX = "system:serviceaccount:"
# A step or a size beyond this is not a real trainer's.
MAX_NUMBER = 2**62
NOTICE_REASONS = {StopCause.PREEMPT: "preempt", StopCause.TIME_SLICE: "time-slice"}


class ReportError(ValueError):
    """A report refused, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class ReportedCheckpoint:
    step: int
    time: datetime
    size_bytes: int
    write_seconds: float


@dataclass(frozen=True)
class Report:
    job_uid: str
    step: int
    attempt: int | None = None
    rank: int = 0
    total_steps: int | None = None
    loss: float | None = None
    throughput: float | None = None
    checkpoint: ReportedCheckpoint | None = None
    checkpoint_on_stop: bool = False
    resumed_from_step: int | None = None

    @classmethod
    def parse(cls, raw: object) -> Report:
        """A report from its JSON body; a 422 ReportError says what is wrong."""
        if not isinstance(raw, Mapping):
            raise ReportError(422, "the report must be a JSON object")
        uid = raw.get("job_uid")
        if not isinstance(uid, str) or not uid or len(uid) > 64:
            raise ReportError(422, "job_uid must be the TrainingJob's uid (a string)")
        ckpt = raw.get("checkpoint")
        checkpoint = None
        if ckpt is not None:
            if not isinstance(ckpt, Mapping):
                raise ReportError(422, "checkpoint must be an object")
            when = _time(ckpt.get("time"), "checkpoint.time")
            checkpoint = ReportedCheckpoint(
                step=_count(ckpt.get("step"), "checkpoint.step"),
                time=when,
                size_bytes=_count(ckpt.get("size_bytes", 0), "checkpoint.size_bytes"),
                write_seconds=_number(ckpt.get("write_seconds", 0.0), "checkpoint.write_seconds",
                                      minimum=0.0) or 0.0,
            )  # fmt: skip
        total = raw.get("total_steps")
        attempt = raw.get("attempt")
        resumed = raw.get("resumed_from_step")
        return cls(
            job_uid=uid,
            step=_count(raw.get("step"), "step"),
            attempt=_count(attempt, "attempt") if attempt is not None else None,
            rank=_count(raw.get("rank", 0), "rank"),
            total_steps=_count(total, "total_steps") if total is not None else None,
            loss=_number(raw.get("loss"), "loss"),
            throughput=_number(raw.get("throughput"), "throughput", minimum=0.0),
            checkpoint=checkpoint,
            checkpoint_on_stop=raw.get("checkpoint_on_stop") is True,
            resumed_from_step=_count(resumed, "resumed_from_step") if resumed is not None else None,
        )


def _count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_NUMBER:
        raise ReportError(422, f"{name} must be a whole number from 0 (got {value!r:.40})")
    return value


def _number(value: object, name: str, *, minimum: float | None = None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value != value:
        raise ReportError(422, f"{name} must be a number (got {value!r:.40})")
    if abs(value) > MAX_NUMBER or (minimum is not None and value < minimum):
        raise ReportError(422, f"{name} is out of range (got {value!r:.40})")
    return float(value)


def _time(value: object, name: str) -> datetime:
    try:
        when = parse_time(value)
    except ValueError:
        when = None
    if when is None:
        raise ReportError(422, f"{name} must be an RFC 3339 time (got {value!r:.40})")
    return when


@dataclass(frozen=True)
class Reporter:
    """The Pod a report's token is bound to, as the API server and the Pod show it."""

    namespace: str
    pod_name: str
    pod_uid: str
    labels: Mapping[str, str]
    live_uid: str  # the uid of the Pod of that name now (the token's may be gone)


def reporter_of(username: str, extra: Mapping[str, tuple[str, ...]]) -> tuple[str, str, str]:
    """(namespace, Pod name, Pod uid) of a TokenReview's user; 403 if not a Pod's."""
    names, uids = extra.get(POD_NAME_EXTRA) or (), extra.get(POD_UID_EXTRA) or ()
    if not username.startswith(SERVICE_ACCOUNT_PREFIX) or not names or not uids:
        raise ReportError(403, "the token is not bound to a Pod: reports come from trainer"
                               " Pods with their projected token (audience shunter)")  # fmt: skip
    namespace = username[len(SERVICE_ACCOUNT_PREFIX) :].split(":", 1)[0]
    return namespace, names[0], uids[0]


def judge(report: Report, job: Job | None, reporter: Reporter) -> Job:
    """The job the report is for, or a ReportError (see the module doc)."""
    if job is None or job.uid != report.job_uid:
        raise ReportError(403, "the reporting Pod does not belong to this job")
    name = pod_name(job.key.name, 0, nodes=job.spec.nodes)
    labels = reporter.labels
    same_pod = reporter.pod_name == name and reporter.live_uid == reporter.pod_uid
    ours = labels.get(JOB_UID_LABEL) == job.uid and labels.get(POD_INDEX_LABEL) == "0"
    if reporter.namespace != job.key.namespace or not same_pod or not ours:
        raise ReportError(403, f"only the job's first Pod ({name}, rank 0) of its current"
                               " attempt may report for it")  # fmt: skip
    attempt = job.status.attempts
    if labels.get(ATTEMPT_LABEL) != str(attempt) or report.attempt not in (None, attempt):
        raise ReportError(409, f"the report is for an earlier attempt; the job is at attempt"
                               f" {attempt}")  # fmt: skip
    phase = job.phase
    if phase is None or phase.terminal or not phase.holds_slot:
        raise ReportError(409, f"job {job.key.name} is {phase or 'new'}: it takes no reports")
    progress = job.status.progress
    if progress is not None and progress.attempt == attempt and report.step < progress.step:
        raise ReportError(409, f"stale report: step {report.step} is behind step"
                               f" {progress.step}, already reported")  # fmt: skip
    known = job.status.checkpoint
    if (report.checkpoint is not None and known is not None and known.attempt == attempt
            and report.checkpoint.time < known.time):  # fmt: skip
        raise ReportError(409, f"stale report: checkpoint of step {report.checkpoint.step} is"
                               f" older than the one of step {known.step}")  # fmt: skip
    return job


def apply(status: JobStatus, report: Report, *, now: datetime) -> JobStatus:
    """The status with the report taken in (its loss added to the UI's trail)."""
    attempt = status.attempts
    old = status.progress
    losses = old.losses if old is not None else ()
    if report.loss is not None:
        losses = (*losses, round(report.loss, 6))[-LOSS_TRAIL:]
    resumed = report.resumed_from_step
    if resumed is None and old is not None and old.attempt == attempt:
        resumed = old.resumed_from_step
    progress = Progress(
        step=report.step, reported_at=now, attempt=attempt, total_steps=report.total_steps,
        loss=report.loss, throughput=report.throughput, losses=losses, resumed_from_step=resumed,
    )  # fmt: skip
    checkpoint = status.checkpoint
    if report.checkpoint is not None:
        c = report.checkpoint
        longest = max(c.write_seconds, checkpoint.max_write_seconds if checkpoint else 0.0)
        checkpoint = Checkpoint(
            step=c.step, time=c.time, size_bytes=c.size_bytes, write_seconds=c.write_seconds,
            attempt=attempt, max_write_seconds=longest,
            count=(checkpoint.count if checkpoint else 0) + 1,
            on_stop=report.checkpoint_on_stop,
        )  # fmt: skip
    elif checkpoint is not None and checkpoint.on_stop != report.checkpoint_on_stop:
        checkpoint = replace(checkpoint, on_stop=report.checkpoint_on_stop)
    return replace(status, progress=progress, checkpoint=checkpoint)


def status_fields(status: JobStatus) -> dict[str, Any]:
    """The merge patch of the report's fields (the API writes only these)."""
    return {
        "progress": status.progress.to_raw() if status.progress else None,
        "checkpoint": status.checkpoint.to_raw() if status.checkpoint else None,
    }


def notice(job: Job) -> dict[str, str] | None:
    """The notice of a stop for a preemption or a time slice, while it is under way."""
    t = job.status.termination
    if t is None or t.step is TerminationStep.DONE or job.phase is not Phase.STOPPING:
        return None
    reason = NOTICE_REASONS.get(t.cause)
    if reason is None or t.checkpoint_by is None:
        return None
    return {"reason": reason, "checkpoint_by": format_time(t.checkpoint_by) or ""}


# At most one Checkpointed Event per job this often (a trainer saving every few
# seconds must not flood the namespace's Events).
EVENT_EVERY_SECONDS = 60.0


def checkpoint_event(before: Job | None, after: Job) -> str | None:
    """The message of a Checkpointed Event when the job's reported checkpoint changed
    (None: it did not). The operator rate-limits them (EVENT_EVERY_SECONDS)."""
    new = after.status.checkpoint
    old = before.status.checkpoint if before is not None else None
    if new is None or (old is not None and (old.attempt, old.step, old.time)
                       == (new.attempt, new.step, new.time)):  # fmt: skip
        return None
    size = f"{new.size_bytes / 2**20:.1f} MiB" if new.size_bytes else "size unknown"
    return (
        f"Checkpoint at step {new.step} (attempt {new.attempt}): {size}, written in"
        f" {new.write_seconds:g}s"
    )


def progress_only(before: Job | None, after: Job) -> bool:
    """The change between two versions of a job is the trainer's progress alone: no
    decision reads it (a checkpoint is read: stops, time slices and victims), so it
    need not wake a pass (at 1,000 jobs reporting, most watch events are these)."""
    if before is None or before.uid != after.uid or before.spec != after.spec:
        return False
    if before.audit != after.audit:
        return False
    return replace(before.status, progress=after.status.progress) == after.status
