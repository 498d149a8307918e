"""Fair sharing in virtual time: the operator's real passes over a simulated cluster.

    python -m bench.fair_share [--minutes 60]

A `World` holds the operator's book and plays the cluster after each pass
(planning.plan_pass): a Pod created runs at once on the node its job was placed on;
a Pod deleted is gone at once (its trainer checkpoints on SIGTERM, so a job resumes
where it stopped); a job whose Pods have run its work in total succeeds. GPU-seconds
are counted from the jobs that run, per queue and per namespace, as an accountant
would from job runtimes.

The bench saturates a cohort: two teams' queues of weights 2:1, no nominal quota of
their own, borrowing a third queue's idle 32 GPUs; both keep far more work queued
than fits. It reports the fairness error (achieved share of the borrowed GPU-seconds
against the weights' 2/3) after each ten minutes, and the same for two namespaces
inside one queue with admission fair sharing (weights equal: 1/2).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shunter.domain.admission import Limits
from shunter.domain.model import Job, JobKey, Phase, PodView, format_time
from shunter.domain.nodes import NodeView, Resources
from shunter.domain.queues import QueueView
from shunter.operator.book import JobBook
from shunter.operator.planning import plan_pass
from shunter.operator.rules import Rules

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def node(name: str, gpus: int = 8) -> NodeView:
    return NodeView(name, (("shunter.dev/node-pool", "gpu"),), (),
                    Resources(gpus=gpus, cpu=64_000, memory=512 * 2**30), True, False)  # fmt: skip


def job(name: str, *, namespace: str = "default", queue: str = "default", gpus: int = 1,
        created: datetime = T0, priority: int = 0, user: str | None = None) -> Job:  # fmt: skip
    meta: dict[str, Any] = {"name": name, "namespace": namespace,
                            "uid": f"uid-{namespace}-{name}", "resourceVersion": "1",
                            "creationTimestamp": format_time(created)}  # fmt: skip
    if user is not None:
        meta["annotations"] = {"shunter.dev/submitted-by": user}
    spec = {"image": "x", "gpus": gpus, "queue": queue, "priority": priority}
    return Job.parse({"metadata": meta, "spec": spec, "status": {}})


class World:
    """The book as the watch would show it after each pass's writes (see the module
    doc). `work` is each job's run time in seconds (default: forever)."""

    def __init__(self, jobs: Iterable[Job], *, queues: Iterable[QueueView],
                 nodes: Iterable[NodeView], rules: Rules,
                 work: dict[JobKey, float] | None = None) -> None:  # fmt: skip
        self.book = JobBook.of(jobs, nodes=nodes, queues=queues)
        self.rules = rules
        self.work = dict(work or {})
        self.version = 1000
        self.done: dict[JobKey, float] = defaultdict(float)  # seconds run, all attempts
        self.started: dict[JobKey, datetime] = {}  # first start
        self.finished: dict[JobKey, datetime] = {}
        self.gpu_seconds: dict[str, float] = defaultdict(float)  # per queue
        self.ns_seconds: dict[str, float] = defaultdict(float)  # per namespace
        self.preemptions = 0
        self.now = T0

    def add(self, job: Job) -> None:
        self.version += 1
        self.book.put_job(replace(job, resource_version=str(self.version)))

    def step(self, now: datetime) -> None:
        """One pass at `now`, its writes, then the cluster until the next pass."""
        self.now = now
        result = plan_pass(self.book, changed=self.book.take_due(now), now=now, rules=self.rules)
        for key, at in result.wake_at.items():
            self.book.wake_at(key, at)
        for key, decision in result.decisions.items():
            job = self.book.jobs[key]
            self.version += 1
            if decision.status.termination is not None and job.status.termination is None:
                self.preemptions += decision.status.termination.cause.value == "preempt"
            self.book.put_job(replace(job, status=decision.status,
                                      resource_version=str(self.version)))  # fmt: skip
            for delete in decision.delete_pods:
                for pod in list(self.book.pods.get(key, {}).values()):
                    if pod.name == delete.name:
                        self.book.remove_pod(pod)
            for manifest in decision.create_pods:
                index = int(manifest["metadata"]["labels"].get("shunter.dev/pod-index", 0))
                self.book.put_pod(self._pod(manifest, decision.status.placement[index], now))
                self.started.setdefault(key, now)

    def advance(self, seconds: float) -> None:
        """The cluster runs for `seconds` after the last pass: running jobs work and
        are counted; those done exit 0."""
        for key, job in list(self.book.active.items()):
            if job.phase is not Phase.RUNNING:
                continue
            self.gpu_seconds[job.spec.queue] += seconds * job.spec.total_gpus
            self.ns_seconds[key.namespace] += seconds * job.spec.total_gpus
            self.done[key] += seconds
            if self.done[key] >= self.work.get(key, float("inf")):
                for pod in list(self.book.pods.get(key, {}).values()):
                    self.book.put_pod(replace(pod, phase="Succeeded", exit_code=0))
                self.finished[key] = self.now + timedelta(seconds=seconds)

    def run(self, until: datetime, step: timedelta) -> None:
        now = self.now
        while now < until:
            self.step(now)
            self.advance(step.total_seconds())
            now += step
        self.now = now

    @staticmethod
    def _pod(manifest: dict[str, Any], node_name: str, now: datetime) -> PodView:
        meta = manifest["metadata"]
        running = {"state": {"running": {"startedAt": format_time(now)}}}
        body = {**manifest, "metadata": {**meta, "uid": meta["name"] + format_time(now)},
                "spec": {**manifest["spec"], "nodeName": node_name},
                "status": {"phase": "Running", "containerStatuses": [running],
                           "conditions": [{"type": "Ready", "status": "True"}]}}  # fmt: skip
        return PodView.parse(body)


