"""TrainingJobs and their Pods as the operator and the API see them, parsed from raw
API bodies.

Raw bodies are parsed once, where they enter (the informers' parse functions, in the
operator and in the API's watch cache), into frozen dataclasses; every decision module
works on these and never on dicts. Times are timezone-aware UTC datetimes.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NewType, TypeVar, cast

GROUP = "shunter.dev"
VERSION = "v1alpha1"
PLURAL = "trainingjobs"
KIND = "TrainingJob"
API_VERSION = f"{GROUP}/{VERSION}"

# Labels linking a Pod back to its job.
JOB_NAME_LABEL = "shunter.dev/job-name"
JOB_UID_LABEL = "shunter.dev/job-uid"
POD_INDEX_LABEL = "shunter.dev/pod-index"
ATTEMPT_LABEL = "shunter.dev/attempt"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "shunter"
GPU_RESOURCE = "nvidia.com/gpu"

CANCELLED_BY_USER = "Cancelled by user"
# Who submitted and who cancelled a job: set by the API from the caller's TokenReview,
# in the same write as the submission or the cancel.
SUBMITTED_BY = "shunter.dev/submitted-by"
CANCELLED_BY = "shunter.dev/cancelled-by"
# A run of an array (shunter.domain.arrays): the array's name and the run's index.
ARRAY_LABEL = "shunter.dev/array"
ARRAY_INDEX_LABEL = "shunter.dev/array-index"
ARRAY_COUNT_ANNOTATION = "shunter.dev/array-count"
# A run the array suspended (and so resumes with it).
SUSPENDED_BY_ARRAY = "shunter.dev/suspended-by-array"

Uid = NewType("Uid", str)


class Phase(StrEnum):
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    # The Pods are being stopped: `cancelling` for a cancel (the guide's word),
    # `stopping` for every other cause (deadline, start timeout, suspend, preemption).
    CANCELLING = "cancelling"
    STOPPING = "stopping"
    SUSPENDED = "suspended"
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
ACTIVE_PHASES = frozenset({Phase.STARTING, Phase.RUNNING, Phase.CANCELLING, Phase.STOPPING})


class TerminationStep(StrEnum):
    GRACEFUL = "graceful"
    FORCED = "forced"
    DONE = "done"


class StopCause(StrEnum):
    """Why a job's Pods are stopped; the cause decides the phase the job ends in."""

    CANCEL = "cancel"  # -> cancelled ("Cancelled by user")
    DEADLINE = "deadline"  # -> failed, DeadlineExceeded
    START_TIMEOUT = "start-timeout"  # -> queued (StartTimeout, with backoff) or failed
    SUSPEND = "suspend"  # -> suspended
    PREEMPT = "preempt"  # -> queued (Preempted)
    # The job's time slice ran out while jobs of its priority wait (TrainingQueue
    # timeSliceSeconds): -> queued (TimeSliced), behind the jobs that waited.
    TIME_SLICE = "time-slice"
    FAILURE = "failure"  # a Pod of the gang failed: -> failed, or retried as a whole


@dataclass(frozen=True, order=True, slots=True)
class JobKey:
    namespace: str
    name: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


def revision(resource_version: str | None) -> int | None:
    """A resourceVersion as a number: the etcd revision the API server writes, which
    orders writes. The API's contract calls it opaque, so anything else (another
    storage, an aggregated server) is None and every caller says what it does then.
    The one parser of resourceVersions (the operator, the API, the mirror and the
    informers use it)."""
    if not resource_version:
        return None
    try:
        return int(resource_version)
    except ValueError:
        return None


def parse_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


_T = TypeVar("_T")


def shared(value: _T) -> _T:
    """One copy of a string many jobs repeat (a namespace, a queue, an image, a
    waiting message): each parsed object would otherwise hold its own, decoded from
    its JSON (60,000 jobs held 508,000 strings). Anything else (None, a number, a str
    subclass such as a Phase) as it is."""
    return cast(_T, sys.intern(cast(str, value))) if type(value) is str else value


def _shared_all(values: Any) -> tuple[Any, ...]:
    return tuple(shared(v) for v in values or ())


