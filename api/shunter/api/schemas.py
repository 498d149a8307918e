"""HTTP schemas (pydantic lives here, at the boundary, and nowhere else).

Families as in the FastAPI full-stack template: `JobCreate` in, `JobPublic` out,
`QueueView` and `JobHistoryPage` for lists, `CancelResult` for the guide's cancel
bodies. Ids are TrainingJob names; phases are spelled in lowercase.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from shunter.api.appraisal import Appraisal
from shunter.api.lineage import Lineage
from shunter.domain.actions import Action, allowed_actions
from shunter.domain.arrays import ArrayCounts, run_name
from shunter.domain.dependencies import MAX_DEPENDENCIES
from shunter.domain.model import Job
from shunter.domain.record import JobRecord, record_of

JOB_ID_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
JobId = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN, min_length=1, max_length=55)]
Name = Annotated[str, StringConstraints(pattern=JOB_ID_PATTERN, min_length=1, max_length=63)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z][-._a-zA-Z0-9]*$", max_length=256)]
Text = Annotated[str, StringConstraints(max_length=2048)]
SecretName = Annotated[str, StringConstraints(
    pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", min_length=1, max_length=253)]  # fmt: skip
SecretKey = Annotated[str, StringConstraints(pattern=r"^[-._a-zA-Z0-9]+$", min_length=1,
                                             max_length=253)]  # fmt: skip
Quantity = Annotated[str, StringConstraints(pattern=r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$",
                                            max_length=32)]  # fmt: skip


class TolerationIn(BaseModel):
    """A taint the trainer Pod tolerates: the shape of a Pod's `tolerations` entry."""

    model_config = ConfigDict(extra="forbid")

    key: Annotated[str, StringConstraints(max_length=317)] | None = None
    operator: Literal["Exists", "Equal"] | None = None
    value: Annotated[str, StringConstraints(max_length=63)] | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    tolerationSeconds: int | None = None  # the Pod API spells it so


class SecretEnvIn(BaseModel):
    """An environment variable read from a key of a Secret of the job's namespace
    (`valueFrom.secretKeyRef`): the trainer Pod's kubelet reads it, the API never does."""

    model_config = ConfigDict(extra="forbid")

    secret: SecretName = Field(description="A Secret of the job's namespace")
    key: SecretKey
    optional: bool | None = Field(None, description="Start even if the Secret or key is missing")


class EnvPublic(BaseModel):
    """A variable of the trainer: its name, and where a Secret's key feeds it (plain
    values are not repeated here)."""

    name: str
    secret: str | None = None
    key: str | None = None


class ArrayIn(BaseModel):
    """Run the job `count` times (runs NAME-0 .. NAME-(count-1), each told its index in
    SHUNTER_ARRAY_INDEX), at most `max_parallel` unfinished at once (default: count)."""

    model_config = ConfigDict(extra="forbid")

    count: int = Field(ge=1, le=10_000, description="Runs of the array (1 to 10000)")
    max_parallel: int | None = Field(None, ge=1, le=10_000)

    @model_validator(mode="after")
    def _parallel_within_count(self) -> ArrayIn:
        if self.max_parallel is not None and self.max_parallel > self.count:
            raise ValueError(
                f"array.max_parallel ({self.max_parallel}) must be at most array.count"
                f" ({self.count})"
            )
        return self


class DependencyIn(BaseModel):
    """A job of the same namespace this one waits for (spec.dependsOn's entry)."""

    model_config = ConfigDict(extra="forbid")

    name: Name = Field(description="A job of this namespace")
    condition: Literal["Completed", "Finished", "Failed", "Checkpointed"]
    step: int | None = Field(None, ge=0, description="Checkpointed only: the step to reach")

    @model_validator(mode="after")
    def _step_with_checkpointed(self) -> DependencyIn:
        if (self.condition == "Checkpointed") != (self.step is not None):
            raise ValueError(
                "step is required with condition Checkpointed, and allowed only with it"
            )
        return self


