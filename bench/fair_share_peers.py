"""Fair sharing in real time: Shunter and Kueue on one local cluster, one after the other.

    python -m bench.fair_share_peers [--minutes 12] [--window 120] [--peers shunter,kueue]

The workload, the same for both systems (fixed here, not by the command line):

- a cohort of three queues: a lender holding the cluster's 30 GPUs (5 kwok nodes of
  6) as its nominal quota and running nothing, and two teams' queues with no quota of
  their own and fair-sharing weights 2 and 1, so everything the teams run is borrowed
  and 2:1 is 20:10 GPUs, exact in whole GPUs. Shunter: TrainingQueues with
  `spec.fairSharing.weight`; Kueue: ClusterQueues with `spec.fairSharing.weight` and
  the Configuration's `fairSharing` section (bench/kueue.py). Neither preempts (the
  default of both): fair sharing works only through who is admitted when a GPU frees.
- 600 1-GPU jobs per team, created (alternating between the teams) while the
  system's controller is held back, then the controller is started: both teams keep
  hundreds of jobs queued for the whole run (the bench reports how many were left).
- each job runs 30 to 60 s (kwok, `sim.shunter.dev/run-for`; seeded, the same
  sequence for both systems), a mean of 45 s: about 6.7 times shorter than the 300 s
  jobs of the virtual-time bench (bench/fair_share.py), so one 2-minute window here
  holds as many job generations as about 13 minutes there.

Measured per system from the Pods: a watch on the API server records when each Pod
was first seen Running and first seen ended (Succeeded, Failed or deleted); the
GPU-seconds of each team are summed per window from those times (a Pod still running
at the end counts until then). Fairness error = |achieved share - weight share| /
weight share (the largest over the two teams), per window and over the run after the
first window (the start-up: Kueue creates a Workload per Job, both fill the GPUs).
Also the GPUs' use per window, and the CPU seconds of each system's controllers
(Shunter: operator and API; Kueue: Kueue and kube-controller-manager, whose Job
controller starts its Pods) and of the control plane, sampled as in the other benches.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, cast

from kubernetes import client, watch
from tests.support.background import Background

from bench import kueue
from bench.fair_share import error
from bench.harness import (
    Sampler,
    System,
    batch_job,
    parallel,
    system,
    table,
    training_job,
    write_result,
)
from bench.peers import Kueue, Peer, Shunter, run_each, select
from shunter.domain.model import API_VERSION, GROUP, PLURAL, VERSION

NODES, GPUS_PER_NODE = 5, 6
GPUS = NODES * GPUS_PER_NODE
WEIGHTS = {"team-a": 2.0, "team-b": 1.0}
COHORT, LENDER = "fs-lab", "fs-pool"
BACKLOG = 600  # jobs per team
RUN_FOR = (30, 60)  # seconds, uniform
SEED = 24
TEAM = "bench.shunter.dev/team"  # Pod annotation: whose GPU-seconds


def queue_of(team: str) -> str:
    return f"fs-{team}"


def workload() -> list[tuple[str, str, int]]:
    """(team, job name, seconds it runs), alternating between the teams."""
    rng = random.Random(SEED)
    runs = {team: [rng.randint(*RUN_FOR) for _ in range(BACKLOG)] for team in WEIGHTS}
    return [(team, f"{team}-{i:04d}", runs[team][i]) for i in range(BACKLOG) for team in WEIGHTS]


def pod_annotations(team: str, seconds: int) -> dict[str, str]:
    return {"sim.shunter.dev/run-for": f"{seconds}s", TEAM: team}


class CohortPeer(Peer):
    """A peer that runs the cohort above; `create_in` files a job in a team's queue."""

    def create_in(self, team: str, name: str, seconds: int) -> None:
        raise NotImplementedError


class ShunterCohort(Shunter, CohortPeer):
    def setup(self, *, gpus: int, held: bool = False) -> None:
        self.s.plane.apply(shunter_queues(gpus))
        super().setup(gpus=gpus, held=held)

    def create_in(self, team: str, name: str, seconds: int) -> None:
        body = training_job(name, gpus=1, annotations=pod_annotations(team, seconds))
        body["spec"]["queue"] = queue_of(team)
        self.s.custom().create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            names = [LENDER, *map(queue_of, WEIGHTS)]
            self.s.plane.kubectl("delete", "trainingqueue", *names, "--ignore-not-found")


