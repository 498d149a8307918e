"""Job arrays (`spec.array: {count, maxParallel}`): the pure rules.

An array runs its job `count` times, each run with its index (SHUNTER_ARRAY_INDEX).
The runs are child TrainingJobs, not Pods of one job: every run then goes through the
same admission, quotas, fair sharing, preemption, suspend and resume, cancel, mirror
rows and report channel as any job, with nothing written twice. Slurm's array tasks
are full jobs likewise (`jobid_index`).

Runs are created lazily by the operator: at most `maxParallel` unfinished runs exist
at a time, created in index order as earlier ones end, so an array of 10,000 is one
object plus maxParallel runs, not 10,000 objects (Slurm keeps a pending array as one
record for the same reason). A run is named `<array>-<index>`, labelled
`shunter.dev/array=<array>` and `shunter.dev/array-index=<index>` (so `kubectl get tj
-l shunter.dev/array=<array>` lists the runs), owned by the array (controller
ownerReference: deleted with it), its spec the array's without `array`, in the
array's namespace and with the array's submitted-by annotation (the identity that
fair sharing and the mirror's accounting use).

A run is recognised only by its controller ownerReference to the array's uid (and
its name and index agreeing), never by its labels alone: a TrainingJob made by hand
with the labels of a run is not adopted, and if it holds the name of a run, that
index is not run and counts as failed (`taken`).

The array's own object runs nothing (it never enters a queue and holds no slot): its
phase summarises its runs (queued until one runs, running while any runs, completed
when all completed, failed when all ended and any failed, cancelled when it was
cancelled or, with none failed, some run was), and `status.array` counts its runs
per phase. A cancel or suspend of the array acts on every unfinished run (the
operator sets the run's spec.cancelled or spec.suspended, as a user would) and stops
new runs being created; a resume resumes the runs the array suspended. A cancel,
suspend or resume of one run acts on that run only, as on any job. An array's
`dependsOn` is copied to every run, so each run waits as any dependent job; once one
fails `DependencyFailed` (the condition can no longer be met), no further run is
created and the array fails `DependencyFailed` when the others have ended, rather
than creating every remaining run only to see it fail. Everything is
decided from the TrainingJobs themselves, so an operator restarted after kill -9
carries on where it was: a run created but not yet seen is created again (its name is
fixed: the create finds it there), and a run deleted by hand is created again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from shunter.domain.dependencies import FAILED_REASON
from shunter.domain.model import (
    API_VERSION,
    ARRAY_COUNT_ANNOTATION,
    ARRAY_INDEX_LABEL,
    ARRAY_LABEL,
    CANCELLED_BY,
    KIND,
    MANAGED_BY,
    MANAGED_BY_LABEL,
    SUBMITTED_BY,
    SUSPENDED_BY_ARRAY,
    ArraySpec,
    Job,
    JobKey,
    JobStatus,
    Phase,
    Uid,
)

# The index's name is held by a TrainingJob that is not a run of the array.
NAME_TAKEN = "NameTaken"

_BUCKETS: dict[Phase | None, str] = {
    None: "queued",
    Phase.QUEUED: "queued",
    Phase.STARTING: "running",
    Phase.RUNNING: "running",
    Phase.CANCELLING: "running",
    Phase.STOPPING: "running",
    Phase.SUSPENDED: "suspended",
    Phase.COMPLETED: "completed",
    Phase.FAILED: "failed",
    Phase.CANCELLED: "cancelled",
}


_NAMES = ("queued", "running", "suspended", "completed", "failed", "cancelled")


def run_name(array: str, index: int) -> str:
    return f"{array}-{index}"


def is_array(job: Job) -> bool:
    return job.spec.array is not None


def is_run_of(run: Job, array: Job) -> bool:
    """Is `run` a run of `array`: controlled by it (the uid of its controller
    ownerReference) and named after its own index. Labels alone never make a run."""
    member, spec = run.member, array.spec.array
    if member is None or spec is None or member.owner_uid != array.uid or member.index is None:
        return False
    return 0 <= member.index < spec.count and run.key == JobKey(
        array.key.namespace, run_name(array.key.name, member.index)
    )


@dataclass(frozen=True)
class ArrayCounts:
    """An array's runs per phase; `taken` indexes count as failed."""

    count: int
    queued: int = 0
    running: int = 0
    suspended: int = 0
    completed: int = 0
    failed: int = 0
    cancelled: int = 0

    @property
    def created(self) -> int:
        return self.queued + self.running + self.suspended + self.finished

    @property
    def finished(self) -> int:
        return self.completed + self.failed + self.cancelled

    @property
    def unfinished(self) -> int:
        return self.queued + self.running + self.suspended

    @property
    def not_created(self) -> int:
        return max(0, self.count - self.created)

    @property
    def display(self) -> str:
        """The kubectl RUNS column: `42/100 done, 10 running, 1 failed`."""
        parts = [f"{self.completed}/{self.count} done"]
        for name in ("running", "queued", "suspended", "failed", "cancelled"):
            value = getattr(self, name)
            if value:
                parts.append(f"{value} {name}")
        return ", ".join(parts)

    @classmethod
    def of(cls, count: int, buckets: Mapping[str, int], taken: int = 0) -> ArrayCounts:
        """From the runs counted per phase bucket; `taken` indexes count as failed."""
        tally = {name: buckets.get(name, 0) for name in _NAMES}
        tally["failed"] += taken
        return cls(count=count, **tally)

    @classmethod
    def parse(cls, count: int, raw: Mapping[str, Any] | None) -> ArrayCounts:
        """status.array as `to_raw` wrote it (none written yet: no run created)."""
        raw = raw or {}
        return cls(count=count, **{name: int(raw.get(name) or 0) for name in _NAMES})

    def to_raw(self) -> dict[str, Any]:
        return {
            "queued": self.queued,
            "running": self.running,
            "suspended": self.suspended,
            "completed": self.completed,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "notCreated": self.not_created,
            "display": self.display,
        }