class JobCreate(BaseModel):
    """A training job to submit. Unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid")

    name: JobId | None = Field(None, description="Job id; generated (job-xxxxx) when omitted")
    image: (
        Annotated[str, StringConstraints(min_length=1, max_length=512, pattern=r"^\S+$")] | None
    ) = Field(None, description="Trainer image; the server's default image when omitted")
    command: list[Text] = Field(default_factory=list, max_length=32)
    args: list[Text] = Field(default_factory=list, max_length=128)
    env: dict[EnvName, Annotated[str, StringConstraints(max_length=8192)] | SecretEnvIn] = Field(
        default_factory=dict, max_length=64,
        description='Plain values, or {"secret": NAME, "key": KEY} for a key of a Secret',
    )  # fmt: skip
    gpus: int = Field(1, ge=0, le=64)
    cpu: Quantity | None = None
    memory: Quantity | None = None
    priority: int = Field(0, ge=-1000, le=1000)
    queue: Name = "default"
    max_runtime_seconds: int | None = Field(None, ge=1, le=2_592_000)
    termination_grace_period_seconds: int = Field(30, ge=0, le=3600)
    checkpoint_claim: Name | None = None
    pod_labels: dict[Annotated[str, StringConstraints(max_length=253)],
                     Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict, max_length=64)  # fmt: skip
    pod_annotations: dict[Annotated[str, StringConstraints(max_length=253)],
                          Annotated[str, StringConstraints(max_length=1024)]] = Field(
        default_factory=dict, max_length=64)  # fmt: skip
    node_selector: dict[Annotated[str, StringConstraints(max_length=317)],
                        Annotated[str, StringConstraints(max_length=63)]] = Field(
        default_factory=dict, max_length=32,
        description="Node labels the trainer Pod requires (e.g. a node pool)")  # fmt: skip
    tolerations: list[TolerationIn] = Field(
        default_factory=list, max_length=32, description="Taints the trainer Pod tolerates"
    )
    nodes: int = Field(1, ge=1, le=64, description="Pods (one per node); gpus is per Pod")
    procs_per_node: int | None = Field(None, ge=1, le=64, description="Default: gpus, at least 1")
    backoff_limit: int = Field(0, ge=0, le=20, description="Failed runs retried in new Pods")
    checkpoint_size: Quantity | None = Field(
        None, description="Size of the checkpoint claim the operator creates (no claim named)"
    )
    checkpoint_storage_class: Name | None = None
    array: ArrayIn | None = Field(None, description="Run the job as an array of indexed runs")
    depends_on: list[DependencyIn] = Field(
        default_factory=list, max_length=MAX_DEPENDENCIES,
        description="Jobs of this namespace to wait for (like Slurm's --dependency)",
    )  # fmt: skip
    cancel_dependents: bool = Field(
        False, description="Cancelling this job also cancels the jobs waiting on it"
    )

    @model_validator(mode="after")
    def _dependencies(self) -> JobCreate:
        names = [d.name for d in self.depends_on]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"depends_on names {', '.join(twice)} more than once")
        if self.name is not None and self.name in names:
            raise ValueError("depends_on names the job itself; a job cannot depend on itself")
        return self


class Termination(BaseModel):
    step: str
    outcome: str | None = None
    requested_at: datetime | None = None
    graceful_delete_at: datetime | None = None
    force_delete_at: datetime | None = None


class JobRow(BaseModel):
    """The fields of a job's record (shunter.domain.record), as the API names them:
    `job_id` is its name. The live view and the history both are one."""

    job_id: str
    namespace: str
    status: str
    reason: str | None = None
    message: str | None = None
    error: str | None = Field(None, description="'Cancelled by user', or why it failed")
    queue: str
    priority: int
    gpus: int
    nodes: int = 1
    image: str
    queue_position: int | None = None
    pod_name: str | None = None
    node_name: str | None = None
    exit_code: int | None = None
    created_at: datetime
    admitted_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    attempts: int = 0
    failures: int = 0
    start_timeouts: int = 0
    preemptions: int = 0
    suspensions: int = 0
    submitted_by: str | None = Field(None, description="The user who submitted it (the API's)")
    cancelled_by: str | None = Field(None, description="The user who cancelled it through the API")
    progress_step: int | None = Field(None, description="The step of its last progress report")
    total_steps: int | None = Field(None, description="The steps it reported it would run")
    checkpoint_step: int | None = Field(None, description="The step of its last checkpoint")
    checkpointed_at: datetime | None = Field(None, description="When that checkpoint was complete")


# JobRow's fields by the record's names (the record's `name` is the API's `job_id`).
RENAMED = {"job_id": "name"}


def record_fields(record: JobRecord) -> dict[str, Any]:
    """A record's fields for JobRow (and the models built on it); read field by field,
    not copied whole: every job of every live view passes here."""
    return {f: getattr(record, RENAMED.get(f, f)) for f in JobRow.model_fields}


class ProgressPublic(BaseModel):
    """The trainer's last progress report (status.progress)."""

    step: int
    total_steps: int | None = None
    loss: float | None = None
    throughput: float | None = Field(None, description="Steps per second")
    reported_at: datetime
    losses: list[float] = Field(
        default_factory=list, description="The last losses reported, oldest first"
    )
    percent: int | None = Field(None, description="Whole percent done, when total_steps is known")
    resumed_from_step: int | None = Field(
        None, description="The checkpoint step this run resumed from"
    )


