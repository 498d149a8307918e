"""The operator's view of TrainingJobs and their Pods, parsed from raw API bodies.

Raw bodies are parsed once, where they enter (the kopf indexers), into frozen
dataclasses; every decision module works on these and never on dicts. Times are
timezone-aware UTC datetimes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NewType

GROUP = "shunter.dev"
VERSION = "v1alpha1"
PLURAL = "trainingjobs"
KIND = "TrainingJob"
API_VERSION = f"{GROUP}/{VERSION}"

# Labels linking a Pod back to its job.
JOB_NAME_LABEL = "shunter.dev/job-name"
JOB_UID_LABEL = "shunter.dev/job-uid"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "shunter"
GPU_RESOURCE = "nvidia.com/gpu"

CANCELLED_BY_USER = "Cancelled by user"

Uid = NewType("Uid", str)


class Phase(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    CANCELLING = "cancelling"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_PHASES

    @property
    def holds_slot(self) -> bool:
        """Admitted and not finished: counts against the running limit and GPU budget."""
        return self in ACTIVE_PHASES


TERMINAL_PHASES = frozenset({Phase.COMPLETED, Phase.FAILED, Phase.CANCELLED})
ACTIVE_PHASES = frozenset({Phase.STARTING, Phase.RUNNING, Phase.CANCELLING})


class TerminationStep(StrEnum):
    GRACEFUL = "graceful"
    FORCED = "forced"
    DONE = "done"


@dataclass(frozen=True, order=True)
class JobKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Termination:
    step: TerminationStep
    requested_at: datetime | None = None
    graceful_delete_at: datetime | None = None
    force_delete_at: datetime | None = None
    outcome: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Termination | None:
        if not raw or "step" not in raw:
            return None
        return cls(
            step=TerminationStep(raw["step"]),
            requested_at=parse_time(raw.get("requestedAt")),
            graceful_delete_at=parse_time(raw.get("gracefulDeleteAt")),
            force_delete_at=parse_time(raw.get("forceDeleteAt")),
            outcome=raw.get("outcome"),
        )

    def to_raw(self) -> dict[str, Any]:
        raw = {
            "step": self.step.value,
            "requestedAt": format_time(self.requested_at),
            "gracefulDeleteAt": format_time(self.graceful_delete_at),
            "forceDeleteAt": format_time(self.force_delete_at),
            "outcome": self.outcome,
        }
        return {k: v for k, v in raw.items() if v is not None}


@dataclass(frozen=True)
class JobStatus:
    """The status subresource as the operator writes it."""

    phase: Phase | None = None
    reason: str | None = None
    message: str | None = None
    sequence: int | None = None
    queue_position: int | None = None
    pod_name: str | None = None
    node_name: str | None = None
    exit_code: int | None = None
    admitted_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    termination: Termination | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> JobStatus:
        raw = raw or {}
        phase = raw.get("phase")
        return cls(
            phase=Phase(phase) if phase else None,
            reason=raw.get("reason"),
            message=raw.get("message"),
            sequence=raw.get("sequence"),
            queue_position=raw.get("queuePosition"),
            pod_name=raw.get("podName"),
            node_name=raw.get("nodeName"),
            exit_code=raw.get("exitCode"),
            admitted_at=parse_time(raw.get("admittedAt")),
            started_at=parse_time(raw.get("startedAt")),
            completed_at=parse_time(raw.get("completedAt")),
            termination=Termination.parse(raw.get("termination")),
        )

    def to_raw(self) -> dict[str, Any]:
        """Every field, None for unset ones (a merge patch deletes those)."""
        return {
            "phase": self.phase.value if self.phase else None,
            "reason": self.reason,
            "message": self.message,
            "sequence": self.sequence,
            "queuePosition": self.queue_position,
            "podName": self.pod_name,
            "nodeName": self.node_name,
            "exitCode": self.exit_code,
            "admittedAt": format_time(self.admitted_at),
            "startedAt": format_time(self.started_at),
            "completedAt": format_time(self.completed_at),
            "termination": self.termination.to_raw() if self.termination else None,
        }


@dataclass(frozen=True)
class Toleration:
    """One entry of a Pod's tolerations, as the job gives it."""

    key: str | None = None
    operator: str | None = None
    value: str | None = None
    effect: str | None = None
    toleration_seconds: int | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Toleration:
        seconds = raw.get("tolerationSeconds")
        return cls(
            key=raw.get("key"),
            operator=raw.get("operator"),
            value=raw.get("value"),
            effect=raw.get("effect"),
            toleration_seconds=int(seconds) if seconds is not None else None,
        )

    def to_raw(self) -> dict[str, Any]:
        raw = {
            "key": self.key,
            "operator": self.operator,
            "value": self.value,
            "effect": self.effect,
            "tolerationSeconds": self.toleration_seconds,
        }
        return {k: v for k, v in raw.items() if v is not None}


