"""Shared bench machinery: a dedicated local cluster, the system under test, watches
that timestamp Pod events, percentiles, process sampling, and result files.

Benchmarks print figures; they are not tests and assert nothing about speed.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import threading
import time
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

from shunter.devcluster import demo, processes
from shunter.devcluster.controlplane import ClusterSpec, ControlPlane, default_state_dir
from shunter.devcluster.postgres import LocalPostgres
from shunter.operator.model import API_VERSION, GROUP, KIND, PLURAL, VERSION

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


class PodClock:
    """Watches Pods in a namespace and records when each was added, ran, and went away."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.added: dict[str, float] = {}
        self.running: dict[str, float] = {}
        self.finished: dict[str, float] = {}
        self.deleted: dict[str, float] = {}
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> PodClock:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        try:
            self._watch()
        except Exception:
            if not self._stop.is_set():
                raise

    def _watch(self) -> None:
        version = self.core.list_namespaced_pod(self.namespace).metadata.resource_version
        while not self._stop.is_set():
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
                    if event["type"] == "DELETED":
                        self.deleted[name] = now
                    elif pod.status.phase == "Running":
                        self.running.setdefault(name, now)
                    elif pod.status.phase in ("Succeeded", "Failed"):
                        self.finished.setdefault(name, now)
                    self._changed.notify_all()
                if self._stop.is_set():
                    return

    def wait(self, predicate: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"bench: timed out waiting for {what}")
                self._changed.wait(min(left, 1.0))


@dataclass
class Sampler:
    """Samples CPU time and RSS of processes (by pid) every `interval` seconds."""

    pids: dict[str, int]
    interval: float = 0.25
    peak_rss: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in self.pids.items()}
        self.cpu_start = {n: sum(p.cpu_times()[:2]) for n, p in self.procs.items()}
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for name, proc in self.procs.items():
                with suppress(psutil.Error):
                    self.peak_rss[name] = max(self.peak_rss[name], proc.memory_info().rss)

    def rss(self, name: str) -> int:
        return int(self.procs[name].memory_info().rss)

    def stop(self) -> dict[str, dict[str, float]]:
        self._stop.set()
        self.thread.join()
        return {
            name: {
                "cpu_seconds": sum(proc.cpu_times()[:2]) - self.cpu_start[name],
                "peak_rss_mib": self.peak_rss[name] / 2**20,
            }
            for name, proc in self.procs.items()
        }


@dataclass
class System:
    plane: ControlPlane
    api: client.ApiClient
    namespace: str
    base_url: str
    state: Path
    database_url: str

    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api)

    def pid(self, name: str) -> int:
        return int((self.state / "pids" / f"{name}.pid").read_text().split()[0])

    def http(self) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, timeout=60)

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
) -> Iterator[System]:
    """A fresh local cluster (state `name`) with the operator and the API for one
    namespace. Benches that may run beside others pass a name of their own."""
    state = default_state_dir(name)
    plane = ControlPlane(state)
    plane.down()
    pg = LocalPostgres(state.with_name(f"{name}-postgres"))
    pg.down()
    started = time.monotonic()
    kubeconfig = plane.up(ClusterSpec(gpu_nodes=nodes, gpus_per_node=gpus_per_node))
    print(
        f"bench: cluster with {nodes} GPU nodes up in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    database_url = pg.up()
    demo.install_crd(plane)
    plane.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}])
    env = {
        "SHUNTER_NAMESPACE": namespace,
        "SHUNTER_LEASE_NAMESPACE": namespace,
        "SHUNTER_IDENTITY": "bench",
        "SHUNTER_API_NAMESPACE": namespace,
        "SHUNTER_API_WATCH_NAMESPACE": namespace,
    }
    try:
        base_url = demo.start_services(
            kubeconfig,
            database_url,
            state_dir=state,
            port=processes.free_port(),
            env=env,
            operator_env=operator_env,
            api_env=api_env,
            with_operator=with_operator,
        )
        api = config.new_client_from_config(config_file=str(kubeconfig))
        api.configuration.connection_pool_maxsize = 32
        yield System(plane, api, namespace, base_url, state, database_url)
    finally:
        demo.stop_services(state)
        plane.down()
        pg.down()


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
    name: str, *, gpus: int = 1, annotations: dict[str, str] | None = None, grace: int = 30
) -> dict[str, Any]:
    """The peer's unit of work: a batch/v1 Job running the same Pod as training_job."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
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
                        }
                    ],
                },
            },
        },
    }
