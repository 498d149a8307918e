"""Throughput at scale: N jobs over 100 fake GPU nodes, at most 100 running at once, for
Shunter, Kueue + the Job controller and batch/v1 Jobs alone, one after another on the
same cluster (bench/peers.py).

    python -m bench.throughput [--jobs 1000] [--run-for 5s] [--precreate]
        [--kueue 50/100,500/1000] [--peers all] [--arrays]

Each job asks for 8 GPUs and 100 nodes have 8 each, so at most 100 run at once whoever
admits: Shunter by its admission limit (SHUNTER_MAX_RUNNING=100), Kueue by a
ClusterQueue quota of 800 GPUs, the Job controller by the scheduler. Ideal makespan:
N / 100 x run-for.

By default the jobs are created while the peer runs (8 client threads), as users
submit them. With --precreate the peer's controller is held back (Shunter's operator
not started, Kueue not started, kube-controller-manager stopped for batch/v1) until all
N jobs exist, and the clock starts when it is started: the figure is then the
controller's own rate, not the submitter's (the 1 s mode: ideal 100 jobs/s).

With --arrays, Shunter runs once more with the N jobs as one array (spec.array: count N,
maxParallel 100): one object submitted instead of N, its runs created by the operator
as earlier ones end.

Reported per peer: jobs/s admitted (first Pod created) and completed (Pod finished),
makespan, the steady completion rate between 10 % and 90 % of the jobs, when every job's
own status said complete, and the CPU seconds and peak RSS of the peer's controllers and
of each control-plane component.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

from bench import kueue
from bench.harness import PodClock, Sampler, System, system, table, write_result
from bench.peers import Peer, ShunterArray, all_peers, run_each, select

GPUS, NODES, LIMIT = 8, 100, 100


def seconds(text: str) -> float:
    return float(text.rstrip("s"))


def rates(finished: dict[str, float], added: dict[str, float], start: float) -> dict[str, float]:
    ends = sorted(finished.values())
    count = len(ends)
    makespan = ends[-1] - start
    low, high = ends[int(0.1 * (count - 1))], ends[int(0.9 * (count - 1))]
    return {
        "jobs": count,
        "makespan_s": makespan,
        "admitted_per_s": count / (max(added.values()) - start),
        "completed_per_s": count / makespan,
        "steady_completed_per_s": 0.8 * count / (high - low) if high > low else float("nan"),
    }


def measure(s: System, peer: Peer, count: int, run_for: str, precreate: bool) -> dict[str, Any]:
    peer.setup(gpus=NODES * GPUS, held=precreate)
    clock = PodClock(s.api, peer.namespace).start()
    names = [f"{peer.prefix}{i:05d}" for i in range(count)]
    annotations = {"sim.shunter.dev/run-for": run_for}
    fresh: tuple[str, ...] = ()
    begin = time.monotonic()
    if precreate:
        peer.submit(names, gpus=GPUS, annotations=annotations)
        submitted = time.monotonic() - begin
        start = time.monotonic()
        fresh = peer.start()
        sampler = Sampler({**peer.controllers(), **s.control_plane_pids()}, fresh=fresh)
    else:
        sampler = Sampler({**peer.controllers(), **s.control_plane_pids()})
        start = begin
        peer.submit(names, gpus=GPUS, annotations=annotations)
        submitted = time.monotonic() - begin
    clock.wait(lambda: len(clock.job_finished) >= count, 4 * 3600, f"{peer.name}: all jobs")
    records = clock.snapshot()
    result: dict[str, Any] = rates(records["job_finished"], records["job_added"], start)
    makespan = result["makespan_s"]
    result["ideal_makespan_s"] = math.ceil(count / LIMIT) * seconds(run_for)
    result["vs_ideal"] = makespan / result["ideal_makespan_s"]
    result["submit_s"] = submitted
    result["precreated"] = precreate
    usage = sampler.stop()
    for figures in usage.values():
        figures["core_share"] = figures["cpu_seconds"] / makespan
    result["processes"] = usage
    result["controllers"] = sorted(peer.controllers())
    clock.stop()
    deadline = time.monotonic() + 900
    while (done := peer.count_done()) < count and time.monotonic() < deadline:
        time.sleep(1)
    result["all_done_in_status_s"] = time.monotonic() - start if done >= count else None
    return result


def rows(results: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for r in results.values():
        out += [(f"{r['name']}: {k}", v) for k, v in r.items() if isinstance(v, float | int)]
        for process, figures in r["processes"].items():
            if process in (*r["controllers"], "other processes"):
                out += [(f"{r['name']}: {process} {k}", v) for k, v in figures.items()]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--run-for", default="5s")
    parser.add_argument("--precreate", action="store_true")
    parser.add_argument("--kueue", default="50/100,500/1000", help="Kueue client QPS/burst list")
    parser.add_argument(
        "--kcm-qps", type=int, default=0, help="kube-controller-manager client QPS (default 20)"
    )
    parser.add_argument("--peers", default="all", help="all, or any of shunter,kueue,batch")
    parser.add_argument("--name", default="", help="result file name (default from the args)")
    parser.add_argument(
        "--arrays", action="store_true",
        help="also Shunter with the jobs as one array (spec.array, at most 100 at once)",
    )  # fmt: skip
    args = parser.parse_args()
    settings = [kueue.Settings.parse(k) for k in args.kueue.split(",") if k]
    operator_env = {"SHUNTER_MAX_RUNNING": str(LIMIT)}
    with system(nodes=NODES, gpus_per_node=GPUS, with_operator=False) as s:
        if args.kcm_qps:
            s.set_controller_manager_qps(args.kcm_qps)
        peers = select(all_peers(s, operator_env, settings), args.peers)
        if args.arrays:
            peers.append(ShunterArray(s, "bench-shunter-array", operator_env, LIMIT))
        results = run_each(peers, lambda p: measure(s, p, args.jobs, args.run_for, args.precreate))
    result = {
        "jobs": args.jobs,
        "run_for": args.run_for,
        "precreate": args.precreate,
        "nodes": NODES,
        "limit": LIMIT,
        "kueue": {"version": kueue.version(), "settings": [k.label for k in settings]},
        "kube_controller_manager_qps": args.kcm_qps or "default (20, burst 30)",
        "peers": results,
    }
    mode = " (pre-created)" if args.precreate else ""
    table(f"throughput, {args.jobs} jobs of {args.run_for}{mode}, {LIMIT} at once", rows(results))
    default = f"throughput-{args.jobs}-{args.run_for}{'-precreated' if args.precreate else ''}"
    default += f"-kcm{args.kcm_qps}" if args.kcm_qps else ""
    print(f"\nwrote {write_result(args.name or default, result)}")


if __name__ == "__main__":
    main()
