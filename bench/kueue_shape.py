"""Kueue's own scheduler-performance shape, for Shunter and for Kueue + batch/v1 Jobs,
one after the other on one local cluster (issue 26, parts 1 and 2).

    python -m bench.kueue_shape [--shape baseline|large|large-2000] [--scale F]
        [--runtime-scale S] [--peers shunter,kueue] [--kueue 50/100]

The shape is the one Kueue holds itself to in test/performance/scheduler/configs of
kubernetes-sigs/kueue (read at commit KUEUE_CONFIGS_COMMIT; numbers in SHAPES, each
with where it was read). Baseline: 5 cohorts x 6 ClusterQueues, each with nominal
quota 20, borrowing limit 100, reclaimWithinCohort Any, withinClusterQueue
LowerPriority; per queue 350 small (1 unit, 200 ms, priority 50, one every 100 ms),
100 medium (5 units, 500 ms, priority 100, one every 500 ms) and 50 large (20 units,
1 s, priority 200, one every 1.2 s) workloads: 15,000 in all.

The mapping (a unit is a GPU):

- Shunter: a TrainingQueue per ClusterQueue with `cohort`, `gpuQuota` (nominal quota),
  `borrowingLimit`, `preemption: lowerPriority` (withinClusterQueue LowerPriority) and
  `queueingStrategy: BestEffortFIFO` (Kueue's default). A queue below its gpuQuota
  reclaims what others of its cohort borrowed whatever their priority, which is
  reclaimWithinCohort Any. Its anti-loop settings are turned off, as Kueue has none:
  SHUNTER_PREEMPTION_MIN_RUN_SECONDS=0 and a preemption limit no run reaches.
  SHUNTER_MAX_RUNNING is above the quota, so only the quotas bind. Jobs are
  TrainingJobs with `spec.queue`, `spec.priority`, `spec.gpus`.
- Kueue: a ClusterQueue per queue with `cohortName`, the flavor's `nominalQuota` and
  `borrowingLimit`, `preemption` as in the config, a LocalQueue for each (all in the
  peer's namespace; Kueue's runner gives each its own namespace), a
  WorkloadPriorityClass per class (50, 100, 200). Jobs are suspended batch/v1 Jobs with
  the queue label and the priority-class label, whose Pods the Job controller creates.
- Both: kwok nodes with GPUS_PER_NODE GPUs each, enough of them that any placement of
  the whole quota leaves a node with room for the largest job (`nodes_for`), so the
  quotas bind, not the nodes; a job runs for its runtime (times --runtime-scale) from
  its Pod's start (`sim.shunter.dev/run-for`).

--probe-every N (Shunter): every N s of the run a user cancels a job still waiting, as
the API and kubectl do, and the bench times it to the job's `cancelled`; and it times
the job whose Pod it saw Succeeded last to its status `completed` (UserProbe): what a
user sees of the operator's line of writes while it is deepest. The cancelled jobs
leave the shape's figures.

Arrivals: every job is created before the peer's controller starts (Shunter's
operator, Kueue; as `bench.throughput --precreate`), so creation is not measured, in
the order of Kueue's arrival schedule (the j-th job of a class in a queue at
(j+1) x its interval, all queues at once). Job names begin with the scheduled arrival
in milliseconds, so creation timestamps (whole seconds) and, within a second, names
follow the schedule; among waiting jobs both systems take priority first. All jobs are
therefore present when the clock starts: time to admission is counted from then (the
figures Kueue's bounds are about count from each workload's creation, on its
schedule); "from its slot" subtracts the job's scheduled arrival as well.

Measured from one watch on the peer's Pods (the same for both systems):
- admission: the job's first Pod created (for Kueue this includes unsuspending the Job
  and the Job controller's create; Kueue's runner counts the Workload's admission,
  with no Pods);
- wall time: controller start to the last job's Pod Succeeded;
- queue usage: GPU-seconds held by Pods (created to ended) over the total nominal quota
  times the wall time, as Kueue's runner relates the quota reserved to the nominal
  quota; also the same for Pods from Running to ended;
- evictions: Pods of a job that ended other than Succeeded;
- the kwok floor: Pod created -> Running and Running -> Succeeded beyond the runtime;
- CPU seconds and peak RSS of the peer's controllers and of the control plane.

--runtime-scale S multiplies every runtime. As given (S=1) the 200 ms jobs are shorter
than the kwok Pod cycle (about 0.9 s of scheduling and simulated start and finish on
this machine, bench/RESULTS.md). The floor measured in the run is reported beside its
share of the shortest job: at S=25 it was under 20 % for Kueue's Pods, at S=100 23 %
for Shunter's (bench/RESULTS.md). --scale F multiplies the jobs per queue (queues,
quotas and rates unchanged).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from kubernetes import client
from tests.support.background import Background

from bench import kueue
from bench.harness import (
    REPO,
    Sampler,
    System,
    batch_job,
    percentile,
    system,
    table,
    training_job,
    write_result,
)
from bench.peers import Kueue, Peer, Shunter
from shunter.devcluster.controlplane import KWOK_POD_WORKERS
from shunter.domain.model import API_VERSION, GROUP, PLURAL, TERMINAL_PHASES, VERSION
from shunter.kube import Kube, connect
from shunter.kube.resources import TRAINING_JOBS, Resource

KUEUE_REPO = "kubernetes-sigs/kueue"
# The commit of kubernetes-sigs/kueue whose test/performance/scheduler/configs were read.
KUEUE_CONFIGS_COMMIT = "ff69552e79ad21652c36caa97038382e55625cf7"
JOBS = Resource("batch", "v1", "jobs")
ENDED = frozenset(p.value for p in TERMINAL_PHASES)  # a TrainingJob's status.phase
PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"
RUN_FOR = "sim.shunter.dev/run-for"
GPUS_PER_NODE = 64
PODS_PER_NODE = 110  # the kwok nodes' pod capacity (shunter.devcluster.nodes)
# Shunter's anti-loop protection off, as Kueue has none (module docstring).
SHUNTER_ENV = {
    "SHUNTER_PREEMPTION_MIN_RUN_SECONDS": "0",
    "SHUNTER_PREEMPTION_LIMIT": "1000000",
}


@dataclass(frozen=True)
class JobClass:
    """One workloadsSet of Kueue's generator: `count` jobs per queue, one every
    `interval_ms` (the first after one interval)."""

    name: str
    gpus: int
    runtime_ms: int
    priority: int
    count: int
    interval_ms: int


@dataclass(frozen=True)
class Shape:
    name: str
    source: str  # where in Kueue's repository it was read
    cohorts: int
    queues: int  # per cohort
    nominal_quota: int
    borrowing_limit: int
    classes: tuple[JobClass, ...]
    # Kueue's published bounds (rangespec.yaml): max wall ms, min usage %, max average
    # time to admission ms per class.
    bounds: dict[str, Any] = field(default_factory=dict)

    @property
    def queue_count(self) -> int:
        return self.cohorts * self.queues

    @property
    def total_quota(self) -> int:
        return self.queue_count * self.nominal_quota

    def per_queue(self, scale: float) -> dict[str, int]:
        return {c.name: scaled(c.count, scale) for c in self.classes}

    def jobs(self, scale: float = 1.0) -> int:
        return self.queue_count * sum(self.per_queue(scale).values())


def scaled(count: int, scale: float) -> int:
    """count x scale, rounded half up, at least 1."""
    return max(1, math.floor(count * scale + 0.5))


SMALL, MEDIUM, LARGE = "small", "medium", "large"
SHAPES = {
    "baseline": Shape(
        "baseline", f"{KUEUE_REPO}@{KUEUE_CONFIGS_COMMIT[:12]}:"
        "test/performance/scheduler/configs/baseline/{generator,rangespec}.yaml",
        cohorts=5, queues=6, nominal_quota=20, borrowing_limit=100,
        classes=(JobClass(SMALL, 1, 200, 50, 350, 100),
                 JobClass(MEDIUM, 5, 500, 100, 100, 500),
                 JobClass(LARGE, 20, 1000, 200, 50, 1200)),
        bounds={"max_wall_ms": 425_000, "min_usage_pct": 50,
                "max_avg_admission_ms": {LARGE: 23_000, MEDIUM: 90_000, SMALL: 260_000}},
    ),
    # As at the commit read (10 cohorts x 100 queues, 50,000 jobs).
    "large": Shape(
        "large", f"{KUEUE_REPO}@{KUEUE_CONFIGS_COMMIT[:12]}:"
        "test/performance/scheduler/configs/large-scale/{generator,rangespec}.yaml",
        cohorts=10, queues=100, nominal_quota=20, borrowing_limit=100,
        classes=(JobClass(SMALL, 1, 150, 50, 35, 60),
                 JobClass(MEDIUM, 5, 350, 100, 11, 300),
                 JobClass(LARGE, 20, 700, 200, 4, 700)),
        bounds={"max_wall_ms": 1_416_000, "min_usage_pct": 31.6,
                "max_avg_admission_ms": {LARGE: 128_000, MEDIUM: 308_000, SMALL: 841_000}},
    ),
    # The shape issue 26 names (20 cohorts x 100 queues, 60,000 jobs): the large-scale
    # config at an intermediate commit of Kueue's PR #11031, with placeholder bounds.
    "large-2000": Shape(
        "large-2000", f"{KUEUE_REPO}@8a23a93444:"
        "test/performance/scheduler/configs/large-scale/{generator,rangespec}.yaml",
        cohorts=20, queues=100, nominal_quota=20, borrowing_limit=100,
        classes=(JobClass(SMALL, 1, 200, 50, 20, 100),
                 JobClass(MEDIUM, 5, 500, 100, 7, 500),
                 JobClass(LARGE, 20, 1000, 200, 3, 1200)),
        bounds={"max_wall_ms": 900_000, "min_usage_pct": 33,
                "max_avg_admission_ms": {LARGE: 60_000, MEDIUM: 500_000, SMALL: 1_500_000}},
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Arrival:
    """One job of the shape: its queue, class and scheduled arrival."""

    cohort: int
    queue: int
    job_class: JobClass
    offset_ms: int

    @property
    def name(self) -> str:
        """Sorts by scheduled arrival; the class's initial after the first dash."""
        return f"j{self.offset_ms:07d}-{self.job_class.name[0]}-{self.cohort:02d}-{self.queue:03d}"

    @property
    def queue_name(self) -> str:
        return queue_name(self.cohort, self.queue)