def shunter_queues(gpus: int) -> list[dict[str, Any]]:
    """The lender (the cohort's GPUs) and the teams' queues (none of their own)."""

    def queue(name: str, spec: dict[str, Any]) -> dict[str, Any]:
        return {"apiVersion": API_VERSION, "kind": "TrainingQueue",
                "metadata": {"name": name}, "spec": {"cohort": COHORT, **spec}}  # fmt: skip

    return [
        queue(LENDER, {"gpuQuota": gpus}),
        *(queue(queue_of(team), {"gpuQuota": 0, "fairSharing": {"weight": weight}})
          for team, weight in WEIGHTS.items()),
    ]  # fmt: skip


class KueueCohort(Kueue, CohortPeer):
    def manifests(self, gpus: int) -> list[dict[str, Any]]:
        borrowers = {queue_of(team): weight for team, weight in WEIGHTS.items()}
        return kueue.cohort_queues(COHORT, (LENDER, gpus), borrowers, self.namespace)

    def cluster_queues(self) -> list[str]:
        return [LENDER, *map(queue_of, WEIGHTS)]

    def create_in(self, team: str, name: str, seconds: int) -> None:
        body = batch_job(name, gpus=1, annotations=pod_annotations(team, seconds),
                         labels={kueue.QUEUE_LABEL: queue_of(team)}, suspend=True)  # fmt: skip
        client.BatchV1Api(self.s.api).create_namespaced_job(self.namespace, body)


@dataclass
class Run:
    team: str
    start: float  # wall clock: first seen Running
    end: float | None = None  # first seen Succeeded, Failed or deleted


class PodRuns:
    """Watches a namespace's Pods: for each, when it was first seen Running and first
    seen ended, and whose it is (the TEAM annotation)."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.core = client.CoreV1Api(api)
        self.namespace = namespace
        self.runs: dict[str, Run] = {}
        self._lock = threading.Lock()
        self._thread = Background(self._watch, name="pod runs")

    def start(self) -> PodRuns:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop(join=False)

    def _seen(self, kind: str, pod: Any, now: float) -> None:
        name, phase = pod.metadata.name, pod.status.phase
        team = (pod.metadata.annotations or {}).get(TEAM)
        if team is None:
            return
        with self._lock:
            run = self.runs.get(name)
            if run is None and phase == "Running" and kind != "DELETED":
                self.runs[name] = run = Run(team, now)
            ended = kind == "DELETED" or phase in ("Succeeded", "Failed")
            if run is not None and run.end is None and ended:
                run.end = now

    def _watch(self, stop: threading.Event) -> None:
        version = None
        while not stop.is_set():
            if version is None:  # (re)list: a Pod already Running counts from now
                listed = self.core.list_namespaced_pod(self.namespace)
                now = time.time()
                for pod in listed.items:
                    self._seen("LISTED", pod, now)
                version = listed.metadata.resource_version
            try:
                for event in watch.Watch().stream(
                    self.core.list_namespaced_pod, self.namespace,
                    resource_version=version, timeout_seconds=60,
                ):  # fmt: skip
                    self._seen(event["type"], event["object"], time.time())
                    version = event["object"].metadata.resource_version
                    if stop.is_set():
                        return
            except client.ApiException as exc:
                if exc.status != 410:
                    raise
                version = None  # too old: list again

    def snapshot(self) -> list[Run]:
        with self._lock:
            return [Run(r.team, r.start, r.end) for r in self.runs.values()]


def gpu_seconds(runs: list[Run], lo: float, hi: float) -> dict[str, float]:
    """Each team's GPU-seconds (1-GPU jobs) within [lo, hi]; a run not ended counts to hi."""
    out = dict.fromkeys(WEIGHTS, 0.0)
    for run in runs:
        overlap = min(run.end if run.end is not None else hi, hi) - max(run.start, lo)
        if overlap > 0:
            out[run.team] += overlap
    return out


def submit(peer: CohortPeer) -> float:
    """Create the whole workload from 8 threads; return the seconds it took."""
    begin = time.monotonic()
    jobs = {name: (team, seconds) for team, name, seconds in workload()}
    parallel(lambda name: peer.create_in(jobs[name][0], name, jobs[name][1]), list(jobs))
    return time.monotonic() - begin