def next_indexes(
    spec: ArraySpec, runs: Collection[int], *, unfinished: int, taken: Collection[int] = ()
) -> list[int]:
    """The indexes to create now: the lowest without a run (and whose name is not
    taken), as many as keep at most maxParallel runs unfinished."""
    room = spec.max_parallel - unfinished
    found: list[int] = []
    if room <= 0:
        return found
    for index in range(spec.count):
        if index not in runs and index not in taken:
            found.append(index)
            if len(found) == room:
                break
    return found


@dataclass(frozen=True)
class Summary:
    phase: Phase
    reason: str
    message: str


def summarise(array: Job, counts: ArrayCounts) -> Summary:
    """The array's phase from its runs (see the module doc)."""
    if array.spec.cancelled:
        if counts.unfinished:
            return Summary(Phase.CANCELLING, "Cancelling",
                           f"Cancelling its {counts.unfinished} unfinished runs")  # fmt: skip
        return Summary(Phase.CANCELLED, "Cancelled", f"Cancelled: {counts.display}")
    if counts.finished == counts.count:
        if counts.completed == counts.count:
            return Summary(Phase.COMPLETED, "Completed", f"All {counts.count} runs completed")
        if counts.failed:
            return Summary(
                Phase.FAILED, "RunsFailed", f"{counts.failed} runs failed: {counts.display}"
            )
        return Summary(Phase.CANCELLED, "RunsCancelled", f"Ended: {counts.display}")
    if counts.running:
        return Summary(Phase.RUNNING, "Running", counts.display)
    if array.spec.suspended:
        return Summary(Phase.SUSPENDED, "Suspended", f"Suspended: {counts.display}")
    return Summary(Phase.QUEUED, "Queued", counts.display)