def queue_name(cohort: int, queue: int) -> str:
    return f"ks-{cohort:02d}-{queue:03d}"


def cohort_name(cohort: int) -> str:
    return f"ks-cohort-{cohort:02d}"


def class_of(job: str, shape: Shape) -> JobClass:
    initial = job.split("-")[1]
    return next(c for c in shape.classes if c.name[0] == initial)


def arrivals(shape: Shape, scale: float = 1.0) -> list[Arrival]:
    """Every job of the shape in the order of its schedule (its names' order)."""
    out = [
        Arrival(c, q, job_class, (j + 1) * job_class.interval_ms)
        for c in range(shape.cohorts)
        for q in range(shape.queues)
        for job_class in shape.classes
        for j in range(scaled(job_class.count, scale))
    ]
    out.sort(key=lambda a: a.name)  # by scheduled arrival, ties by class and queue
    return out


def run_for(job_class: JobClass, runtime_scale: float) -> str:
    return f"{round(job_class.runtime_ms * runtime_scale)}ms"


def nodes_for(shape: Shape, gpus_per_node: int = GPUS_PER_NODE) -> int:
    """kwok nodes enough that the quotas bind, not the nodes: with the whole quota
    placed anyhow, some node still has room for the largest job (each node filled to
    one GPU short of it holds less than the quota), and the 1-GPU jobs fit the nodes'
    pod capacity."""
    largest = max(c.gpus for c in shape.classes)
    if largest > gpus_per_node:
        raise ValueError(f"a {largest}-GPU job does not fit a {gpus_per_node}-GPU node")
    by_gpus = shape.total_quota // (gpus_per_node - largest + 1) + 1
    by_pods = math.ceil(shape.total_quota / (PODS_PER_NODE - 10)) + 1
    return max(by_gpus, by_pods)


