"""Where the time goes in Shunter: N TrainingJobs against the operator, with watches on
the jobs and their Pods, and per job the lag between stages (the counterpart of
`bench.kueue_stages`).

    python -m bench.shunter_stages [--jobs 1000] [--run-for 1s] [--gpus 8] [--max-running 100]
                                   [--policies] [--quiet]

Stages: job `starting` (the operator admitted it and wrote it) -> Pod created (the
operator) -> bound (kube-scheduler) -> Running (kwok) -> Succeeded (kwok, after
run-for) -> job `completed` (the operator), plus Running -> job `running`. The jobs are
created at once (asyncio, 16 in flight) while the operator runs; the slots in use are
printed every 5 s, so a gap between a completion and the next admission shows.
`--policies` installs the chart's admission policies (as `make demo` does) and has the
operator dry-run each job against them as it leaves the queue: what the installer's
policy costs per start. `--quiet` creates the jobs one at a time instead, each once the
one before has completed: the operator's reaction on a quiet cluster.

The same stages are also read from the API server's audit log (its cluster audits the
Pods' status writes and binds too: ClusterSpec.audit_pod_stages), by its own clock (when
it finished each write), so that no client's watch stands between two stages: the
bench's own watches lag when the machine is busy. There a stage is: the operator's
last status write of the job before its Pod's create (the job `starting`: written
first), the Pod's create, kube-scheduler's bind, kwok's first and last status writes
of the Pod (Running, Succeeded), and the operator's last status write of the job
(`completed`), which it sends once it has seen the Pod's Succeeded. "_sent" is when
the server received the operator's write: what comes before it is the operator's
(its watch, its pass, its line of writes), what comes after, the write's own time.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench.harness import summary, system, training_job, write_result
from shunter.devcluster.audit import Write, writes
from shunter.kube import Kube, connect
from shunter.kube.resources import PODS, TRAINING_JOBS

# The chart's policies as `make demo` installs them (release "shunter").
POLICIES = "shunter-trainingjobs,shunter-queue-access"
LAGS = [
    ("submitted", "job_starting"),
    ("job_starting", "pod_created"),
    ("pod_created", "bound"),
    ("bound", "running"),
    ("running", "succeeded"),
    ("succeeded", "job_completed"),
    ("running", "job_running"),
]
SERVER_LAGS = [
    ("job_starting", "pod_created_sent"),
    ("job_starting", "pod_created"),
    ("pod_created", "bound"),
    ("bound", "running"),
    ("running", "succeeded"),
    ("succeeded", "job_completed_sent"),
    ("succeeded", "job_completed"),
]


def server_stages(found: list[Write]) -> dict[str, dict[str, float]]:
    """Per job, when the API server finished the writes of its stages (epoch seconds,
    its clock), from the writes of the bench's namespace in finishing order."""
    status: dict[str, list[Write]] = defaultdict(list)
    pod: dict[str, dict[str, Write]] = defaultdict(dict)
    pod_status: dict[str, list[Write]] = defaultdict(list)
    for w in found:
        if not w.accepted:
            continue
        job = w.name.removesuffix("-trainer")
        if w.resource == "trainingjobs/status" and w.who == "operator":
            status[w.name].append(w)
        elif w.resource == "pods" and w.verb == "create" and w.who == "operator":
            pod[job].setdefault("created", w)
        elif w.resource == "pods/binding":
            pod[job].setdefault("bound", w)
        elif w.resource == "pods/status" and w.who == "kwok":
            pod_status[job].append(w)
    stages: dict[str, dict[str, float]] = {}
    for job, writes_of_pod in pod.items():
        seen = stages[job] = {}
        created = writes_of_pod["created"]
        seen["pod_created"] = created.completed
        seen["pod_created_sent"] = created.received
        before = [w for w in status[job] if w.completed <= created.received]
        if before:
            seen["job_starting"] = before[-1].completed
        if "bound" in writes_of_pod:
            seen["bound"] = writes_of_pod["bound"].completed
        phases = pod_status[job]
        if phases:
            seen["running"] = phases[0].completed
        if len(phases) > 1:
            succeeded = phases[-1]
            seen["succeeded"] = succeeded.completed
            after = [w for w in status[job] if w.received > succeeded.received]
            if after:
                seen["job_completed"] = after[-1].completed
                seen["job_completed_sent"] = after[-1].received
    return stages


def lags(seen: dict[str, dict[str, float]], pairs: list[tuple[str, str]]) -> dict[str, Any]:
    return {
        f"{a} -> {b}": summary([v[b] - v[a] for v in seen.values() if a in v and b in v])
        for a, b in pairs
    }


