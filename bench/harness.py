"""Shared bench machinery: a dedicated local cluster, the system under test, watches
that timestamp Pod events, percentiles, process sampling, and result files.

Benchmarks print figures; they are not tests and assert nothing about speed.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import shutil
import ssl
import statistics
import sys
import threading
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil
from kubernetes import client, config, watch
from tests.support.background import Background

from shunter.devcluster import demo, processes
from shunter.devcluster.controlplane import (
    KWOK_POD_WORKERS,
    ClusterSpec,
    ControlPlane,
    default_state_dir,
)
from shunter.devcluster.postgres import LocalPostgres
from shunter.domain.model import API_VERSION, GROUP, KIND, PLURAL, VERSION
from shunter.kube import Kube, connect
from shunter.kube.resources import TRAINING_JOBS

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "mean": statistics.fmean(values) if values else float("nan"),
        "max": max(values, default=float("nan")),
    }


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(
        json.dumps({"bench": name, "machine": machine(), **result}, indent=2, default=str)
    )
    return path


def table(title: str, rows: list[tuple[str, Any]]) -> None:
    print(f"\n{title}")
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        print(f"  {key:<{width}}  {shown}")


def job_of(pod: str) -> str:
    """The job a Pod belongs to, from its name: Shunter's `<job>-trainer`, the Job
    controller's `<job>-<suffix>`."""
    return pod.rsplit("-", 1)[0]


class PodClock:
    """Watches Pods in a namespace and records when each was added, ran, and went away;
    also per job (job_of), the first time one of its Pods did, so a wait for N jobs is
    a count, not a scan."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.added: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self.job_added: dict[str, float] = {}
        self.job_finished: dict[str, float] = {}
        self._changed = threading.Condition()
        self._thread = Background(self._watch, name="pod clock")

    def start(self) -> PodClock:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop(join=False)

    def _watch(self, stop: threading.Event) -> None:
        version = self.core.list_namespaced_pod(self.namespace).metadata.resource_version
        while not stop.is_set():
            stream = watch.Watch()
            for event in stream.stream(
                self.core.list_namespaced_pod,
                self.namespace,
                resource_version=version,
                timeout_seconds=60,
            ):
                now = time.monotonic()
                pod = event["object"]
                name = pod.metadata.name
                version = pod.metadata.resource_version
                with self._changed:
                    if event["type"] == "ADDED":
                        self.added.setdefault(name, now)
                        self.job_added.setdefault(job_of(name), now)
                    if event["type"] == "DELETED":
                        self.deleted[name] = now
                    elif pod.status.phase == "Running":
                        self.running.setdefault(name, now)
                    elif pod.status.phase in ("Succeeded", "Failed"):
                        self.finished.setdefault(name, now)
                        self.job_finished.setdefault(job_of(name), now)
                    self._changed.notify_all()
                if stop.is_set():
                    return

    def snapshot(self) -> dict[str, dict[str, float]]:
        """Copies of the records, taken under the watcher's lock."""
        with self._changed:
            names = ("added", "running", "finished", "deleted", "job_added", "job_finished")
            return {name: dict(getattr(self, name)) for name in names}

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"bench: timed out waiting for {what}")
                self._changed.wait(min(left, 1.0))


def _busy() -> float:
    """CPU seconds the whole machine has been busy (all cores)."""
    times = psutil.cpu_times()
    guest = getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)  # inside user
    return float(sum(times) - times.idle - getattr(times, "iowait", 0.0) - guest)