def cohort_world(weights: tuple[float, float], *, gpus: int = 32, backlog: int = 400,
                 work: float = 300.0, preemption: str = "never") -> World:  # fmt: skip
    """Two teams' queues (weights as given, no quota of their own) borrowing a pool
    queue's idle GPUs; each team has `backlog` 1-GPU jobs of `work` seconds."""
    queues = [
        QueueView("pool", gpu_quota=gpus, cohort="lab"),
        QueueView("team-a", gpu_quota=0, cohort="lab", weight=weights[0],
                  fair_preemption=preemption),
        QueueView("team-b", gpu_quota=0, cohort="lab", weight=weights[1],
                  fair_preemption=preemption),
    ]  # fmt: skip
    jobs = [job(f"{team}-{i:04d}", namespace=team, queue=team,
                created=T0 + timedelta(seconds=i)) for i in range(backlog)
            for team in ("team-a", "team-b")]  # fmt: skip
    rules = Rules(limits=Limits(max_running=10_000))
    nodes = [node(f"n{i}") for i in range(gpus // 8)]
    return World(jobs, queues=queues, nodes=nodes, rules=rules,
                 work={j.key: work for j in jobs})  # fmt: skip


def queue_world(*, gpus: int = 32, backlog: int = 400, work: float = 300.0,
                half_life: int = 3600) -> World:  # fmt: skip
    """One queue with admission fair sharing; team-a submitted all its jobs before
    team-b's first (in plain FIFO team-b would wait for all of them)."""
    queues = [QueueView("shared", half_life=half_life)]
    jobs = [job(f"a-{i:04d}", namespace="team-a", queue="shared", created=T0 + timedelta(seconds=i))
            for i in range(backlog)]  # fmt: skip
    jobs += [job(f"b-{i:04d}", namespace="team-b", queue="shared",
                 created=T0 + timedelta(seconds=backlog + i)) for i in range(backlog)]  # fmt: skip
    rules = Rules(limits=Limits(max_running=10_000))
    nodes = [node(f"n{i}") for i in range(gpus // 8)]
    return World(jobs, queues=queues, nodes=nodes, rules=rules,
                 work={j.key: work for j in jobs})  # fmt: skip


def error(achieved: dict[str, float], weights: dict[str, float]) -> float:
    """Largest |achieved share - weight share| over the parties, relative to the
    weight share (0.05: within 5 %)."""
    total = sum(achieved.get(k, 0.0) for k in weights)
    whole = sum(weights.values())
    if not total:
        return 1.0
    return max(abs(achieved.get(k, 0.0) / total - w / whole) / (w / whole)
               for k, w in weights.items())  # fmt: skip


def main() -> None:
    from bench.harness import table, write_result

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=int, default=60)
    args = parser.parse_args()
    step = timedelta(seconds=10)
    rows: list[tuple[str, object]] = []
    results: dict[str, Any] = {}
    for label, world, weights, of in (
        ("cohort 2:1", cohort_world((2.0, 1.0)), {"team-a": 2.0, "team-b": 1.0}, "queue"),
        ("queue by usage", queue_world(), {"team-a": 1.0, "team-b": 1.0}, "namespace"),
    ):
        errors = []
        before: dict[str, float] = {}
        for minute in range(10, args.minutes + 1, 10):
            world.run(T0 + timedelta(minutes=minute), step)
            counts = world.gpu_seconds if of == "queue" else world.ns_seconds
            window = {k: counts.get(k, 0.0) - before.get(k, 0.0) for k in weights}
            before = dict(counts)
            errors.append((minute, error(window, weights), error(dict(counts), weights)))
        results[label] = [{"minute": m, "window_error": w, "cumulative_error": c}
                          for m, w, c in errors]  # fmt: skip
        for minute, window_error, _cumulative in errors:
            rows.append((f"{label}: minutes {minute - 10}-{minute} error", f"{window_error:.1%}"))
        rows.append((f"{label}: whole run error", f"{errors[-1][2]:.1%}"))
        after_ten = [w for m, w, _ in errors if m > 10]
        if after_ten:
            rows.append((f"{label}: worst 10-min window after the first", f"{max(after_ten):.1%}"))
    table("fairness error (achieved share against weight), saturated, virtual time", rows)
    print(f"\nwrote {write_result('fair-share', results)}")


if __name__ == "__main__":
    main()