# -- the queues of each system -------------------------------------------------------


def shunter_queues(shape: Shape) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API_VERSION,
            "kind": "TrainingQueue",
            "metadata": {"name": queue_name(c, q)},
            "spec": {
                "cohort": cohort_name(c),
                "gpuQuota": shape.nominal_quota,
                "borrowingLimit": shape.borrowing_limit,
                "preemption": "lowerPriority",
                "queueingStrategy": "BestEffortFIFO",
            },
        }
        for c in range(shape.cohorts)
        for q in range(shape.queues)
    ]


def kueue_manifests(shape: Shape, namespace: str) -> list[dict[str, Any]]:
    """A ResourceFlavor, a WorkloadPriorityClass per class, and per queue a ClusterQueue
    (cohort, nominal quota, borrowing limit, preemption as Kueue's config) with a
    LocalQueue of its name in `namespace`."""
    api_version = f"{kueue.GROUP}/{kueue.VERSION}"
    out: list[dict[str, Any]] = [
        {"apiVersion": api_version, "kind": "ResourceFlavor", "metadata": {"name": kueue.FLAVOR}}
    ]
    out += [
        {"apiVersion": api_version, "kind": "WorkloadPriorityClass",
         "metadata": {"name": priority_class(job_class)}, "value": job_class.priority}
        for job_class in shape.classes
    ]  # fmt: skip
    for c in range(shape.cohorts):
        for q in range(shape.queues):
            name = queue_name(c, q)
            quota = {"name": kueue.GPU, "nominalQuota": shape.nominal_quota,
                     "borrowingLimit": shape.borrowing_limit}  # fmt: skip
            out.append({
                "apiVersion": api_version, "kind": "ClusterQueue", "metadata": {"name": name},
                "spec": {
                    "cohortName": cohort_name(c),
                    "namespaceSelector": {},
                    "resourceGroups": [{"coveredResources": [kueue.GPU],
                                        "flavors": [{"name": kueue.FLAVOR,
                                                     "resources": [quota]}]}],
                    "preemption": {"reclaimWithinCohort": "Any",
                                   "withinClusterQueue": "LowerPriority"},
                },
            })  # fmt: skip
            out.append({"apiVersion": api_version, "kind": "LocalQueue",
                        "metadata": {"name": name, "namespace": namespace},
                        "spec": {"clusterQueue": name}})  # fmt: skip
    return out


def priority_class(job_class: JobClass) -> str:
    return f"ks-{job_class.name}"


def shunter_job(arrival: Arrival, runtime_scale: float) -> dict[str, Any]:
    job_class = arrival.job_class
    body = training_job(arrival.name, gpus=job_class.gpus,
                        annotations={RUN_FOR: run_for(job_class, runtime_scale)})  # fmt: skip
    body["spec"]["queue"] = arrival.queue_name
    body["spec"]["priority"] = job_class.priority
    return body


def kueue_job(arrival: Arrival, runtime_scale: float) -> dict[str, Any]:
    job_class = arrival.job_class
    labels = {
        kueue.QUEUE_LABEL: arrival.queue_name,
        PRIORITY_CLASS_LABEL: priority_class(job_class),
    }
    return batch_job(arrival.name, gpus=job_class.gpus, labels=labels, suspend=True,
                     annotations={RUN_FOR: run_for(job_class, runtime_scale)})  # fmt: skip