async def observe(kubeconfig: Any, namespace: str, args: argparse.Namespace) -> dict[str, Any]:
    kube = Kube(connect(kubeconfig))
    seen: dict[str, dict[str, float]] = {}

    def mark(name: str, stage: str) -> None:
        seen.setdefault(name, {}).setdefault(stage, time.monotonic())

    async def watch(resource: Any, on: Callable[[dict[str, Any]], None]) -> None:
        version = (await kube.list(resource, namespace=namespace))["metadata"]["resourceVersion"]
        while True:
            async for kind, obj in kube.watch(
                resource, namespace=namespace, resource_version=version, timeout_seconds=120
            ):
                version = obj["metadata"]["resourceVersion"]
                if kind != "BOOKMARK":
                    on(obj)

    def on_pod(pod: dict[str, Any]) -> None:
        name = pod["metadata"]["name"].removesuffix("-trainer")
        mark(name, "pod_created")
        if (pod.get("spec") or {}).get("nodeName"):
            mark(name, "bound")
        phase = (pod.get("status") or {}).get("phase")
        if phase in ("Running", "Succeeded"):
            mark(name, phase.lower())

    def on_job(job: dict[str, Any]) -> None:
        phase = (job.get("status") or {}).get("phase")
        if phase:
            mark(job["metadata"]["name"], f"job_{phase}")

    watches = [asyncio.create_task(watch(PODS, on_pod)),
               asyncio.create_task(watch(TRAINING_JOBS, on_job))]  # fmt: skip
    start = time.monotonic()
    gate = asyncio.Semaphore(16)
    annotations = {"sim.shunter.dev/run-for": args.run_for}

    async def create(i: int) -> None:
        name = f"s{i:05d}"
        async with gate:
            body = training_job(name, gpus=args.gpus, annotations=annotations)
            await kube.create(TRAINING_JOBS, body, namespace=namespace)
        mark(name, "submitted")

    deadline = start + args.timeout
    if args.quiet:  # one job at a time, each once the one before has completed
        for i in range(args.jobs):
            await create(i)
            while "job_completed" not in seen.get(f"s{i:05d}", {}):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"bench: job {i} did not complete in time")
                await asyncio.sleep(0.05)
    else:
        await asyncio.gather(*(create(i) for i in range(args.jobs)))
    submitted = time.monotonic() - start
    while sum("job_completed" in v for v in seen.values()) < args.jobs:
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: not every job completed in {args.timeout:.0f}s")
        await asyncio.sleep(0.5)
    for task in watches:
        task.cancel()
    await kube.close()

    makespan = max(v["job_completed"] for v in seen.values()) - start
    timeline = []
    for second in range(0, int(makespan) + 1, 5):
        at = start + second
        active = sum(v.get("job_starting", 1e18) <= at < v.get("job_completed", 1e18)
                     for v in seen.values())  # fmt: skip
        waiting = sum(v.get("submitted", 1e18) <= at < v.get("job_starting", 1e18)
                      for v in seen.values())  # fmt: skip
        timeline.append({"t": second, "active": active, "waiting": waiting})
    return {
        "submit_s": submitted,
        "makespan_s": makespan,
        "completed_per_s": args.jobs / makespan,
        "lags": lags(seen, LAGS),
        "timeline": timeline,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--run-for", default="1s")
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--max-running", type=int, default=100)
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--policies", action="store_true")
    parser.add_argument(
        "--quiet",
        action="store_true",
        help="one job at a time (each once the one before completed)",
    )
    args = parser.parse_args()
    env = {"SHUNTER_MAX_RUNNING": str(args.max_running)}
    if args.policies:
        env["SHUNTER_POLICIES"] = POLICIES
    with system(operator_env=env, policies=args.policies, audit_pod_stages=True) as s:
        result = asyncio.run(observe(s.plane.kubeconfig, s.namespace, args))
        server = server_stages(writes(s.plane.audit_log, namespace=s.namespace))
        result["server_lags"] = lags(server, SERVER_LAGS)
    rate, made = result["completed_per_s"], result["submit_s"]
    print(f"{args.jobs} jobs of {args.run_for}: makespan {result['makespan_s']:.1f} s, "
          f"{rate:.1f} completed/s (created in {made:.1f} s)")  # fmt: skip
    for title, key in (("the bench's watches", "lags"), ("the audit log", "server_lags")):
        print(f" by {title}:")
        for stage, lag in result[key].items():
            print(f"  {stage:<32} p50 {lag['p50']:6.3f}  p99 {lag['p99']:6.3f}  n {lag['n']}")
    for row in result["timeline"]:
        print(f"  t={row['t']:4d}s  active {row['active']:4d}  waiting {row['waiting']}")
    label = f"shunter-stages-{args.jobs}-{args.run_for}" + ("-policies" if args.policies else "")
    label += "-quiet" if args.quiet else ""
    print(f"\nwrote {write_result(label, result)}")


if __name__ == "__main__":
    main()
