"""Where the time goes in Kueue + the Job controller: one Kueue run with watches on the
Jobs, their Workloads and their Pods, printing when each stage was reached (seconds
from the first create: first job, median job, last job) and, per job, the lags
between stages.

    python -m bench.kueue_stages [--jobs 1000] [--gpus 8] [--quota 800] [--run-for 1s]
        [--kueue 50/100] [--kcm-qps 0]

Stages: Job created; Job `Suspended` condition (the Job controller); Workload created
and admitted (Kueue); Job unsuspended (Kueue); Pod created (the Job controller); Pod
Running and Succeeded (kwok); Job Complete (the Job controller); Workload Finished
(Kueue), which frees the quota for the next one.
"""

from __future__ import annotations

import argparse
import threading
import time
from collections import defaultdict
from functools import partial
from typing import Any

from kubernetes import client, watch
from tests.support.background import Background

from bench import kueue
from bench.harness import job_of, summary, system, write_result
from bench.peers import Kueue

ORDER = [
    "job created", "job Suspended", "workload created", "workload QuotaReserved",
    "workload Admitted", "job unsuspended", "pod created", "pod Running",
    "pod Succeeded", "job Complete", "workload Finished",
]  # fmt: skip
LAGS = [
    ("workload created", "workload Admitted"),
    ("workload Admitted", "job unsuspended"),
    ("job unsuspended", "pod created"),
    ("pod Succeeded", "job Complete"),
    ("job Complete", "workload Finished"),
]


class Stages:
    """The first time each job reached each stage (monotonic, this process)."""

    def __init__(self) -> None:
        self.at: dict[str, dict[str, float]] = defaultdict(dict)
        self.lock = threading.Lock()

    def mark(self, job: str, stage: str, when: float) -> None:
        with self.lock:
            self.at[job].setdefault(stage, when)

    def count(self, stage: str) -> int:
        with self.lock:
            return sum(stage in s for s in self.at.values())


def _follow(list_fn: Any, args: tuple[Any, ...], on_event: Any, stop: threading.Event) -> None:
    """Watch for good: after an expiry or error, list and watch again (a stage is
    recorded the first time only, so seeing an object again changes nothing)."""
    version = None
    while not stop.is_set():
        kwargs = {"resource_version": version} if version else {}
        try:
            for event in watch.Watch().stream(list_fn, *args, timeout_seconds=300, **kwargs):
                obj = event["object"]
                if isinstance(obj, dict):
                    version = obj["metadata"]["resourceVersion"]
                else:
                    version = obj.metadata.resource_version
                on_event(time.monotonic(), obj)
        except Exception:  # a diagnostic watch: start over
            version = None
            stop.wait(0.5)


def watch_all(api: client.ApiClient, namespace: str, stages: Stages) -> None:
    def on_job(now: float, job: Any) -> None:
        name = job.metadata.name
        if not job.spec.suspend:
            stages.mark(name, "job unsuspended", now)
        for c in job.status.conditions or []:
            if c.status == "True" and c.type in ("Suspended", "Complete"):
                stages.mark(name, f"job {c.type}", now)

    def on_workload(now: float, wl: dict[str, Any]) -> None:
        owners = wl["metadata"].get("ownerReferences") or [{}]
        name = owners[0].get("name", "")
        stages.mark(name, "workload created", now)
        for c in (wl.get("status") or {}).get("conditions") or []:
            if c["status"] == "True" and c["type"] in ("QuotaReserved", "Admitted", "Finished"):
                stages.mark(name, f"workload {c['type']}", now)

    def on_pod(now: float, pod: Any) -> None:
        name = job_of(pod.metadata.name)
        stages.mark(name, "pod created", now)
        if pod.status.phase in ("Running", "Succeeded"):
            stages.mark(name, f"pod {pod.status.phase}", now)

    custom = client.CustomObjectsApi(api)
    for list_fn, args, handler in (
        (client.BatchV1Api(api).list_namespaced_job, (namespace,), on_job),
        (
            custom.list_namespaced_custom_object,
            (kueue.GROUP, kueue.VERSION, namespace, "workloads"),
            on_workload,
        ),
        (client.CoreV1Api(api).list_namespaced_pod, (namespace,), on_pod),
    ):
        Background(partial(_follow, list_fn, args, handler), name=f"{list_fn.__name__}").start()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--quota", type=int, default=800)
    parser.add_argument("--run-for", default="1s")
    parser.add_argument("--kueue", default="50/100")
    parser.add_argument("--kcm-qps", type=int, default=0)
    args = parser.parse_args()
    settings = kueue.Settings.parse(args.kueue)
    stages = Stages()
    with system(with_operator=False) as s:
        if args.kcm_qps:
            s.set_controller_manager_qps(args.kcm_qps)
        peer = Kueue(s, "bench-stages", settings)
        try:
            peer.setup(gpus=args.quota)
            watch_all(s.api, peer.namespace, stages)
            time.sleep(1)  # the watches are open
            names = [f"k{i:05d}" for i in range(args.jobs)]
            start = time.monotonic()
            created = peer.submit(
                names, gpus=args.gpus, annotations={"sim.shunter.dev/run-for": args.run_for}
            )
            for name, when in created.items():
                stages.mark(name, "job created", when)
            deadline = time.monotonic() + 4 * 3600
            while stages.count("workload Finished") < args.jobs:
                if time.monotonic() > deadline:
                    raise TimeoutError("bench: Kueue jobs did not finish")
                time.sleep(0.5)
        finally:
            peer.teardown()
    at = {job: dict(s) for job, s in stages.at.items() if job in set(names)}
    result: dict[str, Any] = {"settings": settings.label, "args": vars(args), "stages": {}}
    print(f"\nKueue {settings.label}, {args.jobs} jobs x {args.gpus} GPUs, quota {args.quota}")
    print(f"{'stage':24} {'jobs':>5} {'first':>7} {'p50':>7} {'last':>7}   (s from start)")
    for stage in ORDER:
        times = sorted(a[stage] - start for a in at.values() if stage in a)
        if times:
            figures = {"jobs": len(times), "first": times[0], "p50": times[len(times) // 2]}
            figures["last"] = times[-1]
            result["stages"][stage] = figures
            print(
                f"{stage:24} {len(times):5} {times[0]:7.2f} {figures['p50']:7.2f} {times[-1]:7.2f}"
            )
    print("\nper job lag (s)                                   p50     p99")
    result["lags"] = {}
    for a, b in LAGS:
        lag = summary([t[b] - t[a] for t in at.values() if a in t and b in t])
        result["lags"][f"{a} -> {b}"] = lag
        print(f"  {a + ' -> ' + b:46} {lag['p50']:7.2f} {lag['p99']:7.2f}")
    name = f"kueue-stages-{args.jobs}-{settings.slug}" + (
        f"-kcm{args.kcm_qps}" if args.kcm_qps else ""
    )
    print(f"\nwrote {write_result(name, result)}")


if __name__ == "__main__":
    main()