# -- the peers -----------------------------------------------------------------------


class ShapePeer(Peer):
    """A peer that runs the shape: `body` is a job's object, `resource` its kind."""

    resource = TRAINING_JOBS

    def body(self, arrival: Arrival, runtime_scale: float) -> dict[str, Any]:
        raise NotImplementedError


class ShunterShape(Shunter, ShapePeer):
    name, key = "Shunter", "shunter"
    resource = TRAINING_JOBS

    def __init__(self, s: System, namespace: str, shape: Shape,
                 extra_env: dict[str, str] | None = None) -> None:  # fmt: skip
        env = {"SHUNTER_MAX_RUNNING": str(shape.total_quota + 1), **SHUNTER_ENV}
        env |= extra_env or {}
        super().__init__(s, namespace, env)
        self.shape = shape

    def setup(self, *, gpus: int, held: bool = False) -> None:
        self.s.plane.apply(shunter_queues(self.shape))
        super().setup(gpus=gpus, held=held)

    def body(self, arrival: Arrival, runtime_scale: float) -> dict[str, Any]:
        return shunter_job(arrival, runtime_scale)

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            self.s.plane.kubectl("delete", "trainingqueue", "--all", "--ignore-not-found")


class KueueShape(Kueue, ShapePeer):
    resource = JOBS

    def __init__(self, s: System, namespace: str, settings: kueue.Settings, shape: Shape) -> None:
        super().__init__(s, namespace, settings)
        self.name = f"Kueue + batch/v1 Jobs ({settings.label})"
        self.key = "kueue"
        self.shape = shape

    def manifests(self, gpus: int) -> list[dict[str, Any]]:
        return kueue_manifests(self.shape, self.namespace)

    def cluster_queues(self) -> list[str]:
        return [queue_name(c, q) for c in range(self.shape.cohorts)
                for q in range(self.shape.queues)]  # fmt: skip

    def body(self, arrival: Arrival, runtime_scale: float) -> dict[str, Any]:
        return kueue_job(arrival, runtime_scale)


def create_all(s: System, peer: ShapePeer, jobs: list[Arrival], runtime_scale: float,
               concurrency: int = 16) -> float:  # fmt: skip
    """Create the jobs in schedule order, `concurrency` creates in flight; return the
    seconds it took."""

    async def run() -> None:
        kube = Kube(connect(s.plane.kubeconfig))
        pending = iter(jobs)

        async def worker() -> None:
            for arrival in pending:
                body = peer.body(arrival, runtime_scale)
                await kube.create(peer.resource, body, namespace=peer.namespace)

        try:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        finally:
            await kube.close()

    begin = time.monotonic()
    asyncio.run(run())
    return time.monotonic() - begin


# -- the watch -----------------------------------------------------------------------


@dataclass
class PodRecord:
    job: str
    gpus: int
    added: float
    scheduled: float | None = None  # spec.nodeName first seen (kube-scheduler's bind)
    running: float | None = None
    ended: float | None = None
    succeeded: bool = False


