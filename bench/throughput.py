"""Throughput at scale: N TrainingJobs over 100 fake GPU nodes, 100 running at once,
against the same workload as batch/v1 Jobs on the same cluster.

    python -m bench.throughput [--jobs 1000] [--run-for 5s]

Each job asks for 8 GPUs and 100 nodes have 8 each, so at most 100 run at once either
way: Shunter by its admission limit (SHUNTER_MAX_RUNNING=100), the Job controller by
the scheduler. Reported: jobs/s admitted (Pod created) and completed, makespan, and the
operator's CPU seconds and peak RSS.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from kubernetes import client

from bench.harness import PodClock, Sampler, batch_job, parallel, system, table, write_result

GPUS, NODES, LIMIT = 8, 100, 100


def rates(clock: PodClock, names: list[str], start: float) -> dict[str, float]:
    added = [clock.added[n] for n in names]
    finished = [clock.finished[n] for n in names]
    makespan = max(finished) - start
    return {
        "jobs": len(names),
        "makespan_s": makespan,
        "admitted_per_s": len(names) / (max(added) - start),
        "completed_per_s": len(names) / makespan,
    }


def shunter(count: int, run_for: str) -> dict[str, Any]:
    env = {"SHUNTER_MAX_RUNNING": str(LIMIT)}
    with system(nodes=NODES, gpus_per_node=GPUS, operator_env=env) as s:
        clock = PodClock(s.api, s.namespace).start()
        sampler = Sampler({"operator": s.pid("shunter-operator"), "api": s.pid("shunter-api")})
        names = [f"t{i:05d}" for i in range(count)]
        start = time.monotonic()
        s.create_jobs(names, gpus=GPUS, annotations={"sim.shunter.dev/run-for": run_for})
        submitted = time.monotonic() - start
        pods = [f"{n}-trainer" for n in names]
        clock.wait(lambda: all(p in clock.finished for p in pods), 3600, "all jobs to finish")
        result = rates(clock, pods, start)
        result["submit_s"] = submitted
        result["processes"] = sampler.stop()

        def completed() -> bool:
            items = s.list_jobs()
            return sum(i.get("status", {}).get("phase") == "completed" for i in items) == count

        clock.wait(completed, 600, "every TrainingJob to say completed")
        result["all_completed_in_status_s"] = time.monotonic() - start
        clock.stop()
        return result


def peer(count: int, run_for: str) -> dict[str, Any]:
    with system(nodes=NODES, gpus_per_node=GPUS, with_operator=False) as s:
        clock = PodClock(s.api, s.namespace).start()
        batch = client.BatchV1Api(s.api)
        names = [f"j{i:05d}" for i in range(count)]

        def create(name: str) -> None:
            annotations = {"sim.shunter.dev/run-for": run_for}
            batch.create_namespaced_job(
                s.namespace, batch_job(name, gpus=GPUS, annotations=annotations)
            )

        start = time.monotonic()
        parallel(create, names)
        submitted = time.monotonic() - start

        def pods() -> dict[str, str]:
            return {p.rsplit("-", 1)[0]: p for p in clock.added if p.startswith("j")}

        clock.wait(
            lambda: len(pods()) == count and all(p in clock.finished for p in pods().values()),
            3600,
            "all batch Jobs to finish",
        )
        result = rates(clock, list(pods().values()), start)
        result["submit_s"] = submitted
        clock.stop()
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--run-for", default="5s")
    args = parser.parse_args()
    ours = shunter(args.jobs, args.run_for)
    theirs = peer(args.jobs, args.run_for)
    result = {
        "jobs": args.jobs,
        "run_for": args.run_for,
        "nodes": NODES,
        "limit": LIMIT,
        "shunter": ours,
        "peer_batch_v1_job": theirs,
        "ratio_completed_per_s_shunter_over_peer": ours["completed_per_s"]
        / theirs["completed_per_s"],
    }
    rows = [(f"shunter {k}", v) for k, v in ours.items() if not isinstance(v, dict)]
    rows += [(f"shunter {p} {k}", v) for p, d in ours["processes"].items() for k, v in d.items()]
    rows += [(f"batch/v1 {k}", v) for k, v in theirs.items()]
    rows += [
        (
            "ratio completed/s shunter over batch/v1",
            result["ratio_completed_per_s_shunter_over_peer"],
        )
    ]
    table(f"throughput, {args.jobs} jobs of {args.run_for}, {LIMIT} at once", rows)
    print(f"\nwrote {write_result(f'throughput-{args.jobs}', result)}")


if __name__ == "__main__":
    main()