@dataclass
class Sampler:
    """Samples CPU time and RSS of processes (by pid) every `interval` seconds, and of
    their child processes (the operator's planner: "shunter-operator child"), each
    counted from when it was first seen (from 0 for a fresh process's children)."""

    pids: dict[str, int]
    interval: float = 0.25
    # Processes started at the moment measured from: all their CPU time counts.
    fresh: tuple[str, ...] = ()
    peak_rss: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    # Per parent's name: each child's CPU seconds when first and last seen.
    children: dict[str, dict[int, list[float]]] = field(default_factory=lambda: defaultdict(dict))

    def __post_init__(self) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in self.pids.items()}
        self.cpu_start = {
            n: 0.0 if n in self.fresh else sum(p.cpu_times()[:2]) for n, p in self.procs.items()
        }
        self.me = psutil.Process()
        self.me_start = sum(self.me.cpu_times()[:2])
        self.machine_start = _busy()
        self.thread = Background.every(self.interval, self._sample, name="sampler").start()

    def _sample(self) -> None:
        for name, proc in self.procs.items():
            with suppress(psutil.Error):
                self.peak_rss[name] = max(self.peak_rss[name], proc.memory_info().rss)
                rss = 0
                for child in proc.children(recursive=True):
                    with suppress(psutil.Error):
                        cpu = sum(child.cpu_times()[:2])
                        rss += child.memory_info().rss
                        seen = self.children[name].setdefault(
                            child.pid, [0.0 if name in self.fresh else cpu, cpu]
                        )
                        seen[1] = cpu
                label = f"{name} child"
                self.peak_rss[label] = max(self.peak_rss[label], rss)

    def rss(self, name: str) -> int:
        return int(self.procs[name].memory_info().rss)

    def stop(self) -> dict[str, dict[str, float]]:
        """CPU seconds and peak RSS per process, plus this bench process and, as
        `other processes`, the rest of the machine's busy CPU time (other work on a
        shared machine, which the figures should be read with)."""
        self.thread.stop()
        usage = {
            name: {
                "cpu_seconds": sum(proc.cpu_times()[:2]) - self.cpu_start[name],
                "peak_rss_mib": self.peak_rss[name] / 2**20,
            }
            for name, proc in self.procs.items()
        }
        for name, seen in self.children.items():
            usage[f"{name} child"] = {
                "cpu_seconds": sum(last - first for first, last in seen.values()),
                "peak_rss_mib": self.peak_rss[f"{name} child"] / 2**20,
            }
        bench = sum(self.me.cpu_times()[:2]) - self.me_start
        usage["bench client"] = {
            "cpu_seconds": bench,
            "peak_rss_mib": self.me.memory_info().rss / 2**20,
        }
        machine = _busy() - self.machine_start
        known = sum(u["cpu_seconds"] for u in usage.values())
        usage["other processes"] = {"cpu_seconds": max(0.0, machine - known), "peak_rss_mib": 0.0}
        return usage


CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")