class CheckpointPublic(BaseModel):
    """The last complete checkpoint the trainer reported (status.checkpoint)."""

    step: int
    time: datetime
    age_seconds: float = Field(description="Seconds since it was complete, when rendered")
    size_bytes: int = 0
    write_seconds: float = 0.0


class WorkLost(BaseModel):
    """What a stop started now would cost (shunter.domain.workloss, the rule preemption
    ranks victims by): GPU-seconds = the job's GPUs x (lost + stop)."""

    gpu_seconds: float
    lost_seconds: float = Field(description="Work since the last checkpoint when the stop ends")
    stop_seconds: float = Field(description="How long the stop would hold the GPUs")
    basis: str = Field(description="How it was judged")


class ArrayPublic(BaseModel):
    """An array's runs per phase (its runs are jobs NAME-INDEX: GET /status/NAME-INDEX,
    or GET /status/NAME/index/INDEX)."""

    count: int
    max_parallel: int
    queued: int = 0
    running: int = 0
    suspended: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0
    not_created: int = 0

    @classmethod
    def of(cls, job: Job) -> ArrayPublic | None:
        spec = job.spec.array
        if spec is None:
            return None
        c = ArrayCounts.parse(spec.count, job.status.array)
        return cls(count=c.count, max_parallel=spec.max_parallel, queued=c.queued,
                   running=c.running, suspended=c.suspended, completed=c.completed,
                   failed=c.failed, cancelled=c.cancelled, not_created=c.not_created)  # fmt: skip


class ArrayRunPublic(BaseModel):
    """The array a run belongs to, and its index."""

    array: str
    index: int


class UpstreamPublic(BaseModel):
    """One of the job's dependencies and how it stands (GET /status)."""

    name: str
    condition: str
    step: int | None = None
    state: Literal["met", "waiting", "impossible", "unknown"]
    why: str
    status: str | None = Field(None, description="The upstream job's phase, when known")
    deleted: bool = Field(False, description="Its TrainingJob is gone: judged from the history")


class DownstreamPublic(BaseModel):
    """A job that depends on this one."""

    name: str
    condition: str
    step: int | None = None
    status: str


class StartRangePublic(BaseModel):
    """The range of a queued job's estimated start, or why it has none."""

    earliest: datetime | None = None
    latest: datetime | None = None
    reason: str | None = Field(None, description="Why there is no estimate, when there is none")


