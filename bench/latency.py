"""Latencies of Shunter, Kueue + the Job controller and batch/v1 Jobs alone, one after
another on the same cluster (bench/peers.py).

    python -m bench.latency [--jobs 200] [--idle 20] [--chain 100]
        [--kueue 50/100,500/1000] [--peers all]

Measured from this process with Pod watches (monotonic clock), 1 GPU per job, 100
nodes x 8 GPUs (no quota or limit binds except in the chain):
- submit -> Pod created at low load: `--idle` jobs, each submitted once the previous
  one's Pod exists;
- submit -> Pod created in a burst: `--jobs` jobs created at once from 8 threads;
- cancel -> Pod gone, graceful: Shunter's POST /cancel, one after another; for the Job
  peers, deleting the Job (background propagation);
- Shunter only: POST /cancel -> Pod gone, forced (Pods that ignore SIGTERM, 20
  clients), minus grace + margin;
- admission chain, Shunter (limit 1) and Kueue (quota 1 GPU): `--chain` jobs of 1 s,
  a slot freed (Pod Succeeded) -> the next job's Pod created.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

from bench import kueue
from bench.harness import (
    CONTROL_PLANE,
    PodClock,
    Sampler,
    System,
    job_of,
    parallel,
    summary,
    system,
    table,
    write_result,
)
from bench.peers import BatchJobs, Kueue, Peer, Shunter, all_peers, run_each, select

GRACE, MARGIN = 1, 1
GPUS_TOTAL = 100 * 8


def idle(peer: Peer, clock: PodClock, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        name = f"{peer.prefix}i{i:04d}"
        started = time.monotonic()
        peer.create(name, gpus=1, annotations={})
        clock.wait(lambda n=name: n in clock.job_added, 120, f"{peer.name}: idle Pod")
        latencies.append(clock.job_added[name] - started)
    return latencies


def burst(peer: Peer, clock: PodClock, count: int) -> tuple[list[str], list[float]]:
    names = [f"{peer.prefix}b{i:04d}" for i in range(count)]
    started = peer.submit(names, gpus=1, annotations={})
    clock.wait(lambda: all(n in clock.job_added for n in names), 900, f"{peer.name}: burst")
    return names, [clock.job_added[n] - started[n] for n in names]


def pods_of(clock: PodClock, names: list[str]) -> dict[str, str]:
    wanted = set(names)
    return {job_of(p): p for p in clock.snapshot()["added"] if job_of(p) in wanted}


def delete_jobs(peer: BatchJobs, clock: PodClock, names: list[str]) -> list[float]:
    pods = pods_of(clock, names)  # burst() waited for every job's Pod
    clock.wait(lambda: all(pods[n] in clock.running for n in names), 600, "running")
    deleted: dict[str, float] = {}
    for name in names:
        deleted[name] = time.monotonic()
        peer.delete(name)
    clock.wait(lambda: all(pods[n] in clock.deleted for n in names), 600, "pods gone")
    return [clock.deleted[pods[n]] - deleted[n] for n in names]


def cancel_all(s: System, names: list[str], clock: PodClock, *, workers: int) -> list[float]:
    clock.wait(lambda: all(f"{n}-trainer" in clock.running for n in names), 600, "running")
    started: dict[str, float] = {}
    with s.http() as http:

        def one(name: str) -> None:
            started[name] = time.monotonic()
            response = http.post(f"/api/training/cancel/{name}")
            assert response.status_code == 200, response.text

        parallel(one, names, workers=workers)
    clock.wait(lambda: all(f"{n}-trainer" in clock.deleted for n in names), 600, "pods gone")
    return [clock.deleted[f"{n}-trainer"] - started[n] for n in names]


def chain(peer: Peer, clock: PodClock, count: int) -> list[float]:
    names = [f"{peer.prefix}c{i:04d}" for i in range(count)]
    peer.submit(names, gpus=1, annotations={"sim.shunter.dev/run-for": "1s"})
    clock.wait(lambda: all(n in clock.job_finished for n in names), 1800, f"{peer.name}: chain")
    records = clock.snapshot()
    order = sorted(names, key=lambda n: records["job_added"][n])
    return [
        records["job_added"][b] - records["job_finished"][a] for a, b in itertools.pairwise(order)
    ]


def measure(s: System, peer: Peer, args: argparse.Namespace) -> dict[str, Any]:
    peer.setup(gpus=GPUS_TOTAL)
    clock = PodClock(s.api, peer.namespace).start()
    sampler = Sampler({**peer.controllers(), **s.control_plane_pids()})
    started = time.monotonic()
    result: dict[str, Any] = {"submit_to_pod_idle": summary(idle(peer, clock, args.idle))}
    names, latencies = burst(peer, clock, args.jobs)
    result["submit_to_pod_burst"] = summary(latencies)
    if isinstance(peer, Shunter):
        result["cancel_to_pod_gone_graceful"] = summary(cancel_all(s, names, clock, workers=1))
        hung = [f"{peer.prefix}h{i:04d}" for i in range(args.jobs)]
        s.create_jobs(hung, labels={"sim.shunter.dev/hang-on-delete": "true"}, grace=GRACE)
        forced = cancel_all(s, hung, clock, workers=20)
        result["cancel_to_pod_gone_forced_minus_grace_and_margin"] = summary(
            [v - GRACE - MARGIN for v in forced]
        )
    elif isinstance(peer, BatchJobs):
        result["delete_job_to_pod_gone"] = summary(delete_jobs(peer, clock, names))
    clock.stop()
    usage = sampler.stop()
    for figures in usage.values():
        figures["core_share"] = figures["cpu_seconds"] / (time.monotonic() - started)
    result["processes"] = usage
    return result


def measure_chain(s: System, peer: Peer, count: int) -> dict[str, Any]:
    peer.setup(gpus=1)
    clock = PodClock(s.api, peer.namespace).start()
    gaps = chain(peer, clock, count)
    clock.stop()
    return {"slot_freed_to_next_pod": summary(gaps)}


def rows(results: dict[str, Any]) -> list[tuple[str, Any]]:
    return [
        (f"{r['name']}: {k} {q}", v[q])
        for r in results.values()
        for k, v in r.items()
        if isinstance(v, dict) and k != "processes"
        for q in ("p50", "p99")
    ] + [
        (f"{r['name']}: {process} core share", figures["core_share"])
        for r in results.values()
        for process, figures in r.get("processes", {}).items()
        if process not in CONTROL_PLANE or process == "kube-controller-manager"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--idle", type=int, default=20)
    parser.add_argument("--chain", type=int, default=100)
    parser.add_argument("--kueue", default="50/100,500/1000", help="Kueue client QPS/burst list")
    parser.add_argument(
        "--kcm-qps", type=int, default=0, help="kube-controller-manager client QPS (default 20)"
    )
    parser.add_argument("--peers", default="all", help="all, or any of shunter,kueue,batch")
    args = parser.parse_args()
    settings = [kueue.Settings.parse(k) for k in args.kueue.split(",") if k]
    operator_env = {
        "SHUNTER_MAX_RUNNING": str(args.jobs * 3),
        "SHUNTER_GRACE_MARGIN_SECONDS": str(MARGIN),
    }
    api_env = {"SHUNTER_API_CANCEL_WAIT_SECONDS": "0"}
    with system(with_operator=False, api_env=api_env) as s:
        if args.kcm_qps:
            s.set_controller_manager_qps(args.kcm_qps)
        peers = select(all_peers(s, operator_env, settings), args.peers)
        results = run_each(peers, lambda p: measure(s, p, args))
        chains: list[Peer] = []
        if args.chain and any(isinstance(p, Shunter) for p in peers):
            chains.append(Shunter(s, "bench-chain-shunter", {"SHUNTER_MAX_RUNNING": "1"}))
        if args.chain and any(isinstance(p, Kueue) for p in peers):
            chains += [Kueue(s, f"bench-chain-kueue-{k.slug}", k) for k in settings]
        for key, figures in run_each(chains, lambda p: measure_chain(s, p, args.chain)).items():
            results[key].update(figures)
    result = {
        "jobs": args.jobs,
        "idle": args.idle,
        "chain": args.chain,
        "kueue": {"version": kueue.version(), "settings": [k.label for k in settings]},
        "kube_controller_manager_qps": args.kcm_qps or "default (20, burst 30)",
        "peers": results,
    }
    table("latency (seconds)", rows(results))
    name = f"latency-kcm{args.kcm_qps}" if args.kcm_qps else "latency"
    print(f"\nwrote {write_result(name, result)}")


if __name__ == "__main__":
    main()