def measure(s: System, peer: CohortPeer, minutes: float, window: float) -> dict[str, Any]:
    peer.setup(gpus=GPUS, held=True)
    watcher = PodRuns(s.api, peer.namespace).start()
    submitted = submit(peer)
    print(f"bench: {peer.name}: {2 * BACKLOG} jobs created in {submitted:.0f}s", file=sys.stderr)
    t0 = time.time()
    fresh = peer.start()
    sampler = Sampler({**peer.controllers(), **s.control_plane_pids()}, fresh=fresh)
    end = t0 + minutes * 60
    while (left := end - time.time()) > 0:
        time.sleep(min(left, window))
        runs = watcher.snapshot()
        held = sum(r.end is None for r in runs)
        done = gpu_seconds(runs, t0, time.time())
        print(f"bench: {peer.name}: {time.time() - t0:.0f}s, {held} running, GPU-s "
              + ", ".join(f"{t} {v:.0f}" for t, v in done.items()), file=sys.stderr)  # fmt: skip
    usage = sampler.stop()
    runs = watcher.snapshot()
    watcher.stop()
    duration = end - t0
    for figures in usage.values():
        figures["core_share"] = figures["cpu_seconds"] / duration
    windows: list[dict[str, Any]] = []
    lo = t0
    while lo + window <= end + 1e-6:
        seconds = gpu_seconds(runs, lo, lo + window)
        windows.append({
            "from_s": lo - t0, "to_s": lo + window - t0, "gpu_seconds": seconds,
            "error": error(seconds, WEIGHTS), "gpu_use": sum(seconds.values()) / (GPUS * window),
        })  # fmt: skip
        lo += window
    after = gpu_seconds(runs, t0 + window, end)
    started = dict.fromkeys(WEIGHTS, 0)
    for run in runs:
        started[run.team] += 1
    return {
        "submit_s": submitted,
        "duration_s": duration,
        "windows": windows,
        "after_first_window": {"gpu_seconds": after, "error": error(after, WEIGHTS),
                               "gpu_use": sum(after.values()) / (GPUS * (end - t0 - window))},
        "worst_window_after_first": max((w["error"] for w in windows[1:]), default=None),
        # Pods started per team (a job's Pod runs once: no preemption here) and the
        # jobs still waiting at the end: saturation held if neither ran out.
        "started": started,
        "queued_at_end": {team: BACKLOG - n for team, n in started.items()},
        "processes": usage,
        "controllers": sorted(peer.controllers()),
    }  # fmt: skip


def rows(results: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for r in results.values():
        name = r["name"]
        for w in r["windows"]:
            shares = "/".join(f"{v:.0f}" for v in w["gpu_seconds"].values())
            out.append((f"{name}: {w['from_s']:.0f}-{w['to_s']:.0f}s error (GPU-s a/b, use)",
                        f"{w['error']:.1%} ({shares}, {w['gpu_use']:.0%})"))  # fmt: skip
        after = r["after_first_window"]
        out.append((f"{name}: error after the first window", f"{after['error']:.1%}"))
        if r["worst_window_after_first"] is not None:
            out.append((f"{name}: worst window after the first",
                        f"{r['worst_window_after_first']:.1%}"))  # fmt: skip
        out.append((f"{name}: GPU use after the first window", f"{after['gpu_use']:.1%}"))
        out.append((f"{name}: jobs queued at the end a/b",
                    "/".join(str(v) for v in r["queued_at_end"].values())))  # fmt: skip
        for process in (*r["controllers"], "other processes"):
            figures = r["processes"][process]
            out.append((f"{name}: {process} CPU s (cores)",
                        f"{figures['cpu_seconds']:.1f} ({figures['core_share']:.2f})"))  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=12.0, help="measured per system")
    parser.add_argument("--window", type=float, default=120.0, help="seconds per window")
    parser.add_argument("--peers", default="shunter,kueue", help="shunter, kueue or both")
    parser.add_argument("--kueue", default="50/100", help="Kueue client QPS/burst")
    parser.add_argument("--name", default="fair-share-peers", help="result file name")
    args = parser.parse_args()
    settings = kueue.Settings.parse(args.kueue)
    minutes, window = args.minutes, args.window
    settings = kueue.Settings(settings.qps, settings.burst, fair_sharing=True)
    operator_env = {"SHUNTER_MAX_RUNNING": "1000"}  # the quota binds, not the limit
    with system(nodes=NODES, gpus_per_node=GPUS_PER_NODE, with_operator=False) as s:
        peers: list[Peer] = [
            ShunterCohort(s, "bench-fair-shunter", operator_env),
            KueueCohort(s, "bench-fair-kueue", settings),
        ]
        chosen = select(peers, args.peers)
        results = run_each(chosen, lambda p: measure(s, cast(CohortPeer, p), minutes, window))
    result = {
        "workload": {
            "gpus": GPUS, "nodes": NODES, "weights": WEIGHTS, "jobs_per_team": BACKLOG,
            "run_for_s": RUN_FOR, "seed": SEED, "minutes": args.minutes,
            "window_s": args.window,
        },
        "kueue": {"version": kueue.version(), "settings": settings.label,
                  "configuration": {"fairSharing": kueue.FAIR_SHARING}},
        "peers": results,
    }  # fmt: skip
    table(f"fair sharing, weights 2:1 over {GPUS} borrowed GPUs, real time", rows(results))
    print(f"\nwrote {write_result(args.name, result)}")


if __name__ == "__main__":
    main()