@dataclass
class System:
    plane: ControlPlane
    api: client.ApiClient
    namespace: str
    base_url: str
    state: Path
    database_url: str
    env: dict[str, str] = field(default_factory=dict)
    operator_env: dict[str, str] = field(default_factory=dict)
    api_env: dict[str, str] = field(default_factory=dict)

    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def pid(self, name: str) -> int:
        return int((self.state / "pids" / f"{name}.pid").read_text().split()[0])

    def control_plane_pids(self) -> dict[str, int]:
        return {name: self.pid(name) for name in CONTROL_PLANE}

    def set_controller_manager_qps(self, qps: int) -> None:
        """Restart kube-controller-manager with --kube-api-qps=qps and a burst of twice
        that (its defaults are 20 and 30; its Job controller has its own client)."""
        name = "kube-controller-manager"
        recorded = json.loads((self.state / "pids" / f"{name}.argv").read_text())
        argv = [a for a in recorded["argv"] if not a.startswith("--kube-api-")]
        argv += [f"--kube-api-qps={qps}", f"--kube-api-burst={2 * qps}"]
        processes.stop(name, state_dir=self.state)
        processes.start(name, argv, state_dir=self.state, env=recorded["env"])
        # It serves /healthz with a self-signed certificate made at start-up.
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        url = f"https://127.0.0.1:{self.plane.ports().controller_manager}/healthz"
        deadline = time.monotonic() + 120
        while True:
            with (
                suppress(OSError),
                urllib.request.urlopen(url, timeout=2, context=context) as response,
            ):
                if response.status == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"bench: {name} not healthy after a restart")
            time.sleep(0.25)

    def stop_services(self) -> None:
        """Stop Shunter's operator and API (the cluster stays up)."""
        demo.stop_services(self.state)

    def start_services(
        self,
        *,
        namespace: str | None = None,
        operator_env: dict[str, str] | None = None,
        with_operator: bool = True,
    ) -> None:
        """(Re)start Shunter's operator and API, serving `namespace` (default: the
        current one) with operator_env (default: the one given to `system`)."""
        self.stop_services()
        self.namespace = namespace or self.namespace
        env = {**self.env, **_namespace_env(self.namespace)}
        self.base_url = demo.start_services(
            self.plane.kubeconfig,
            self.database_url,
            state_dir=self.state,
            port=processes.free_port(),
            env=env,
            operator_env=self.operator_env if operator_env is None else operator_env,
            api_env=self.api_env,
            with_operator=with_operator,
        )

    def http(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, timeout=60, headers=headers)

    def bulk_create(self, names: list[str], *, concurrency: int = 32, **kwargs: Any) -> None:
        """Create many TrainingJobs (training_job(name, **kwargs)) fast: asyncio, up to
        `concurrency` creates in flight (thousands in a few seconds, not minutes)."""

        async def run() -> None:
            kube = Kube(connect(self.plane.kubeconfig))
            gate = asyncio.Semaphore(concurrency)

            async def one(name: str) -> None:
                async with gate:
                    await kube.create(
                        TRAINING_JOBS, training_job(name, **kwargs), namespace=self.namespace
                    )

            try:
                await asyncio.gather(*(one(n) for n in names))
            finally:
                await kube.close()

        asyncio.run(run())

    def create_jobs(self, names: list[str], **kwargs: Any) -> dict[str, float]:
        """Create TrainingJobs (training_job(name, **kwargs)) in parallel; return when
        each create call started."""
        custom = self.custom()
        started: dict[str, float] = {}

        def one(name: str) -> None:
            started[name] = time.monotonic()
            custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURAL, training_job(name, **kwargs)
            )

        parallel(one, names)
        return started

    def phase_counts(self) -> dict[str, int]:
        """How many TrainingJobs are in each phase (a paged list, so 50,000 jobs cost
        the bench little memory)."""

        async def run() -> dict[str, int]:
            kube = Kube(connect(self.plane.kubeconfig))
            counts: dict[str, int] = defaultdict(int)
            token = None
            try:
                while True:
                    page = await kube.list(
                        TRAINING_JOBS, namespace=self.namespace, limit=1000, continue_token=token
                    )
                    for job in page["items"]:
                        counts[(job.get("status") or {}).get("phase") or "new"] += 1
                    token = page["metadata"].get("continue")
                    if not token:
                        return dict(counts)
            finally:
                await kube.close()

        return asyncio.run(run())

    def list_jobs(self) -> list[dict[str, Any]]:
        body = self.custom().list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        items: list[dict[str, Any]] = body["items"]
        return items


def parallel(fn: Callable[[str], object], names: list[str], *, workers: int = 8) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(fn, names))


