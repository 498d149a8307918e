"""What one reconcile pass costs as the queue grows (the pure decision code alone).

    python -m bench.pass_cost [--queued 100 1000 10000 50000] [--nodes 100 1000 5000]
                              [--queues 100 --per-queue 1000]

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
"""

from __future__ import annotations

import argparse
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
from shunter.operator.planning import plan_pass
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
    settle = plan_pass(book, now=NOW, rules=rules)
    for key, decision in settle.decisions.items():
        book.put_job(replace(book.jobs[key], status=decision.status))
    book.take_due(NOW)
    times, decided = [], []
    for i in range(passes):
        done = book.jobs[running[i].key]
        book.put_pod(_pod(done, f"n{i}", "Succeeded"))
        start = time.perf_counter()
        result = plan_pass(book, changed=book.take_due(NOW), now=NOW, rules=rules)
        times.append(time.perf_counter() - start)
        decided.append(len(result.decisions))
        for key, decision in result.decisions.items():
            job = replace(book.jobs[key], status=decision.status)
            book.put_job(job)
            if decision.create_pods:  # the admitted job's Pod shows up running
                book.put_pod(_pod(job, decision.status.placement[0], "Running"))
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
    settle = plan_pass(book, now=NOW, rules=rules)
    for key, decision in settle.decisions.items():
        book.put_job(replace(book.jobs[key], status=decision.status))
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
        for key, decision in result.decisions.items():
            job = replace(book.jobs[key], status=decision.status)
            book.put_job(job)
            if decision.create_pods:
                book.put_pod(_pod(job, decision.status.placement[0], "Running"))
        book.take_due(now)
    return {
        "queues": queues,
        "per_queue": per_queue,
        "fair_sharing": fair,
        "pass_p50_ms": 1000 * statistics.median(times),
        "pass_max_ms": 1000 * max(times),
        "decisions_per_pass": statistics.mean(decided),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queued", type=int, nargs="+", default=[100, 1000, 10_000, 50_000])
    parser.add_argument("--queues", type=int, default=0)
    parser.add_argument("--per-queue", type=int, default=1000)
    parser.add_argument("--nodes", type=int, nargs="+", default=[NODES],
                        help="node counts (the same 100 running jobs)")  # fmt: skip
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