class PodWatch:
    """Every Pod of a namespace by uid (Shunter reuses a job's Pod name for its next
    run): when it was first seen, Running, and ended (Succeeded, Failed or deleted).
    Raw JSON lines, not the client's models: 15,000 jobs' events cost the bench little."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.pods: dict[str, PodRecord] = {}
        self.done: dict[str, float] = {}  # job -> its Pod Succeeded
        self.jobs: set[str] = set()  # jobs with a Pod seen
        self._lock = threading.Lock()
        self._thread = Background(self._watch, name="pod watch")

    def start(self) -> PodWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop(join=False)

    def _seen(self, kind: str, pod: dict[str, Any], now: float) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        uid, phase = meta["uid"], status.get("phase")
        with self._lock:
            record = self.pods.get(uid)
            if record is None:
                if kind == "DELETED":
                    return
                limits = pod["spec"]["containers"][0].get("resources", {}).get("limits", {})
                job = meta.get("labels", {}).get("job-name") or meta["name"].rsplit("-", 1)[0]
                record = PodRecord(job, int(limits.get(kueue.GPU, 0)), now)
                self.pods[uid] = record
                self.jobs.add(job)
            if record.ended is not None:
                return
            if record.scheduled is None and pod["spec"].get("nodeName"):
                record.scheduled = now
            if phase == "Running" and record.running is None and kind != "DELETED":
                record.running = now
            if kind == "DELETED" or phase in ("Succeeded", "Failed"):
                record.ended = now
                if phase == "Succeeded":
                    record.succeeded = True
                    self.done.setdefault(record.job, now)

    def _watch(self, stop: threading.Event) -> None:
        version = ""
        while not stop.is_set():
            if not version:
                listed: Any = self.core.list_namespaced_pod(self.namespace, _preload_content=False)
                body = json.loads(listed.data)
                now = time.monotonic()
                for pod in body["items"]:
                    self._seen("LISTED", pod, now)
                version = body["metadata"]["resourceVersion"]
            response: Any = self.core.list_namespaced_pod(
                self.namespace, watch=True, resource_version=version, timeout_seconds=60,
                allow_watch_bookmarks=True, _preload_content=False,
            )  # fmt: skip
            try:
                for line in response:
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event["type"] == "ERROR":
                        version = ""  # too old: list again
                        break
                    version = event["object"]["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._seen(event["type"], event["object"], time.monotonic())
                    if stop.is_set():
                        return
            finally:
                response.release_conn()

    def count_done(self) -> int:
        with self._lock:
            return len(self.done)

    def has_pod(self, job: str) -> bool:
        with self._lock:
            return job in self.jobs

    def latest_done(self) -> tuple[str, float] | None:
        """The job whose Pod was seen Succeeded last, and when."""
        with self._lock:
            return next(reversed(self.done.items()), None)

    def snapshot(self) -> tuple[list[PodRecord], dict[str, float]]:
        with self._lock:
            return [PodRecord(**vars(r)) for r in self.pods.values()], dict(self.done)


# -- a user's cancel during the run -------------------------------------------------


@dataclass
class Sample:
    """One job a user looks at: a cancel sent, or a Pod seen Succeeded."""

    job: str
    at: float  # seconds from the controller's start: the cancel sent, the Pod seen done
    answered: float | None = None  # a cancel's PATCH answered, seconds after `at`
    ended: float | None = None  # the job's status seen ended, seconds after `at`
    phase: str | None = None  # the ended phase seen
    poll_at: float = 0.0  # monotonic: when to look at the job again


class UserProbe:
    """What a user sees during the run, every `every` s:

    - a cancel: a user cancels a job still waiting (the latest arrival with no Pod
      yet) as the API and kubectl do (`spec.cancelled: true`); timed until the job's
      status says it ended;
    - a finish: the job whose Pod the bench saw Succeeded last; timed from then until
      its status says `completed`.

    Each job is looked at (GET) at most every POLL s, and less often as its wait grows
    (a tenth of it: an error of at most 10 %), so that waits of minutes do not load the
    API server. Cancelled jobs leave the shape's figures."""

    POLL = 0.2
    LIMIT = 1800.0  # a job not ended by then is reported as not ended

    def __init__(self, api: client.ApiClient, namespace: str, jobs: list[Arrival],
                 watch: PodWatch, every: float, start: float) -> None:  # fmt: skip
        self.custom = client.CustomObjectsApi(api)
        self.namespace, self.watch, self.every, self.start = namespace, watch, every, start
        self._candidates = [a.name for a in reversed(jobs)]  # latest arrivals first
        self.cancels: list[Sample] = []
        self.finishes: list[Sample] = []
        self._lock = threading.Lock()
        self._thread = Background(self._run, name="user probe")

    def begin(self) -> UserProbe:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop(join=True)

    @property
    def probed(self) -> set[str]:
        """The jobs cancelled."""
        with self._lock:
            return {c.job for c in self.cancels}

    def not_to_finish(self) -> int:
        """Cancelled jobs that ended without their Pod succeeding (not counted as done)."""
        with self._lock:
            return sum(c.ended is not None and c.job not in self.watch.done
                       for c in self.cancels)  # fmt: skip

    def _pick(self) -> str | None:
        while self._candidates:
            name = self._candidates.pop(0)
            if not self.watch.has_pod(name):
                return name
        return None

    def _cancel(self, now: float) -> None:
        name = self._pick()
        if name is None:
            return
        sample = Sample(name, now - self.start, poll_at=now)
        with self._lock:
            self.cancels.append(sample)
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, name, {"spec": {"cancelled": True}}
        )
        sample.answered = time.monotonic() - now

    def _finish(self) -> None:
        latest = self.watch.latest_done()
        if latest is None or any(f.job == latest[0] for f in self.finishes[-3:]):
            return
        name, seen = latest
        with self._lock:
            self.finishes.append(Sample(name, seen - self.start, poll_at=seen))

    def _look(self, sample: Sample, now: float) -> None:
        since = now - self.start - sample.at
        if since > self.LIMIT or now < sample.poll_at:
            return
        sample.poll_at = now + max(self.POLL, since / 10)
        body: Any = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, sample.job
        )
        phase = (body.get("status") or {}).get("phase")
        if phase in ENDED:
            sample.ended, sample.phase = time.monotonic() - self.start - sample.at, phase

    def _run(self, stop: threading.Event) -> None:
        next_at = time.monotonic() + self.every
        while not stop.wait(self.POLL):
            now = time.monotonic()
            if now >= next_at:
                next_at = now + self.every
                self._cancel(now)
                self._finish()
            for sample in [s for s in (*self.cancels, *self.finishes) if s.ended is None]:
                self._look(sample, time.monotonic())

    def figures(self) -> dict[str, Any]:
        with self._lock:
            taken = {"cancel": [Sample(**vars(c)) for c in self.cancels],
                     "finish": [Sample(**vars(f)) for f in self.finishes]}  # fmt: skip
        out: dict[str, Any] = {"every_s": self.every}
        for kind, samples in taken.items():
            ended = [c.ended for c in samples if c.ended is not None]
            out[kind] = {
                "count": len(samples),
                "ended": len(ended),
                "ended_p50_p99_s": _p50_p99(ended),
                "ended_max_s": max(ended, default=None),
                "samples": [vars(c) for c in samples],
            }
        answers = [c.answered for c in taken["cancel"] if c.answered is not None]
        out["cancel"]["answered_p50_p99_s"] = _p50_p99(answers)
        return out


