"""What one reconcile pass costs as the queue grows (the pure decision code alone).

    python -m bench.pass_cost [--queued 100 1000 10000 50000] [--nodes 100 1000 5000]
                              [--queues 100 --per-queue 1000]
                              [--shapes baseline large-2000 [--walk-all]]

100 GPU nodes x 8, 100 jobs running (one per node), N jobs queued behind them (with
--nodes: that many nodes, the same 100 jobs running, so only the cluster grows). Each
measured pass follows one job completing: it decides the completion, admits the next
job and shifts the written queue positions. The operator's incremental book keeps the
queue in order as watch events arrive, so the pass looks only at what changed and at
the head of the queue: its cost should not depend on N.

With --queues: that many TrainingQueues of --per-queue jobs each (ten namespaces per
queue, cohorts of ten queues, each queue a quota of one node and one job running),
once without fair sharing and once with it (every queue with fairSharing weights and
admissionFairSharing, its usage history non-empty): what fair sharing adds to a pass.

With --shapes: Kueue's performance shapes as bench.kueue_shape maps them (cohorts of
TrainingQueues with quota, borrowing limit and lowerPriority preemption; every job of
the shape created and queued; its kwok node count of 64 GPUs), in the pure pass: the
first pass numbers every job and admits up to the quotas, then each measured pass
follows one running job's completion (and lays the Pods of what it admitted over the
book, and takes away those of what it preempted). Issue 26's "pass cost at most 2x the
baseline shape's" for the large-scale shape, without the API server's and kwok's time;
the peak RSS is this process's with the book built (an operator holds the informers'
caches besides). With --walk-all, each shape again with every queue walked in every
pass (the kept walks off: planning.plan_pass's `kept_walks=False`), in the same run.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import table, write_result
from shunter.domain.admission import Limits
from shunter.domain.fairshare import Ledger
from shunter.domain.model import Job, PodView
from shunter.domain.nodes import NodeView, Resources
from shunter.domain.queues import QueueView
from shunter.operator.book import JobBook
from shunter.operator.planning import Pass, plan_pass
from shunter.operator.rules import Rules

NOW = datetime(2026, 3, 1, 12, tzinfo=UTC)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NODES = 100


def _job(name: str, i: int, *, namespace: str = "bench", queue: str = "default",
         **status: object) -> Job:  # fmt: skip
    body = {
        "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}",
                     "resourceVersion": "1", "creationTimestamp":
                     (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z")},
        "spec": {"image": "x", "gpus": 8, "queue": queue},
        "status": status,
    }  # fmt: skip
    return Job.parse(body)


def _pod(job: Job, node: str, phase: str) -> PodView:
    return PodView(
        namespace=job.key.namespace, name=f"{job.key.name}-trainer", uid=f"pod-{job.uid}",
        job_name=job.key.name, job_uid=job.uid, phase=phase, deleting=False,
        node_name=node, ready=phase == "Running", attempt=job.status.attempts,
    )  # fmt: skip


def _carry_out(book: JobBook, result: Pass) -> list[Job]:
    """A pass's decisions as the operator's writes and the cluster would make them:
    each job's new status, its stopped Pods gone, an admitted job's Pod running on its
    placement. The admitted jobs."""
    admitted = []
    for key, decision in result.decisions.items():
        job = replace(book.jobs[key], status=decision.status)
        book.put_job(job)
        for deleted in decision.delete_pods:
            for pod in list(book.pods.get(key, {}).values()):
                if pod.name == deleted.name:
                    book.remove_pod(pod)
        if decision.create_pods:
            book.put_pod(_pod(job, decision.status.placement[0], "Running"))
            admitted.append(job)
    return admitted


def measure(queued: int, passes: int = 50, *, count: int = NODES) -> dict[str, float]:
    """`count` nodes (`--nodes`): the same 100 running jobs and limit of 100, so only
    the cluster grows (the nodes past the first 100 stay free)."""
    nodes = [NodeView(f"n{i}", (), (), Resources(gpus=8), True, False) for i in range(count)]
    running = [_job(f"r{i}", i, phase="running", sequence=i + 1, placement=[f"n{i}"],
                    attempts=1, podsReady=1) for i in range(NODES)]  # fmt: skip
    waiting = [_job(f"q{i:06d}", NODES + i, phase="queued", sequence=NODES + i + 1)
               for i in range(queued)]  # fmt: skip
    pods = [_pod(j, f"n{i}", "Running") for i, j in enumerate(running)]
    book = JobBook.of([*running, *waiting], pods, nodes=nodes)
    rules = Rules(limits=Limits(max_running=NODES))
    _carry_out(book, plan_pass(book, now=NOW, rules=rules))
    book.take_due(NOW)
    times, decided = [], []
    for i in range(passes):
        done = book.jobs[running[i].key]
        book.put_pod(_pod(done, f"n{i}", "Succeeded"))
        start = time.perf_counter()
        result = plan_pass(book, changed=book.take_due(NOW), now=NOW, rules=rules)
        times.append(time.perf_counter() - start)
        decided.append(len(result.decisions))
        _carry_out(book, result)
        book.take_due(NOW)
    return {
        "queued": queued,
        "nodes": count,
        "pass_p50_ms": 1000 * statistics.median(times),
        "pass_max_ms": 1000 * max(times),
        "decisions_per_pass": statistics.mean(decided),
    }


def measure_queues(queues: int, per_queue: int, *, fair: bool, passes: int = 50) -> dict[str, Any]:
    """One pass after a completion with `queues` queues of `per_queue` jobs (see the
    module doc), with or without fair sharing."""
    nodes = [NodeView(f"n{i}", (), (), Resources(gpus=8), True, False) for i in range(queues)]
    views, running, waiting = [], [], []
    for q in range(queues):
        name = f"q{q:03d}"
        history = Ledger(NOW - timedelta(hours=1),
                         {f"ns{n}": 1000.0 * n for n in range(10)},
                         {(f"ns{n}", ""): 1000.0 * n for n in range(10)})  # fmt: skip
        views.append(QueueView(name, gpu_quota=8, cohort=f"c{q // 10}",
                               weight=1.0 + q % 3 if fair else None,
                               half_life=3600 if fair else None,
                               usage=history if fair else None))  # fmt: skip
        running.append(_job(f"r{q}", q, namespace="ns0", queue=name, phase="running",
                            sequence=q + 1, placement=[f"n{q}"], attempts=1,
                            podsReady=1))  # fmt: skip
        for i in range(per_queue):
            n = queues + q * per_queue + i
            waiting.append(_job(f"{name}-{i:05d}", n, namespace=f"ns{i % 10}", queue=name,
                                phase="queued", sequence=n + 1))  # fmt: skip
    pods = [_pod(j, f"n{i}", "Running") for i, j in enumerate(running)]
    book = JobBook.of([*running, *waiting], pods, nodes=nodes, queues=views)
    rules = Rules(limits=Limits(max_running=queues * 2))
    _carry_out(book, plan_pass(book, now=NOW, rules=rules))
    book.take_due(NOW)
    times, decided = [], []
    now = NOW
    for i in range(min(passes, queues)):
        now += timedelta(seconds=1)
        done = book.jobs[running[i].key]
        book.put_pod(_pod(done, f"n{i}", "Succeeded"))
        start = time.perf_counter()
        result = plan_pass(book, changed=book.take_due(now), now=now, rules=rules)
        times.append(time.perf_counter() - start)
        decided.append(len(result.decisions))
        _carry_out(book, result)
        book.take_due(now)
    return {
        "queues": queues,
        "per_queue": per_queue,
        "fair_sharing": fair,
        "pass_p50_ms": 1000 * statistics.median(times),
        "pass_max_ms": 1000 * max(times),
        "decisions_per_pass": statistics.mean(decided),
    }


def measure_shape(name: str, passes: int = 100, kept: bool = True) -> dict[str, Any]:
    from bench.kueue_shape import SHAPES, arrivals, nodes_for, shunter_job, shunter_queues

    shape = SHAPES[name]
    queues = [QueueView.parse(body) for body in shunter_queues(shape)]
    nodes = [NodeView(f"n{i}", (), (), Resources(gpus=64), True, False)
             for i in range(nodes_for(shape))]  # fmt: skip
    jobs = []
    for arrival in arrivals(shape):
        body = shunter_job(arrival, 1.0)
        body["metadata"].update(namespace="bench", uid=f"uid-{arrival.name}",
                                resourceVersion="1", creationTimestamp=(
                                    T0 + timedelta(milliseconds=arrival.offset_ms)
                                ).isoformat().replace("+00:00", "Z"))  # fmt: skip
        jobs.append(Job.parse(body))
    book = JobBook.of(jobs, nodes=nodes, queues=queues)
    rules = Rules(limits=Limits(max_running=len(jobs)))
    now = NOW
    running: list[Job] = []
    # Settling: the first pass numbers every job, the next ones admit up to the quotas.
    start = time.perf_counter()
    for _ in range(10):
        result = plan_pass(book, changed=book.take_due(now), now=now, rules=rules)
        running += _carry_out(book, result)
        if not result.decisions:
            break
    first = time.perf_counter() - start
    settled = sum(1 for job in book.jobs.values() if job.status.phase == "running")
    book.take_due(now)
    times, decided = [], []
    for _ in range(passes):
        now += timedelta(seconds=1)
        while running and book.jobs[running[0].key].status.phase != "running":
            running.pop(0)  # preempted meanwhile
        if not running:
            break
        done = book.jobs[running.pop(0).key]
        book.put_pod(_pod(done, done.status.placement[0], "Succeeded"))
        start = time.perf_counter()
        result = plan_pass(book, changed=book.take_due(now), now=now, rules=rules,
                           kept_walks=kept)  # fmt: skip
        times.append(time.perf_counter() - start)
        decided.append(len(result.decisions))
        running += _carry_out(book, result)
        book.take_due(now)
    return {
        "shape": name if kept else f"{name} (every queue walks)",
        "kept_walks": kept,
        "queues": len(queues),
        "jobs": len(jobs),
        "nodes": len(nodes),
        "settling_s": first,
        "running_after_settling": settled,
        "pass_p50_ms": 1000 * statistics.median(times),
        "pass_p90_ms": 1000 * sorted(times)[int(0.9 * (len(times) - 1))],
        "pass_max_ms": 1000 * max(times),
        "decisions_per_pass": statistics.mean(decided),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, nargs="+", default=[100, 1000, 10_000, 50_000])
    parser.add_argument("--queues", type=int, default=0)
    parser.add_argument("--shapes", nargs="+", default=[],
                        help="Kueue's shapes (bench.kueue_shape), one process each")  # fmt: skip
    parser.add_argument("--passes", type=int, default=100, help="measured passes per shape")
    parser.add_argument("--walk-all", action="store_true",
                        help="also each shape with every queue walked in every pass (no kept"
                             " walks: what they save, in the same run)")  # fmt: skip
    parser.add_argument("--per-queue", type=int, default=1000)
    parser.add_argument("--nodes", type=int, nargs="+", default=[NODES],
                        help="node counts (the same 100 running jobs)")  # fmt: skip
    args = parser.parse_args()
    if args.shapes:  # each in a process of its own: its peak RSS is its own
        variants = (True, False) if args.walk_all else (True,)
        runs = [_in_child(name, args.passes, kept) for kept in variants for name in args.shapes]
        rows = [(f"{r['shape']}: {k}", v) for r in runs for k, v in r.items() if k != "shape"]
        for r in runs:  # against the first shape measured the same way
            first = next(f for f in runs if f["kept_walks"] == r["kept_walks"])
            if r is not first:
                rows.append((f"{r['shape']} / {first['shape']} (pass p50)",
                             r["pass_p50_ms"] / first["pass_p50_ms"]))  # fmt: skip
        for kept, walked in zip(runs, runs[len(args.shapes) :], strict=False):
            rows.append((f"{kept['shape']}: every queue walks / kept walks (pass p50)",
                         walked["pass_p50_ms"] / kept["pass_p50_ms"]))  # fmt: skip
        table("one pass after a completion, Kueue's shapes (all jobs queued)", rows)
        print(f"\nwrote {write_result('pass-cost-shapes', {'runs': runs})}")
        return
    if args.queues:
        runs = [measure_queues(args.queues, args.per_queue, fair=f) for f in (False, True)]
        rows = [(f"fair sharing {'on' if r['fair_sharing'] else 'off'}: {k}", v)
                for r in runs for k, v in r.items()
                if k.startswith(("pass", "decisions"))]  # fmt: skip
        rows.append(("on / off (p50)", runs[1]["pass_p50_ms"] / runs[0]["pass_p50_ms"]))
        table(f"one pass after a completion, {args.queues} queues x {args.per_queue} jobs", rows)
        print(f"\nwrote {write_result('pass-cost-fair', {'runs': runs})}")
        return
    results = [measure(n, count=c) for c in args.nodes for n in args.queued]
    rows = [(f"{r['nodes']} nodes, {r['queued']} queued: {k}", v)
            for r in results for k, v in r.items() if k not in ("queued", "nodes")]  # fmt: skip
    table("one reconcile pass after a completion (100 running)", rows)
    print(f"\nwrote {write_result('pass-cost', {'runs': results})}")


def _in_child(name: str, passes: int, kept: bool = True) -> dict[str, Any]:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        found: dict[str, Any] = pool.apply(measure_shape, (name, passes, kept))
    return found


if __name__ == "__main__":
    main()