@contextmanager
def system(
    *,
    nodes: int = 100,
    gpus_per_node: int = 8,
    operator_env: dict[str, str] | None = None,
    api_env: dict[str, str] | None = None,
    with_operator: bool = True,
    namespace: str = "bench",
    name: str = "bench",
    policies: bool = False,
    node_lease_seconds: int = 40,
    node_status_seconds: int = 60,
    audit_pod_stages: bool = False,
    kwok_pod_workers: int = KWOK_POD_WORKERS,
) -> Iterator[System]:
    """A fresh local cluster with the operator and the API for one namespace; its state
    is ~/.cache/shunter/clusters/NAME: the `name` a bench passes, else
    $SHUNTER_BENCH_CLUSTER (default "bench"), so two benches on one machine never share
    (and tear down) one cluster. The logs of its last run are kept in NAME.last-logs."""
    if name == "bench":
        name = os.environ.get("SHUNTER_BENCH_CLUSTER", "bench")
    state = default_state_dir(name)
    plane = ControlPlane(state)
    plane.down()
    pg = LocalPostgres(state.with_name(f"{name}-postgres"))
    pg.down()
    started = time.monotonic()
    # The scheduler all peers share runs with a raised client limit (SHUNTER_BENCH_
    # SCHEDULER_QPS, default 500; 0 keeps its stock 50), so it does not set the pace.
    scheduler_qps = int(os.environ.get("SHUNTER_BENCH_SCHEDULER_QPS", "500")) or None
    spec = ClusterSpec(gpu_nodes=nodes, gpus_per_node=gpus_per_node, scheduler_qps=scheduler_qps,
                       node_lease_seconds=node_lease_seconds,
                       node_status_seconds=node_status_seconds,
                       audit_pod_stages=audit_pod_stages,
                       kwok_pod_workers=kwok_pod_workers)  # fmt: skip
    kubeconfig = plane.up(spec)
    print(
        f"bench: cluster with {nodes} GPU nodes up in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    database_url = pg.up()
    demo.install_crd(plane)
    if policies:
        demo.install_policies(plane)
    plane.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}])
    env = {"SHUNTER_IDENTITY": "bench"}
    try:
        base_url = demo.start_services(
            kubeconfig,
            database_url,
            state_dir=state,
            port=processes.free_port(),
            env={**env, **_namespace_env(namespace)},
            operator_env=operator_env,
            api_env=api_env,
            with_operator=with_operator,
        )
        api = config.new_client_from_config(config_file=str(kubeconfig))
        api.configuration.connection_pool_maxsize = 32
        yield System(
            plane,
            api,
            namespace,
            base_url,
            state,
            database_url,
            env,
            dict(operator_env or {}),
            dict(api_env or {}),
        )
    finally:
        demo.stop_services(state)
        # Keep the last run's logs (operator, API, Kueue, control plane) for a look after.
        kept = state.with_name(f"{name}.last-logs")
        shutil.rmtree(kept, ignore_errors=True)
        with suppress(OSError):
            shutil.copytree(state / "logs", kept)
        plane.down()
        pg.down()


def _namespace_env(namespace: str) -> dict[str, str]:
    return {
        "SHUNTER_NAMESPACE": namespace,
        "SHUNTER_LEASE_NAMESPACE": namespace,
        "SHUNTER_API_NAMESPACE": namespace,
        "SHUNTER_API_WATCH_NAMESPACE": namespace,
    }


def create_namespace(api: client.ApiClient, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    try:
        client.CoreV1Api(api).create_namespace(body)
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def delete_namespace(api: client.ApiClient, name: str, *, timeout: float = 900) -> float:
    """Delete a namespace and wait until it is gone (its controller must still run if
    its objects carry finalizers); return the seconds it took."""
    core = client.CoreV1Api(api)
    start = time.monotonic()
    try:
        core.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
        return 0.0
    while time.monotonic() - start < timeout:
        try:
            core.read_namespace(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return time.monotonic() - start
            raise
        time.sleep(1)
    raise TimeoutError(f"bench: namespace {name} still there after {timeout:.0f}s")


def training_job(
    name: str,
    *,
    gpus: int = 1,
    annotations: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    grace: int = 30,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": "shunter/trainer:bench",
        "gpus": gpus,
        "terminationGracePeriodSeconds": grace,
    }
    if annotations or labels:
        spec["podMetadata"] = {"annotations": annotations or {}, "labels": labels or {}}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


def batch_job(
    name: str,
    *,
    gpus: int = 1,
    annotations: dict[str, str] | None = None,
    grace: int = 30,
    labels: dict[str, str] | None = None,
    suspend: bool = False,
) -> dict[str, Any]:
    """The peers' unit of work: a batch/v1 Job whose Pod is Shunter's trainer Pod as the
    operator builds it for training_job (GPU limit, no restart, grace period, GPU
    toleration, checkpoint volume, the same kwok annotations). `labels` go on the Job
    (Kueue's queue label); `suspend` leaves it to a queue controller to start."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "backoffLimit": 0,
            "suspend": suspend,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {
                    "restartPolicy": "Never",
                    "terminationGracePeriodSeconds": grace,
                    "containers": [
                        {
                            "name": "trainer",
                            "image": "shunter/trainer:bench",
                            "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                            "volumeMounts": [{"name": "checkpoints", "mountPath": "/checkpoints"}],
                        }
                    ],
                    "volumes": [{"name": "checkpoints", "emptyDir": {}}],
                    "tolerations": [
                        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                },
            },
        },
    }