class JobPublic(JobRow):
    """A live job: its record, and what only a live job has."""

    cancel_requested: bool
    termination: Termination | None = None
    total_gpus: int = 0
    pods_ready: int = 0
    suspend_requested: bool = False
    actions: list[Action] = Field(
        default_factory=list, description="What may be done to the job now (e.g. cancel)"
    )
    env: list[EnvPublic] = Field(default_factory=list, description="The trainer's variables")
    progress: ProgressPublic | None = None
    checkpoint: CheckpointPublic | None = None
    work_lost_if_stopped: WorkLost | None = Field(
        None, description="Running jobs: what stopping it now would lose"
    )
    array: ArrayPublic | None = Field(None, description="An array: its runs per phase")
    array_run: ArrayRunPublic | None = Field(None, description="A run of an array: which")
    cancel_dependents: bool = False
    upstream: list[UpstreamPublic] | None = Field(
        None, description="Its dependencies, each with its state (GET /status; null in lists)"
    )
    downstream: list[DownstreamPublic] | None = Field(
        None, description="Jobs that depend on it (GET /status; null in lists)"
    )
    estimated_start: datetime | None = Field(
        None, description="Queued jobs: when the operator's plan of the queue expects it to start"
    )
    estimated_start_range: StartRangePublic | None = None

    @classmethod
    def of(cls, job: Job, *, at: Appraisal, lineage: Lineage | None = None) -> JobPublic:
        """The job as of `at` (its checkpoint's age and its work lost depend on the time)."""
        status = job.status
        t = status.termination
        return cls(
            **record_fields(record_of(job)),
            cancel_requested=job.spec.cancelled,
            termination=Termination(
                step=t.step.value,
                outcome=t.outcome,
                requested_at=t.requested_at,
                graceful_delete_at=t.graceful_delete_at,
                force_delete_at=t.force_delete_at,
            )
            if t
            else None,
            total_gpus=job.spec.total_gpus,
            pods_ready=status.pods_ready,
            suspend_requested=job.spec.suspended,
            actions=allowed_actions(job),
            env=[EnvPublic(name=e.name, secret=e.secret, key=e.key) for e in job.spec.env],
            progress=_progress(job),
            checkpoint=_checkpoint(job, at),
            work_lost_if_stopped=_work_lost(job, at),
            array=ArrayPublic.of(job),
            array_run=_array_run(job),
            cancel_dependents=job.spec.cancel_dependents,
            upstream=[UpstreamPublic(**u.__dict__) for u in lineage.upstream] if lineage else None,
            downstream=[DownstreamPublic(**d.__dict__) for d in lineage.downstream]
            if lineage
            else None,
            **_estimate(job, at),
        )


def _estimate(job: Job, at: Appraisal) -> dict[str, Any]:
    e = at.estimate(job)
    if e is None:
        return {}
    return {"estimated_start": e.start,
            "estimated_start_range": StartRangePublic(earliest=e.earliest, latest=e.latest,
                                                      reason=e.reason)}  # fmt: skip


def _array_run(job: Job) -> ArrayRunPublic | None:
    member = job.member
    if (
        member is None
        or member.index is None
        or job.key.name != run_name(member.owner_name, member.index)
    ):
        return None
    return ArrayRunPublic(array=member.owner_name, index=member.index)


def _progress(job: Job) -> ProgressPublic | None:
    p = job.status.progress
    if p is None:
        return None
    return ProgressPublic(
        step=p.step, total_steps=p.total_steps, loss=p.loss, throughput=p.throughput,
        reported_at=p.reported_at, losses=list(p.losses), percent=p.percent,
        resumed_from_step=p.resumed_from_step,
    )  # fmt: skip


def _checkpoint(job: Job, at: Appraisal) -> CheckpointPublic | None:
    c = job.status.checkpoint
    age = at.checkpoint_age(job)
    if c is None or age is None:
        return None
    return CheckpointPublic(
        step=c.step, time=c.time, age_seconds=age, size_bytes=c.size_bytes,
        write_seconds=c.write_seconds,
    )  # fmt: skip