@dataclass(frozen=True)
class JobSpec:
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    gpus: int = 1
    cpu: str | None = None
    memory: str | None = None
    priority: int = 0
    queue: str = "default"
    max_runtime_seconds: int | None = None
    termination_grace_period_seconds: int = 30
    checkpoint_claim: str | None = None
    checkpoint_mount_path: str = "/checkpoints"
    pod_labels: tuple[tuple[str, str], ...] = ()
    pod_annotations: tuple[tuple[str, str], ...] = ()
    node_selector: tuple[tuple[str, str], ...] = ()
    tolerations: tuple[Toleration, ...] = ()
    cancelled: bool = False

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> JobSpec:
        checkpoint = raw.get("checkpoint") or {}
        pod_metadata = raw.get("podMetadata") or {}
        return cls(
            image=str(raw.get("image", "")),
            command=tuple(raw.get("command") or ()),
            args=tuple(raw.get("args") or ()),
            env=tuple((e["name"], str(e.get("value", ""))) for e in raw.get("env") or ()),
            gpus=int(raw.get("gpus", 1)),
            cpu=raw.get("cpu"),
            memory=raw.get("memory"),
            priority=int(raw.get("priority", 0)),
            queue=str(raw.get("queue", "default")),
            max_runtime_seconds=raw.get("maxRuntimeSeconds"),
            termination_grace_period_seconds=int(raw.get("terminationGracePeriodSeconds", 30)),
            checkpoint_claim=checkpoint.get("claimName"),
            checkpoint_mount_path=checkpoint.get("mountPath", "/checkpoints"),
            pod_labels=tuple(sorted((pod_metadata.get("labels") or {}).items())),
            pod_annotations=tuple(sorted((pod_metadata.get("annotations") or {}).items())),
            node_selector=tuple(sorted((raw.get("nodeSelector") or {}).items())),
            tolerations=tuple(Toleration.parse(t) for t in raw.get("tolerations") or ()),
            cancelled=bool(raw.get("cancelled", False)),
        )


@dataclass(frozen=True)
class Job:
    key: JobKey
    uid: Uid
    resource_version: str
    created_at: datetime
    spec: JobSpec
    status: JobStatus = field(default_factory=JobStatus)

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> Job:
        meta = body["metadata"]
        return cls(
            key=JobKey(meta["namespace"], meta["name"]),
            uid=Uid(meta["uid"]),
            resource_version=str(meta.get("resourceVersion", "")),
            created_at=parse_time(meta.get("creationTimestamp")) or datetime.now(UTC),
            spec=JobSpec.parse(body.get("spec") or {}),
            status=JobStatus.parse(body.get("status")),
        )

    @property
    def phase(self) -> Phase | None:
        return self.status.phase

    @property
    def queued(self) -> bool:
        """Not admitted yet: new (no phase written) or waiting in the queue."""
        return self.status.phase in (None, Phase.QUEUED)


@dataclass(frozen=True)
class PodView:
    """What the operator needs to know of a trainer Pod."""

    namespace: str
    name: str
    uid: str
    job_name: str
    job_uid: str
    phase: str
    deleting: bool
    node_name: str | None = None
    started_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def job_key(self) -> JobKey:
        return JobKey(self.namespace, self.job_name)

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> PodView:
        meta = body["metadata"]
        labels = meta.get("labels") or {}
        status = body.get("status") or {}
        started_at, exit_code, reason, message = _container_state(status)
        return cls(
            namespace=meta["namespace"],
            name=meta["name"],
            uid=meta.get("uid", ""),
            job_name=labels.get(JOB_NAME_LABEL, ""),
            job_uid=labels.get(JOB_UID_LABEL, ""),
            phase=status.get("phase") or "Pending",
            deleting=bool(meta.get("deletionTimestamp")),
            node_name=(body.get("spec") or {}).get("nodeName"),
            started_at=started_at,
            exit_code=exit_code,
            reason=reason or status.get("reason"),
            message=message or status.get("message"),
        )


def _container_state(
    status: Mapping[str, Any],
) -> tuple[datetime | None, int | None, str | None, str | None]:
    """Start time, exit code, reason and message of the trainer container."""
    for container in status.get("containerStatuses") or ():
        state = container.get("state") or {}
        if "terminated" in state:
            term = state["terminated"]
            return (
                parse_time(term.get("startedAt")),
                term.get("exitCode"),
                term.get("reason"),
                term.get("message"),
            )
        if "running" in state:
            return parse_time(state["running"].get("startedAt")), None, None, None
    return None, None, None, None