def run_patch(array: Job, run: Job) -> dict[str, Any] | None:
    """The merge patch that carries the array's cancel, suspend or resume to one of
    its runs; None when the run is as it should be."""
    if run.phase is not None and run.phase.terminal:
        return None
    if array.spec.cancelled:
        if run.spec.cancelled:
            return None
        meta: dict[str, Any] = {}
        if array.audit.cancelled_by:
            meta = {"annotations": {CANCELLED_BY: array.audit.cancelled_by}}
        return {"metadata": meta, "spec": {"cancelled": True}} if meta else {
            "spec": {"cancelled": True}}  # fmt: skip
    # A run suspended by its own user carries no mark: it stays suspended when the
    # array resumes.
    held = run.member is not None and run.member.held
    if array.spec.suspended and not run.spec.suspended:
        return {"metadata": {"annotations": {SUSPENDED_BY_ARRAY: "true"}},
                "spec": {"suspended": True}}  # fmt: skip
    if not array.spec.suspended and held:
        return {"metadata": {"annotations": {SUSPENDED_BY_ARRAY: None}},
                "spec": {"suspended": False}}  # fmt: skip
    return None


def may_create(array: Job) -> bool:
    """New runs are created only while the array is neither cancelled nor suspended
    (nor finished)."""
    finished = array.phase is not None and array.phase.terminal
    return not (array.spec.cancelled or array.spec.suspended or finished)