@dataclass(frozen=True, slots=True)
class Termination:
    """How far the stop of a job's Pods has got (recorded before each step is taken)."""

    step: TerminationStep
    requested_at: datetime | None = None
    graceful_delete_at: datetime | None = None
    force_delete_at: datetime | None = None
    outcome: str | None = None
    cause: StopCause = StopCause.CANCEL
    # The Pods the stop deleted, and those that had to be force-deleted.
    pods: tuple[str, ...] = ()
    forced_pods: tuple[str, ...] = ()
    # The notice's deadline: the trainer is to have checkpointed and exited by then
    # (the graceful delete plus the grace period); told in the report channel's answer.
    checkpoint_by: datetime | None = None
    # The grace period this stop gives, chosen when it began (kept: a checkpoint
    # reported mid-stop does not move its deadline).
    grace: int | None = None

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
            cause=StopCause(raw.get("cause") or StopCause.CANCEL.value),
            pods=tuple(raw.get("pods") or ()),
            forced_pods=tuple(raw.get("forcedPods") or ()),
            checkpoint_by=parse_time(raw.get("checkpointBy")),
            grace=raw.get("grace"),
        )

    def to_raw(self) -> dict[str, Any]:
        raw = {
            "step": self.step.value,
            "checkpointBy": format_time(self.checkpoint_by),
            "grace": self.grace,
            "requestedAt": format_time(self.requested_at),
            "gracefulDeleteAt": format_time(self.graceful_delete_at),
            "forceDeleteAt": format_time(self.force_delete_at),
            "outcome": self.outcome,
            "cause": self.cause.value,
            "pods": list(self.pods) or None,
            "forcedPods": list(self.forced_pods) or None,
        }
        return {k: v for k, v in raw.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Attempt:
    """One run of the job's Pods, kept in status (and the mirror's attempts table)."""

    number: int
    exit_code: int | None = None
    reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The checkpoint step the attempt resumed from (None: from the start or unknown),
    # the last checkpoint it reported, and the seconds of work it lost (since its last
    # complete checkpoint, or since it started when it reported none).
    resumed_from_step: int | None = None
    checkpoint_step: int | None = None
    lost_seconds: float | None = None
    # For accounting (shunter.domain.usage): when the attempt began to wait for its
    # GPUs, when it got them, and when its Pods were all running (None: never).
    queued_at: datetime | None = None
    admitted_at: datetime | None = None
    running_at: datetime | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Attempt:
        lost = raw.get("lostSeconds")
        return cls(
            number=int(raw.get("attempt", 0)),
            exit_code=raw.get("exitCode"),
            reason=raw.get("reason"),
            started_at=parse_time(raw.get("startedAt")),
            finished_at=parse_time(raw.get("finishedAt")),
            resumed_from_step=raw.get("resumedFromStep"),
            checkpoint_step=raw.get("checkpointStep"),
            lost_seconds=float(lost) if lost is not None else None,
            queued_at=parse_time(raw.get("queuedAt")),
            admitted_at=parse_time(raw.get("admittedAt")),
            running_at=parse_time(raw.get("runningAt")),
        )

    def to_raw(self) -> dict[str, Any]:
        raw = {
            "attempt": self.number,
            "exitCode": self.exit_code,
            "reason": self.reason,
            "startedAt": format_time(self.started_at),
            "finishedAt": format_time(self.finished_at),
            "resumedFromStep": self.resumed_from_step,
            "checkpointStep": self.checkpoint_step,
            "lostSeconds": self.lost_seconds,
            "queuedAt": format_time(self.queued_at),
            "admittedAt": format_time(self.admitted_at),
            "runningAt": format_time(self.running_at),
        }
        return {k: v for k, v in raw.items() if v is not None}


# Losses kept in status.progress for the UI's sparkline (one per written report).
LOSS_TRAIL = 32


@dataclass(frozen=True, slots=True)
class Progress:
    """The trainer's last progress report as written to status (rank 0's)."""

    step: int
    reported_at: datetime
    attempt: int = 0
    total_steps: int | None = None
    loss: float | None = None
    throughput: float | None = None  # steps per second
    losses: tuple[float, ...] = ()  # the last LOSS_TRAIL losses, oldest first
    resumed_from_step: int | None = None  # the checkpoint this attempt resumed from

    @property
    def percent(self) -> int | None:
        """Whole percent done (at most 100), when the trainer reports its total."""
        if not self.total_steps:
            return None
        return min(100, int(100 * self.step / self.total_steps))

    @property
    def display(self) -> str:
        """The kubectl PROGRESS column: `42% (420/1000)`, or the step alone."""
        if self.percent is not None:
            return f"{self.percent}% ({self.step}/{self.total_steps})"
        return f"step {self.step}"

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Progress | None:
        if not raw or "step" not in raw:
            return None
        at = parse_time(raw.get("reportedAt"))
        return cls(
            step=int(raw["step"]),
            reported_at=at or datetime.min.replace(tzinfo=UTC),
            attempt=int(raw.get("attempt") or 0),
            total_steps=raw.get("totalSteps"),
            loss=raw.get("loss"),
            throughput=raw.get("throughput"),
            losses=tuple(float(x) for x in raw.get("losses") or ()),
            resumed_from_step=raw.get("resumedFromStep"),
        )

    def to_raw(self) -> dict[str, Any]:
        raw = {
            "step": self.step,
            "reportedAt": format_time(self.reported_at),
            "attempt": self.attempt or None,
            "totalSteps": self.total_steps,
            "loss": self.loss,
            "throughput": self.throughput,
            "losses": list(self.losses) or None,
            "resumedFromStep": self.resumed_from_step,
            "display": self.display,
        }
        return {k: v for k, v in raw.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The last complete checkpoint the trainer reported (rank 0, once every rank of
    a gang agreed on it), with what the operator learned of its checkpoints."""

    step: int
    time: datetime  # when the checkpoint was complete
    size_bytes: int = 0
    write_seconds: float = 0.0
    attempt: int = 0
    # The longest write among the checkpoints reported so far (sizes the grace period).
    max_write_seconds: float = 0.0
    count: int = 0  # checkpoints reported, over every attempt
    # The trainer said it checkpoints when stopped (SIGTERM or a notice); False once
    # a stop was seen to end without the checkpoint it promised.
    on_stop: bool = False

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> Checkpoint | None:
        if not raw or "step" not in raw:
            return None
        return cls(
            step=int(raw["step"]),
            time=parse_time(raw.get("time")) or datetime.min.replace(tzinfo=UTC),
            size_bytes=int(raw.get("sizeBytes") or 0),
            write_seconds=float(raw.get("writeSeconds") or 0.0),
            attempt=int(raw.get("attempt") or 0),
            max_write_seconds=float(raw.get("maxWriteSeconds") or 0.0),
            count=int(raw.get("count") or 0),
            on_stop=bool(raw.get("onStop", False)),
        )

    def to_raw(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "time": format_time(self.time),
            "sizeBytes": self.size_bytes,
            "writeSeconds": self.write_seconds,
            "attempt": self.attempt,
            "maxWriteSeconds": self.max_write_seconds,
            "count": self.count,
            "onStop": self.on_stop,
        }


@dataclass(frozen=True, slots=True)
class StartRange:
    """The range of a queued job's estimated start, or why it has none
    (status.estimatedStartRange; shunter.domain.estimates)."""

    earliest: datetime | None = None
    latest: datetime | None = None
    reason: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> StartRange | None:
        if not raw:
            return None
        return cls(parse_time(raw.get("earliest")), parse_time(raw.get("latest")),
                   raw.get("reason"))  # fmt: skip

    def to_raw(self) -> dict[str, Any]:
        raw = {"earliest": format_time(self.earliest), "latest": format_time(self.latest),
               "reason": self.reason}  # fmt: skip
        return {k: v for k, v in raw.items() if v is not None}


@dataclass(frozen=True, slots=True)
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
    # The node of each Pod (index i -> placement[i]), chosen at admission.
    placement: tuple[str, ...] = ()
    pods_ready: int = 0
    # Runs started (each admission or retry), failed runs counted against
    # spec.backoffLimit, start timeouts, preemptions and suspensions so far.
    attempts: int = 0
    failures: int = 0
    start_timeouts: int = 0
    preemptions: int = 0
    suspensions: int = 0
    # No new start before this time (backoff after a start timeout or a failure).
    not_before: datetime | None = None
    # When the job last started running (a preemption victim must have run this long).
    running_since: datetime | None = None
    history: tuple[Attempt, ...] = ()
    # What the trainer reported (shunter.operator.reports): progress and the last
    # complete checkpoint.
    progress: Progress | None = None
    checkpoint: Checkpoint | None = None
    # Back in the queue after its time slice: it queues from here, behind the jobs
    # that waited (round-robin), instead of from its creation.
    requeued_at: datetime | None = None
    # A queued job's estimated start and its range (the first jobs of each queue, like
    # queue_position; shunter.operator.estimating writes them).
    estimated_start: datetime | None = None
    estimated_range: StartRange | None = None
    # An array's runs per phase (shunter.domain.arrays.ArrayCounts).
    array: Mapping[str, Any] | None = None
    # A job waiting for its dependencies (reason Dependency): the conditions not met
    # yet, short (shunter.domain.dependencies.Judgement.waiting_for; kubectl's column).
    waiting_for: str | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> JobStatus:
        if not raw:
            return NO_STATUS  # a new job's: one shared (60,000 precreated jobs hold it)
        phase = raw.get("phase")
        return cls(
            phase=Phase(phase) if phase else None,
            reason=shared(raw.get("reason")),
            message=shared(raw.get("message")),
            sequence=raw.get("sequence"),
            queue_position=raw.get("queuePosition"),
            pod_name=raw.get("podName"),
            node_name=shared(raw.get("nodeName")),
            exit_code=raw.get("exitCode"),
            admitted_at=parse_time(raw.get("admittedAt")),
            started_at=parse_time(raw.get("startedAt")),
            completed_at=parse_time(raw.get("completedAt")),
            termination=Termination.parse(raw.get("termination")),
            placement=_shared_all(raw.get("placement")),
            pods_ready=int(raw.get("podsReady") or 0),
            attempts=int(raw.get("attempts") or 0),
            failures=int(raw.get("failures") or 0),
            start_timeouts=int(raw.get("startTimeouts") or 0),
            preemptions=int(raw.get("preemptions") or 0),
            suspensions=int(raw.get("suspensions") or 0),
            not_before=parse_time(raw.get("notBefore")),
            running_since=parse_time(raw.get("runningSince")),
            history=tuple(Attempt.parse(a) for a in raw.get("history") or ()),
            progress=Progress.parse(raw.get("progress")),
            checkpoint=Checkpoint.parse(raw.get("checkpoint")),
            requeued_at=parse_time(raw.get("requeuedAt")),
            estimated_start=parse_time(raw.get("estimatedStart")),
            estimated_range=StartRange.parse(raw.get("estimatedStartRange")),
            array=raw.get("array"),
            waiting_for=raw.get("waitingFor"),
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
            "placement": list(self.placement) or None,
            "podsReady": self.pods_ready or None,
            "attempts": self.attempts or None,
            "failures": self.failures or None,
            "startTimeouts": self.start_timeouts or None,
            "preemptions": self.preemptions or None,
            "suspensions": self.suspensions or None,
            "notBefore": format_time(self.not_before),
            "runningSince": format_time(self.running_since),
            "history": [a.to_raw() for a in self.history] or None,
            "progress": self.progress.to_raw() if self.progress else None,
            "checkpoint": self.checkpoint.to_raw() if self.checkpoint else None,
            "requeuedAt": format_time(self.requeued_at),
            "estimatedStart": format_time(self.estimated_start),
            "estimatedStartRange": self.estimated_range.to_raw() if self.estimated_range else None,
            "array": dict(self.array) if self.array else None,
            "waitingFor": self.waiting_for,
        }


NO_STATUS = JobStatus()


@dataclass(frozen=True, slots=True)
class EnvVar:
    """An environment variable of the trainer: a plain value, or a key of a Secret of
    the job's own namespace (`valueFrom.secretKeyRef`), which the trainer Pod's kubelet
    reads; the operator and the API only pass the reference on, never the value."""

    name: str
    value: str = ""
    secret: str | None = None  # the Secret's name (valueFrom.secretKeyRef)
    key: str | None = None
    optional: bool | None = None

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> EnvVar:
        ref = (raw.get("valueFrom") or {}).get("secretKeyRef")
        if ref is None:
            return cls(name=shared(raw["name"]), value=shared(str(raw.get("value", ""))))
        return cls(name=shared(raw["name"]), secret=ref.get("name"), key=ref.get("key"),
                   optional=ref.get("optional"))  # fmt: skip

    def to_raw(self) -> dict[str, Any]:
        """The entry as a container's (and the TrainingJob's) `env` spells it."""
        if self.secret is None:
            return {"name": self.name, "value": self.value}
        ref: dict[str, Any] = {"name": self.secret, "key": self.key}
        if self.optional is not None:
            ref["optional"] = self.optional
        return {"name": self.name, "valueFrom": {"secretKeyRef": ref}}


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class ArraySpec:
    """spec.array: `count` indexed runs, at most `max_parallel` unfinished at once."""

    count: int
    max_parallel: int

    @classmethod
    def parse(cls, raw: Mapping[str, Any] | None) -> ArraySpec | None:
        if not raw:
            return None
        count = int(raw.get("count", 1))
        return cls(count=count, max_parallel=int(raw.get("maxParallel") or count))


@dataclass(frozen=True, slots=True)
class Dependency:
    """One entry of spec.dependsOn: a job of the same namespace, and what it must
    reach before this one may start (the rules: shunter.domain.dependencies)."""

    name: str
    condition: str  # Completed, Finished, Failed or Checkpointed
    step: int | None = None  # Checkpointed: the checkpoint step to reach

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> Dependency:
        step = raw.get("step")
        return cls(name=str(raw.get("name", "")), condition=str(raw.get("condition", "")),
                   step=int(step) if step is not None else None)  # fmt: skip

    def to_raw(self) -> dict[str, Any]:
        raw: dict[str, Any] = {"name": self.name, "condition": self.condition}
        if self.step is not None:
            raw["step"] = self.step
        return raw


@dataclass(frozen=True, slots=True)
class JobSpec:
    image: str
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: tuple[EnvVar, ...] = ()
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
    # Pods of the job (one per node) and training processes per Pod.
    nodes: int = 1
    procs_per_node: int | None = None
    backoff_limit: int = 0
    checkpoint_size: str | None = None
    checkpoint_storage_class: str | None = None
    suspended: bool = False
    cancelled: bool = False
    array: ArraySpec | None = None
    depends_on: tuple[Dependency, ...] = ()
    cancel_dependents: bool = False

    @property
    def total_gpus(self) -> int:
        """GPUs of the whole job: `gpus` is per Pod (per node)."""
        return self.gpus * self.nodes

    @property
    def secret_env(self) -> tuple[EnvVar, ...]:
        """The variables read from Secrets."""
        return tuple(e for e in self.env if e.secret is not None)

    @property
    def processes_per_node(self) -> int:
        return self.procs_per_node or max(1, self.gpus)

    @classmethod
    def parse(cls, raw: Mapping[str, Any]) -> JobSpec:
        checkpoint = raw.get("checkpoint") or {}
        pod_metadata = raw.get("podMetadata") or {}
        return cls(
            image=shared(str(raw.get("image", ""))),
            command=_shared_all(raw.get("command")),
            args=_shared_all(raw.get("args")),
            env=tuple(EnvVar.parse(e) for e in raw.get("env") or ()),
            gpus=int(raw.get("gpus", 1)),
            cpu=shared(raw.get("cpu")),
            memory=shared(raw.get("memory")),
            priority=int(raw.get("priority", 0)),
            queue=shared(str(raw.get("queue", "default"))),
            max_runtime_seconds=raw.get("maxRuntimeSeconds"),
            termination_grace_period_seconds=int(raw.get("terminationGracePeriodSeconds", 30)),
            checkpoint_claim=checkpoint.get("claimName"),
            checkpoint_mount_path=checkpoint.get("mountPath", "/checkpoints"),
            pod_labels=tuple(sorted((pod_metadata.get("labels") or {}).items())),
            pod_annotations=tuple(sorted((pod_metadata.get("annotations") or {}).items())),
            node_selector=tuple(sorted((raw.get("nodeSelector") or {}).items())),
            tolerations=tuple(Toleration.parse(t) for t in raw.get("tolerations") or ()),
            nodes=int(raw.get("nodes", 1)),
            procs_per_node=raw.get("procsPerNode"),
            backoff_limit=int(raw.get("backoffLimit", 0)),
            checkpoint_size=checkpoint.get("size"),
            checkpoint_storage_class=checkpoint.get("storageClassName"),
            suspended=bool(raw.get("suspended", False)),
            cancelled=bool(raw.get("cancelled", False)),
            array=ArraySpec.parse(raw.get("array")),
            depends_on=tuple(Dependency.parse(d) for d in raw.get("dependsOn") or ()),
            cancel_dependents=bool(raw.get("cancelDependents", False)),
        )


@dataclass(frozen=True, slots=True)
class Audit:
    """Who submitted and who cancelled the job (None: not recorded, e.g. kubectl)."""

    submitted_by: str | None = None
    cancelled_by: str | None = None

    @classmethod
    def parse(cls, annotations: Mapping[str, Any] | None) -> Audit:
        annotations = annotations or {}
        submitted, cancelled = annotations.get(SUBMITTED_BY), annotations.get(CANCELLED_BY)
        if submitted is None and cancelled is None:
            return NO_AUDIT
        return cls(submitted, cancelled)


NO_AUDIT = Audit()


@dataclass(frozen=True, slots=True)
class Member:
    """A run of an array as its metadata says: the TrainingJob controlling it (its
    controller ownerReference) and its index label. Whether it really is a run of that
    array is decided against the array itself (shunter.domain.arrays.is_run_of)."""

    owner_name: str
    owner_uid: Uid
    index: int | None
    count: int | None = None
    held: bool = False  # suspended by its array (SUSPENDED_BY_ARRAY)

    @classmethod
    def parse(cls, meta: Mapping[str, Any]) -> Member | None:
        for ref in meta.get("ownerReferences") or ():
            ours = ref.get("kind") == KIND and ref.get("apiVersion") == API_VERSION
            if ref.get("controller") and ours:
                index = _number((meta.get("labels") or {}).get(ARRAY_INDEX_LABEL))
                annotations = meta.get("annotations") or {}
                count = _number(annotations.get(ARRAY_COUNT_ANNOTATION))
                held = annotations.get(SUSPENDED_BY_ARRAY) == "true"
                uid = Uid(str(ref.get("uid", "")))
                return cls(str(ref.get("name", "")), uid, index, count, held)
        return None


@dataclass(frozen=True, slots=True)
class Job:
    key: JobKey
    uid: Uid
    resource_version: str
    created_at: datetime
    spec: JobSpec
    status: JobStatus = field(default_factory=JobStatus)
    audit: Audit = field(default_factory=Audit)
    member: Member | None = None
    generation: int = 0  # metadata.generation: moves with the spec only
    annotated: bool = False  # it has metadata.annotations (shunter.domain.actions.guarded_patch)

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> Job:
        meta = body["metadata"]
        return cls(
            key=JobKey(shared(meta["namespace"]), meta["name"]),
            uid=Uid(meta["uid"]),
            resource_version=str(meta.get("resourceVersion", "")),
            created_at=parse_time(meta.get("creationTimestamp")) or datetime.now(UTC),
            spec=JobSpec.parse(body.get("spec") or {}),
            status=JobStatus.parse(body.get("status")),
            audit=Audit.parse(meta.get("annotations")),
            member=Member.parse(meta),
            generation=int(meta.get("generation") or 0),
            annotated=bool(meta.get("annotations")),
        )

    @property
    def phase(self) -> Phase | None:
        return self.status.phase

    @property
    def revision(self) -> int:
        """Its resourceVersion as a number (0 where it is not one: orders it first)."""
        return revision(self.resource_version) or 0

    @property
    def queued(self) -> bool:
        """Not admitted yet: new (no phase written) or waiting in the queue."""
        return self.status.phase in (None, Phase.QUEUED)

    @property
    def holds_slot(self) -> bool:
        """Admitted and not yet gone: starting, running or stopping. (Never an array:
        its phase summarises its runs, which hold the slots; shunter.domain.arrays.)"""
        phase = self.status.phase
        return phase is not None and phase.holds_slot and self.spec.array is None


@dataclass(frozen=True, slots=True)
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
    index: int = 0
    attempt: int = 0
    ready: bool = False
    # The scheduler's reason while the Pod waits for a node (PodScheduled=False).
    unschedulable: str | None = None

    @property
    def job_key(self) -> JobKey:
        return JobKey(self.namespace, self.job_name)

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> PodView:
        meta = body["metadata"]
        labels = meta.get("labels") or {}
        status = body.get("status") or {}
        started_at, exit_code, reason, message = _container_state(status)
        conditions = {c.get("type"): c for c in status.get("conditions") or ()}
        scheduled = conditions.get("PodScheduled") or {}
        return cls(
            namespace=shared(meta["namespace"]),
            name=meta["name"],
            uid=meta.get("uid", ""),
            job_name=labels.get(JOB_NAME_LABEL, ""),
            job_uid=labels.get(JOB_UID_LABEL, ""),
            phase=shared(status.get("phase") or "Pending"),
            deleting=bool(meta.get("deletionTimestamp")),
            node_name=shared((body.get("spec") or {}).get("nodeName")),
            started_at=started_at,
            exit_code=exit_code,
            reason=shared(reason or status.get("reason")),
            message=message or status.get("message"),
            index=_int(labels.get(POD_INDEX_LABEL)),
            attempt=_int(labels.get(ATTEMPT_LABEL)),
            ready=(conditions.get("Ready") or {}).get("status") == "True",
            unschedulable=scheduled.get("message") if scheduled.get("status") == "False" else None,
        )


def _number(value: object) -> int | None:
    return int(value) if isinstance(value, str) and value.isdigit() else None


def _int(value: object) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


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