def _work_lost(job: Job, at: Appraisal) -> WorkLost | None:
    cost = at.work_lost(job)
    if cost is None:
        return None
    return WorkLost(
        gpu_seconds=cost.gpu_seconds(job.spec.total_gpus), lost_seconds=cost.lost_seconds,
        stop_seconds=cost.stop_seconds, basis=cost.basis,
    )  # fmt: skip


class SubmitResult(BaseModel):
    success: bool = True
    job_id: str
    namespace: str
    status: str
    message: str


class Alternative(BaseModel):
    """A nearby variant of a what-if that starts sooner."""

    gpus: int
    queue: str
    estimated_start: datetime
    message: str = Field(description='e.g. "with 4 GPUs: starts now"')


class WhatIf(BaseModel):
    """POST /submit?dry_run=true: what submitting would do; nothing is created."""

    dry_run: Literal[True] = True
    job_id: str
    namespace: str
    queue: str
    position: int | None = Field(
        description="Its place in its queue (1 = next to start);"
        " null while it would wait for its dependencies"
    )
    ahead: int = Field(description="Queued jobs ahead of it in admission order (all queues)")
    estimated_start: datetime | None = None
    estimated_start_range: StartRangePublic | None = None
    starts_now: bool = False
    would_preempt: bool = False
    preempts: list[str] = Field(
        default_factory=list, description="namespace/name of the jobs it would preempt"
    )
    alternatives: list[Alternative] = Field(default_factory=list)
    message: str
    plan_made_at: datetime | None = Field(
        default=None,
        description="The operator's plan this answer is from (its version: published"
        " every few seconds); null when it is from none (no plan yet, or a job that"
        " would wait for its dependencies)",
    )


class CancelResult(BaseModel):
    """Exactly the acceptance guide's body; previous_status is absent for unknown ids."""

    success: bool
    job_id: str
    previous_status: str | None = None
    message: str


class QueueUsage(BaseModel):
    """One TrainingQueue: its limits and what the jobs the API sees hold of them."""

    name: str
    exists: bool = Field(description="False: jobs name it but no TrainingQueue has that name")
    running: int
    gpus: int = Field(description="GPUs held by its admitted jobs")
    waiting: int
    max_running: int | None = None
    gpu_quota: int | None = None
    borrowed: int = Field(0, description="GPUs held beyond gpu_quota (lent by the cohort)")
    borrowing_limit: int | None = None
    cohort: str | None = None
    preemption: str = "never"
    queueing_strategy: str = "StrictFIFO"


class QueueView(BaseModel):
    namespace: str
    running_count: int = Field(description="Jobs holding a slot: starting, running, cancelling")
    queued_count: int
    running: list[JobPublic]
    queued: list[JobPublic] = Field(
        description="The first `limit` waiting jobs in admission order; queue_position is the"
        " place in the job's own queue (1 is next)"
    )
    queues: list[QueueUsage] = Field(
        default_factory=list, description="Usage of each queue (only `queue` when filtered)"
    )


class JobList(BaseModel):
    """Current jobs (from the cluster): slot holders, the queue in order, then the
    rest newest first."""

    namespace: str
    count: int
    running_count: int
    queued_count: int
    items: list[JobPublic]


class JobEvent(BaseModel):
    type: str | None = None
    reason: str | None = None
    message: str | None = None
    time: datetime | None = None
    count: int = 1


class HistoryRow(JobRow):
    """A job's row in the mirror (it outlives the TrainingJob)."""

    uid: str
    deleted_at: datetime | None = Field(None, description="When its TrainingJob was deleted")


# The mirror's columns of a HistoryRow (the record's `id` is the API's `uid`).
HISTORY_COLUMNS = tuple(
    {"job_id": "name AS job_id", "uid": "id::text AS uid"}.get(f, f)
    for f in HistoryRow.model_fields
)