def run_manifest(array: Mapping[str, Any], index: int) -> dict[str, Any]:
    """Run `index` of the array whose stored body is `array`: its spec without
    `array`, cancelled or suspended, the array's identity, owned by the array."""
    meta = array["metadata"]
    spec = {k: v for k, v in (array.get("spec") or {}).items()
            if k not in ("array", "cancelled", "suspended")}  # fmt: skip
    count = int(((array.get("spec") or {}).get("array") or {}).get("count", 1))
    annotations = {ARRAY_COUNT_ANNOTATION: str(count)}
    submitted = (meta.get("annotations") or {}).get(SUBMITTED_BY)
    if submitted:
        annotations[SUBMITTED_BY] = submitted
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": run_name(meta["name"], index),
            "namespace": meta["namespace"],
            "labels": {
                ARRAY_LABEL: meta["name"],
                ARRAY_INDEX_LABEL: str(index),
                MANAGED_BY_LABEL: MANAGED_BY,
            },
            "annotations": annotations,
            "ownerReferences": [
                {
                    "apiVersion": API_VERSION,
                    "kind": KIND,
                    "name": meta["name"],
                    "uid": meta["uid"],
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": spec,
    }


@dataclass(frozen=True)
class ArrayPlan:
    """What one look at an array decides: its status, the runs to create (indexes),
    and the patches carrying its cancel, suspend or resume to its runs."""

    status: JobStatus
    create: tuple[int, ...] = ()
    patches: tuple[tuple[JobKey, dict[str, Any]], ...] = ()


def index_in_name(key: JobKey) -> tuple[JobKey, int] | None:
    """The array and index whose run would have this name (`<array>-<index>`, the index
    written as run_name writes it: `a-07` is no run's name); None for other names."""
    head, _, tail = key.name.rpartition("-")
    if not head or not tail.isdigit() or str(int(tail)) != tail:
        return None
    return JobKey(key.namespace, head), int(tail)


def _claimant(job: Job, index: int) -> Uid | None:
    """The array a job named like run `index` says it belongs to: its controller's uid,
    when its index label agrees with its name (whether that is the array's uid is for
    the array to say)."""
    member = job.member
    return member.owner_uid if member is not None and member.index == index else None


class Named:
    """The jobs named like runs of one array (`<array>-<n>`), kept up to date job by
    job (the operator's book holds one per array name) so that a look at an array of
    10,000 runs costs about what it costs at 10: by index, their phases counted per
    claimant (shunter.domain.arrays._claimant), and the unfinished ones."""

    def __init__(self) -> None:
        self.jobs: dict[int, Job] = {}
        self.tally: dict[Uid | None, dict[str, int]] = {}
        self.by_claimant: dict[Uid | None, set[int]] = {}
        self.unfinished: dict[int, Job] = {}
        # Indexes whose job failed because its dependencies can never be met.
        self.dependency_failed: set[int] = set()

    def put(self, index: int, job: Job) -> None:
        self.remove(index)
        self.jobs[index] = job
        claimant = _claimant(job, index)
        tally = self.tally.setdefault(claimant, {})
        bucket = _BUCKETS[job.phase]
        tally[bucket] = tally.get(bucket, 0) + 1
        self.by_claimant.setdefault(claimant, set()).add(index)
        if not (job.phase is not None and job.phase.terminal):
            self.unfinished[index] = job
        if job.phase == Phase.FAILED and job.status.reason == FAILED_REASON:
            self.dependency_failed.add(index)

    def remove(self, index: int) -> None:
        old = self.jobs.pop(index, None)
        if old is None:
            return
        claimant = _claimant(old, index)
        self.tally[claimant][_BUCKETS[old.phase]] -= 1
        self.by_claimant[claimant].discard(index)
        if not self.by_claimant[claimant]:
            del self.by_claimant[claimant], self.tally[claimant]
        self.unfinished.pop(index, None)
        self.dependency_failed.discard(index)

    def __bool__(self) -> bool:
        return bool(self.jobs)

    @classmethod
    def of(cls, jobs: Iterable[Job]) -> Named:
        named = cls()
        for job in jobs:
            found = index_in_name(job.key)
            if found is not None:
                named.put(found[1], job)
        return named


def plan(array: Job, named: Named, *, now: datetime) -> ArrayPlan:
    """The array's decision from the jobs named like its runs (see the module doc)."""
    spec = array.spec.array
    assert spec is not None
    taken = {i for claimant, indexes in named.by_claimant.items() if claimant != array.uid
             for i in indexes if i < spec.count}  # fmt: skip
    # Its dependencies (which every run copies) can never be met: no more runs are
    # created, and the array fails once the others have ended.
    hopeless = sorted(i for i in named.dependency_failed if i not in taken
                      and _claimant(named.jobs[i], i) == array.uid)  # fmt: skip
    counts = ArrayCounts.of(spec.count, named.tally.get(array.uid, {}), len(taken))
    create = next_indexes(spec, named.jobs, unfinished=counts.unfinished, taken=taken) if (
        may_create(array) and not hopeless) else []  # fmt: skip
    summary = summarise(array, counts)
    if hopeless and not counts.unfinished and not array.spec.cancelled:
        first = run_name(array.key.name, hopeless[0])
        summary = Summary(Phase.FAILED, FAILED_REASON, f"{first} failed {FAILED_REASON}: no"
                          f" further run can start ({counts.display},"
                          f" {counts.not_created} not created)")  # fmt: skip
    old = array.status
    if taken and summary.phase in (Phase.QUEUED, Phase.RUNNING):
        names = ", ".join(run_name(array.key.name, i) for i in sorted(taken)[:3])
        summary = replace(summary, message=f"{summary.message} ({NAME_TAKEN}: {names} not runs"
                                           f" of this array)")  # fmt: skip
    status = replace(
        old,
        phase=summary.phase,
        reason=summary.reason,
        message=summary.message,
        array=counts.to_raw(),
        started_at=old.started_at or (now if summary.phase == Phase.RUNNING else None),
        completed_at=old.completed_at or (now if summary.phase.terminal else None),
    )
    patches = []
    for index in sorted(named.unfinished):
        run = named.unfinished[index]
        patch = run_patch(array, run) if is_run_of(run, array) else None
        if patch is not None:
            patches.append((run.key, patch))
    return ArrayPlan(status=status, create=tuple(create), patches=tuple(patches))