# -- figures -------------------------------------------------------------------------


def _p50_p99(values: list[float]) -> list[float] | None:
    return [percentile(values, 50), percentile(values, 99)] if values else None


def figures(shape: Shape, jobs: list[Arrival], pods: list[PodRecord], done: dict[str, float],
            start: float, end: float, runtime_scale: float) -> dict[str, Any]:  # fmt: skip
    """Per class time to admission, usage, evictions, the kwok floor (module docstring)."""
    first: dict[str, float] = {}
    evictions: Counter[str] = Counter()
    for pod in pods:
        first[pod.job] = min(first.get(pod.job, math.inf), pod.added)
        if pod.ended is not None and not pod.succeeded:
            evictions[pod.job] += 1
    wall = end - start
    per_class: dict[str, Any] = {}
    for job_class in shape.classes:
        mine = [a for a in jobs if a.job_class is job_class]
        waits = [first[a.name] - start for a in mine if a.name in first]
        from_slot = [first[a.name] - start - a.offset_ms / 1000 for a in mine if a.name in first]
        runtime = job_class.runtime_ms * runtime_scale / 1000
        floor = [p.ended - p.running - runtime for p in pods if p.succeeded and p.running
                 and class_of(p.job, shape) is job_class and p.ended]  # fmt: skip
        per_class[job_class.name] = {
            "jobs": len(mine),
            "admitted": len(waits),
            "completed": sum(a.name in done for a in mine),
            "avg_admission_s": sum(waits) / len(waits) if waits else None,
            "p50_admission_s": percentile(waits, 50) if waits else None,
            "p99_admission_s": percentile(waits, 99) if waits else None,
            "avg_admission_from_slot_s": sum(from_slot) / len(from_slot) if from_slot else None,
            "evictions": sum(evictions[a.name] for a in mine),
            "runtime_s": runtime,
            "running_to_succeeded_beyond_runtime_p50_s": percentile(floor, 50) if floor else None,
        }
    starts = [p.running - p.added for p in pods if p.running is not None]
    # The floor's two halves: kube-scheduler's bind, then kwok's Running.
    binds = [p.scheduled - p.added for p in pods if p.scheduled is not None]
    plays = [p.running - p.scheduled for p in pods
             if p.running is not None and p.scheduled is not None]  # fmt: skip
    available = shape.total_quota * wall

    def used(since_running: bool) -> float:
        total = 0.0
        for p in pods:
            begin = p.running if since_running else p.added
            if begin is None:
                continue
            total += p.gpus * max(0.0, min(p.ended if p.ended is not None else end, end) - begin)
        return total

    floor_p50 = percentile(starts, 50) if starts else math.nan
    beyond = [c["running_to_succeeded_beyond_runtime_p50_s"] for c in per_class.values()]
    kwok_floor = floor_p50 + max((b for b in beyond if b is not None), default=0.0)
    shortest = min(c.runtime_ms for c in shape.classes) * runtime_scale / 1000
    return {
        "wall_s": wall,
        "classes": per_class,
        "usage_held": used(False) / available if available else None,
        "usage_running": used(True) / available if available else None,
        "pods": len(pods),
        "pod_created_to_running_p50_s": floor_p50,
        "pod_created_to_running_p99_s": percentile(starts, 99) if starts else None,
        "pod_created_to_bound_p50_p99_s": _p50_p99(binds),
        "pod_bound_to_running_p50_p99_s": _p50_p99(plays),
        "kwok_floor_s": kwok_floor,
        "kwok_floor_share_of_shortest_job": kwok_floor / shortest if shortest else None,
    }


def measure(s: System, peer: ShapePeer, shape: Shape, jobs: list[Arrival], runtime_scale: float,
            timeout: float, stop_at: float | None = None,
            probe_every: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """One peer's run; it is stopped `timeout` s after its controller started or at
    `stop_at` (Unix time), whichever comes first, and then reported as not finished.
    `probe_every` > 0 (Shunter only): a UserProbe during the run."""
    peer.setup(gpus=shape.total_quota, held=True)
    watch = PodWatch(s.api, peer.namespace).start()
    print(f"bench: {peer.name}: creating {len(jobs)} jobs", file=sys.stderr)
    created = create_all(s, peer, jobs, runtime_scale)
    print(f"bench: {peer.name}: {len(jobs)} jobs created in {created:.0f}s", file=sys.stderr)
    start = time.monotonic()
    fresh = peer.start()
    sampler = Sampler({**peer.controllers(), **s.control_plane_pids()}, fresh=fresh)
    deadline = start + timeout
    if stop_at is not None:
        deadline = min(deadline, start + stop_at - time.time())
    probe = None
    if probe_every > 0 and isinstance(peer, ShunterShape):
        probe = UserProbe(s.api, peer.namespace, jobs, watch, probe_every, start).begin()

    def to_do() -> int:
        return len(jobs) - (probe.not_to_finish() if probe is not None else 0)

    last = 0.0
    while (done := watch.count_done()) < to_do() and time.monotonic() < deadline:
        time.sleep(1)
        if time.monotonic() - last >= 30:
            last = time.monotonic()
            print(f"bench: {peer.name}: {last - start:.0f}s, {done}/{len(jobs)} done",
                  file=sys.stderr)  # fmt: skip
    finished = done >= to_do()
    if probe is not None:
        probe.stop()
    pods, done_at = watch.snapshot()
    end = max(done_at.values()) if finished else time.monotonic()
    usage = sampler.stop()
    watch.stop()
    for numbers in usage.values():
        numbers["core_share"] = numbers["cpu_seconds"] / max(end - start, 1e-9)
    probed = probe.probed if probe is not None else set()
    result = figures(shape, [a for a in jobs if a.name not in probed],
                     [p for p in pods if p.job not in probed],
                     {j: t for j, t in done_at.items() if j not in probed},
                     start, end, runtime_scale)  # fmt: skip
    if probe is not None:
        result["user_probe"] = probe.figures()
    result |= {
        "finished": finished,
        "completed": len(done_at),
        "create_s": created,
        "processes": usage,
        "controllers": sorted(peer.controllers()),
    }
    if not finished:
        result["note"] = f"stopped after {end - start:.0f}s with {len(done_at)}/{len(jobs)} done"
    return result


def repo_commit() -> str:
    done = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False)  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "bench"],
                           capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return done.stdout.strip() + ("+dirty" if dirty else "")