class JobHistoryPage(BaseModel):
    items: list[HistoryRow]
    total: int
    limit: int
    offset: int


class AttemptRow(BaseModel):
    """One run of a job (from the mirror's attempts table)."""

    attempt: int
    exit_code: int | None = None
    reason: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    resumed_from_step: int | None = Field(None, description="The checkpoint step it resumed from")
    checkpoint_step: int | None = Field(None, description="The last checkpoint it reported")
    lost_seconds: float | None = Field(
        None, description="Work it lost: since its last checkpoint, or since it started"
    )


class OutcomeUsage(BaseModel):
    attempts: int
    allocated_gpu_hours: float
    lost_gpu_hours: float


class UsageGroup(BaseModel):
    """One namespace, user or queue: a value per bucket, and the window's totals."""

    key: str = Field(description="The namespace, user (`(unknown)`: kubectl) or queue")
    allocated_gpu_hours: list[float] = Field(description="Per bucket: GPUs held, admission to end")
    run_gpu_hours: list[float] = Field(description="Per bucket: from all Pods running to end")
    lost_gpu_hours: list[float] = Field(
        description="Per bucket where runs ended: work lost since their last checkpoint"
    )
    attempts: list[int] = Field(description="Per bucket: runs that ended in it")
    total_allocated_gpu_hours: float
    total_run_gpu_hours: float
    total_lost_gpu_hours: float
    total_attempts: int
    wait_seconds_p50: float | None = None
    wait_seconds_p90: float | None = None
    wait_seconds_max: float | None = None
    wait_histogram: list[int] = Field(
        description="Runs admitted in the window, by wait: one count per `wait_bounds` bucket,"
        " then one for longer"
    )
    outcomes: dict[str, OutcomeUsage] = Field(description="By how the runs ended")


class UsageGaps(BaseModel):
    missing_attempts: int = Field(description="Runs the mirror never wrote (see `bound`)")
    jobs: int = Field(description="Jobs missing at least one run")
    bound: str


class UsageReport(BaseModel):
    """GPU-hours allocated, run and lost, runs and waits, like sacct/sreport."""

    namespace: str = Field(description="`*`: every namespace")
    by: str
    step: str
    since: datetime
    until: datetime
    buckets: list[datetime] = Field(description="Each bucket's start (UTC)")
    wait_bounds: list[float] = Field(description="Upper bounds (s) of the wait histogram")
    groups: list[UsageGroup]
    gaps: UsageGaps


class NamespaceShare(BaseModel):
    namespace: str
    decayed_usage: float | None = None
    usage_gpu_hours: float | None = None


class QueueShare(BaseModel):
    """One TrainingQueue's fair share, like a line of sshare."""

    queue: str
    cohort: str | None = None
    weight: float = Field(description="spec.fairSharing.weight (1 when unset)")
    fair_sharing: bool = Field(description="Whether the queue sets spec.fairSharing")
    normalized_weight: float = Field(description="Its weight over its cohort's (or its own: 1)")
    share: float | None = Field(None, description="Its share now, as the operator reports it")
    weighted_share: float | None = Field(
        None, description="Share over weight, as the operator reports it (lowest lends first)"
    )
    decayed_usage: float | None = Field(None, description="As the operator keeps it in status")
    gpus: int = Field(description="GPUs its admitted jobs hold now")
    usage_gpu_hours: float | None = Field(
        None, description="GPU-hours allocated over `window_hours` (PostgreSQL)"
    )
    usage_share: float | None = Field(
        None,
        description="Its part of its cohort's GPU-hours over the window (vs normalized_weight)",
    )
    namespaces: list[NamespaceShare] = Field(default_factory=list)


class SharesReport(BaseModel):
    namespace: str = Field(description="`*`: every namespace")
    window_hours: float
    usage_available: bool = Field(description="False: PostgreSQL could not be read")
    queues: list[QueueShare]


class ErrorBody(BaseModel):
    success: bool = False
    message: str
    detail: Any = None