def rows(results: dict[str, Any], shape: Shape) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    bounds = shape.bounds.get("max_avg_admission_ms", {})
    for r in results.values():
        name = r["name"]
        if "skipped" in r:
            out.append((f"{name}: run", f"skipped ({r['skipped']})"))
            continue
        state = "finished" if r["finished"] else f"NOT finished ({r.get('note')})"
        out.append((f"{name}: run", state))
        out.append((f"{name}: wall s (Kueue bound {shape.bounds.get('max_wall_ms', 0) / 1000:g})",
                    r["wall_s"]))  # fmt: skip
        out.append((f"{name}: queue usage held / running (Kueue min "
                    f"{shape.bounds.get('min_usage_pct')} %)",
                    f"{r['usage_held']:.1%} / {r['usage_running']:.1%}"))  # fmt: skip
        for cls, c in r["classes"].items():
            avg, p99 = c["avg_admission_s"], c["p99_admission_s"]
            shown = "-" if avg is None else f"{avg:.1f} / {p99:.1f}"
            out.append((f"{name}: {cls} admission avg / p99 s (Kueue bound "
                        f"{bounds.get(cls, 0) / 1000:g})", shown))  # fmt: skip
            counts = f"{c['admitted']}/{c['completed']} of {c['jobs']}, {c['evictions']}"
            out.append((f"{name}: {cls} admitted / completed / evictions", counts))
        floor = f"{r['kwok_floor_s']:.2f} ({r['kwok_floor_share_of_shortest_job']:.0%})"
        out.append((f"{name}: kwok floor s (share of the shortest job)", floor))
        halves = (("created -> bound (kube-scheduler)", "pod_created_to_bound_p50_p99_s"),
                  ("bound -> Running (kwok)", "pod_bound_to_running_p50_p99_s"))  # fmt: skip
        for what, key in halves:
            pair = r.get(key)
            shown = "-" if not pair else f"{pair[0]:.2f} / {pair[1]:.2f}"
            out.append((f"{name}: Pod {what} p50 / p99 s", shown))
        out.append((f"{name}: jobs created in s", r["create_s"]))
        if (probe := r.get("user_probe")) is not None:
            for kind, what in (("cancel", "a waiting job's cancel -> ended"),
                               ("finish", "Pod Succeeded -> job `completed`")):  # fmt: skip
                p = probe[kind]
                pair = p["ended_p50_p99_s"]
                shown = (
                    "-"
                    if not pair
                    else f"{pair[0]:.2f} / {pair[1]:.2f}, max {p['ended_max_s']:.2f}"
                )
                out.append((f"{name}: {what} p50 / p99 s ({p['ended']} of {p['count']} seen)",
                            shown))  # fmt: skip
        for process, numbers in r["processes"].items():
            if process in (*r["controllers"], "kube-apiserver", "etcd", "other processes") or (
                process.endswith(" child")  # the operator's planner
            ):
                out.append((f"{name}: {process} CPU s (cores), peak RSS MiB",
                            f"{numbers['cpu_seconds']:.0f} ({numbers['core_share']:.2f}), "
                            f"{numbers['peak_rss_mib']:.0f}"))  # fmt: skip
    return out


def stop_time(text: str) -> float | None:
    """HH:MM UTC today (or tomorrow, if past) as a Unix time; "" for none."""
    if not text:
        return None
    now = datetime.now(UTC)
    hours, minutes = (int(part) for part in text.split(":"))
    at = now.replace(hour=hours, minute=minutes, second=0, microsecond=0)
    return (at if at > now else at + timedelta(days=1)).timestamp()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="baseline")
    parser.add_argument("--scale", type=float, default=1.0, help="x the jobs per queue")
    parser.add_argument("--runtime-scale", type=float, default=1.0, help="x every runtime")
    parser.add_argument("--peers", default="shunter,kueue", help="shunter, kueue or both")
    parser.add_argument("--kueue", default="50/100",
                        help="Kueue client QPS/burst (as its manifests)")  # fmt: skip
    parser.add_argument("--kcm-qps", type=int, default=0,
                        help="kube-controller-manager QPS (default 20)")  # fmt: skip
    parser.add_argument("--operator-env", default="",
                        help="K=V,K=V: more Shunter operator settings (a variant)")  # fmt: skip
    parser.add_argument("--gpus-per-node", type=int, default=GPUS_PER_NODE)
    parser.add_argument("--nodes", type=int, default=0,
                        help="kwok nodes (default: enough that quotas bind)")  # fmt: skip
    parser.add_argument("--node-lease-seconds", type=int, default=40,
                        help="kwok nodes' Lease duration (kwok renews within it)")  # fmt: skip
    parser.add_argument("--node-status-seconds", type=int, default=60,
                        help="kwok node status refresh (to 7/6 of it)")  # fmt: skip
    parser.add_argument("--kwok-pod-workers", type=int, default=KWOK_POD_WORKERS,
                        help="Pod stage changes kwok applies at once")  # fmt: skip
    parser.add_argument("--timeout-minutes", type=float, default=90.0,
                        help="per peer: report what finished by then")  # fmt: skip
    parser.add_argument("--stop-at", default="",
                        help="HH:MM UTC: a peer running then is reported unfinished")  # fmt: skip
    parser.add_argument("--probe-every", type=float, default=0.0,
                        help="Shunter: time a cancel and a finish every N s")  # fmt: skip
    parser.add_argument("--name", default="", help="result file name (default from the args)")
    args = parser.parse_args()
    shape = SHAPES[args.shape]
    jobs = arrivals(shape, args.scale)
    nodes = max(args.nodes, nodes_for(shape, args.gpus_per_node))
    settings = kueue.Settings.parse(args.kueue)
    wanted = [w.strip() for w in args.peers.split(",") if w.strip()]
    commit = repo_commit()
    extra_env = dict(kv.split("=", 1) for kv in args.operator_env.split(",") if kv)
    name = args.name or (f"kueue-shape-{shape.name}-x{args.scale:g}-rt{args.runtime_scale:g}"
                         + (f"-n{nodes}" if args.nodes else ""))  # fmt: skip
    cluster = os.environ.get("SHUNTER_BENCH_CLUSTER", "kshape")
    results: dict[str, Any] = {}
    result: dict[str, Any] = {
        "shape": shape.name, "source": shape.source, "scale": args.scale,
        "runtime_scale": args.runtime_scale, "jobs": len(jobs),
        "per_queue": shape.per_queue(args.scale), "queues": shape.queue_count,
        "nodes": nodes, "gpus_per_node": args.gpus_per_node, "commit": commit,
        "node_lease_seconds": args.node_lease_seconds,
        "node_status_seconds": args.node_status_seconds,
        "kwok_pod_workers": args.kwok_pod_workers,
        "shunter_env": {**SHUNTER_ENV, **extra_env},
        "kueue": {"version": kueue.version(), "settings": settings.label,
                  "kube_controller_manager_qps": args.kcm_qps or "default (20, burst 30)"},
        "kueue_bounds": shape.bounds, "peers": results,
    }  # fmt: skip
    print(f"bench: {shape.name} x{args.scale:g}: {len(jobs)} jobs in {shape.queue_count} "
          f"queues, {nodes} nodes of {args.gpus_per_node} GPUs, runtimes x{args.runtime_scale:g}",
          file=sys.stderr)  # fmt: skip
    with system(nodes=nodes, gpus_per_node=args.gpus_per_node, with_operator=False,
                name=cluster, node_lease_seconds=args.node_lease_seconds,
                node_status_seconds=args.node_status_seconds,
                kwok_pod_workers=args.kwok_pod_workers) as s:  # fmt: skip
        if args.kcm_qps:
            s.set_controller_manager_qps(args.kcm_qps)
        peers: dict[str, ShapePeer] = {
            "shunter": ShunterShape(s, "bench-shape-shunter", shape, extra_env),
            "kueue": KueueShape(s, "bench-shape-kueue", settings, shape),
        }
        chosen = [peers[w] for w in wanted]
        stop_at = stop_time(args.stop_at)
        for index, peer in enumerate(chosen):
            if stop_at is not None and time.time() > stop_at - 600:
                # Too late to create the jobs and measure anything: say so instead.
                results[peer.key] = {"name": peer.name, "skipped": "less than 10 min to --stop-at"}
                break
            try:
                figures_ = measure(s, peer, shape, jobs, args.runtime_scale,
                                   args.timeout_minutes * 60, stop_at,
                                   probe_every=args.probe_every)  # fmt: skip
                results[peer.key] = {"name": peer.name, **figures_}
                write_result(name, result)  # kept even if a later peer fails
            finally:
                if index < len(chosen) - 1:
                    peer.teardown()
                elif isinstance(peer, KueueShape):  # the cluster goes anyway
                    peer.process.stop()
                else:
                    s.stop_services()
    table(f"Kueue's {shape.name} shape x{args.scale:g} ({len(jobs)} jobs), runtimes "
          f"x{args.runtime_scale:g}, commit {commit}", rows(results, shape))  # fmt: skip
    print(f"\nwrote {write_result(name, result)}")


if __name__ == "__main__":
    main()
