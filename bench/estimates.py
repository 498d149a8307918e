"""Start-time estimates on a synthetic trace, in virtual time (issue 25, "Measure").

    python -m bench.estimates [--seeds 1 2 3 4 5] [--jobs 300] [--no-cost]
                              [--no-accuracy] [--shape plain|fair|cohort|preempt]

The operator's real pass (`planning.plan_pass` over a `JobBook`) decides admissions
on a virtual clock; this module plays the API server (a decision's status is in the
book at once), the kubelet (Pods start START_DELAY after admission, succeed after the
job's true runtime) and the trainers (progress reports). The trace's parameters are
in bench/RESULTS.md, written there before the first measurement.

Each seed runs twice with the same trace: once to learn every job's actual start,
then again to take the estimates at each job's submit and at half of its actual wait
(the simulation is deterministic): ours (`estimates.plan` as the operator computes
it, runtimes learned from the jobs completed so far) and the Slurm-style baseline
(the same simulation with maxRuntimeSeconds only; 24 h for a job without one).

The cost part builds 10,000 queued jobs and measures a what-if as the API answers it
(`shunter.api.whatif.answer_what_if` on the plan parsed from its published JSON) and
the operator's CPU for a virtual minute of events with estimates on and off.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import heapq
import itertools
import json
import math
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.harness import percentile, table, write_result
from shunter.domain import estimates
from shunter.domain.admission import Limits
from shunter.domain.estimates import Estimate, Learned, World
from shunter.domain.model import Job, JobKey, JobStatus, Phase, PodView, Progress, format_time
from shunter.domain.nodes import NodeView, Resources
from shunter.domain.queues import LOWER_PRIORITY, QueueView
from shunter.domain.whatif import timeline_of
from shunter.operator.book import JobBook
from shunter.operator.estimating import dump, learned_from
from shunter.operator.planning import plan_pass
from shunter.operator.preemption import for_estimates
from shunter.operator.rules import Rules

T0 = datetime(2026, 1, 1, tzinfo=UTC)
START_DELAY = 2.0
REPORT_EVERY = 60.0
PLAN_EVERY = 5.0  # SHUNTER_ESTIMATE_SECONDS: a plan is reused this long
SLURM_DEFAULT = 86_400  # the baseline's time limit for a job without one
MIN_WAIT = 60.0
MAX_PASSES = 50


@dataclass(frozen=True)
class TraceParams:
    jobs: int = 300
    warmup: int = 100
    nodes: int = 4
    gpus_per_node: int = 8
    load: float = 0.9
    gpus: tuple[int, ...] = (1, 2, 4, 8)
    gpu_weights: tuple[float, ...] = (0.4, 0.3, 0.2, 0.1)
    image_medians_min: tuple[float, ...] = (10, 20, 40, 80, 160)
    sigma: float = 0.7
    limited: float = 0.6
    overestimate: tuple[float, float] = (1.5, 4.0)
    limit_round: int = 900
    reporting: float = 0.4
    total_steps: int = 10_000
    rate_noise: float = 0.1


TRACE = TraceParams()


@dataclass(frozen=True)
class Spec:
    name: str
    namespace: str
    image: str
    arrival: float
    gpus: int
    runtime: float
    limit: int | None
    reports: bool


def make_trace(seed: int, p: TraceParams = TRACE) -> list[Spec]:
    rng = random.Random(seed)
    sigma_mean = math.exp(p.sigma**2 / 2)
    mean_runtime = statistics.fmean(p.image_medians_min) * 60 * sigma_mean
    mean_gpus = sum(g * w for g, w in zip(p.gpus, p.gpu_weights, strict=True))
    gap = mean_runtime * mean_gpus / (p.nodes * p.gpus_per_node * p.load)
    specs, t = [], 0.0
    for i in range(p.jobs):
        t += rng.expovariate(1 / gap)
        image = rng.randrange(len(p.image_medians_min))
        runtime = rng.lognormvariate(math.log(p.image_medians_min[image] * 60), p.sigma)
        limit = None
        if rng.random() < p.limited:
            over = runtime * rng.uniform(*p.overestimate)
            limit = int(math.ceil(over / p.limit_round) * p.limit_round)
        specs.append(Spec(f"j{i:04d}", ("team-a", "team-b")[i % 2], f"bench/image-{image}", t,
                          rng.choices(p.gpus, p.gpu_weights)[0], runtime, limit,
                          rng.random() < p.reporting))  # fmt: skip
    return specs


def _time(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def _node(name: str, gpus: int) -> NodeView:
    return NodeView(name, (("shunter.dev/node-pool", "gpu"),), (),
                    Resources(gpus=gpus, cpu=64_000, memory=512 * 2**30), True, False)  # fmt: skip


LIMITS = Limits(max_running=1000)
RULES = Rules(limits=LIMITS)


class Simulation:
    """The operator's real pass on a virtual clock; `probes` are called at given times
    (after the state at that instant has settled)."""

    def __init__(self, specs: list[Spec], params: TraceParams, seed: int) -> None:
        nodes = [_node(f"gpu-{i}", params.gpus_per_node) for i in range(params.nodes)]
        self.book = JobBook.of([], nodes=nodes, queues=[QueueView("default")])
        self.specs = {s.name: s for s in specs}
        self.params, self.rng = params, random.Random(f"{seed}/reports")
        self.now = 0.0
        self.events: list[tuple[float, int, Callable[[], None]]] = []
        self.order = itertools.count()
        self.versions = itertools.count(1)
        self.started: dict[str, float] = {}  # job -> admitted at
        self.completed: list[tuple[str, str, int, float]] = []  # the mirror's rows
        self.done = 0
        for spec in specs:
            self.at(spec.arrival, functools.partial(self.arrive, spec))

    def at(self, t: float, action: Callable[[], None]) -> None:
        heapq.heappush(self.events, (t, next(self.order), action))

    def run(self, probes: list[tuple[float, Callable[[], None]]] = ()) -> None:  # type: ignore[assignment]
        for t, probe in probes:
            self.at(t, probe)
        while self.done < len(self.specs):
            t = self.events[0][0]
            self.now = max(self.now, t)
            probes_now = []
            while self.events and self.events[0][0] <= self.now:
                _, _, action = heapq.heappop(self.events)
                if getattr(action, "probe", False):
                    probes_now.append(action)
                else:
                    action()
            self.settle()
            for probe in probes_now:
                probe()

    def settle(self) -> None:
        now = _time(self.now)
        for _ in range(MAX_PASSES):
            result = plan_pass(self.book, changed=self.book.take_due(now), now=now, rules=RULES)
            if not result.decisions:
                return
            for key, decision in result.decisions.items():
                before = self.book.jobs[key]
                job = self.write(before, decision.status)
                if before.queued and not job.queued:
                    self.started[key.name] = self.now
                for manifest in decision.create_pods:
                    self.create_pod(job, manifest["metadata"]["name"])
        raise RuntimeError(f"no settled state at {self.now:.0f}s")

    def write(self, job: Job, status: JobStatus) -> Job:
        job = replace(job, status=status, resource_version=str(next(self.versions)))
        self.book.put_job(job)
        return job

    def arrive(self, spec: Spec) -> None:
        meta = {"name": spec.name, "namespace": spec.namespace, "uid": f"uid-{spec.name}",
                "resourceVersion": str(next(self.versions)),
                "creationTimestamp": format_time(_time(spec.arrival))}  # fmt: skip
        body: dict[str, Any] = {"metadata": meta,
                                "spec": {"image": spec.image, "gpus": spec.gpus}}  # fmt: skip
        if spec.limit is not None:
            body["spec"]["maxRuntimeSeconds"] = spec.limit
        self.book.put_job(Job.parse(body))

    def create_pod(self, job: Job, name: str) -> None:
        pod = PodView(namespace=job.key.namespace, name=name, uid=f"{name}-1",
                      job_name=job.key.name, job_uid=job.uid, phase="Pending", deleting=False,
                      node_name=job.status.placement[0], attempt=job.status.attempts)  # fmt: skip
        self.book.put_pod(pod)
        self.at(self.now + START_DELAY, lambda: self.start_pod(job.key, pod))

    def start_pod(self, key: JobKey, pod: PodView) -> None:
        self.book.put_pod(replace(pod, phase="Running", ready=True, started_at=_time(self.now)))
        spec = self.specs[key.name]
        began = self.now
        self.at(self.now + spec.runtime, lambda: self.finish(key, pod, began))
        if spec.reports:
            self.at(self.now + REPORT_EVERY, lambda: self.report(key, began))

    def report(self, key: JobKey, began: float) -> None:
        job = self.book.jobs[key]
        if job.phase is not Phase.RUNNING:
            return
        spec = self.specs[key.name]
        rate = self.params.total_steps / spec.runtime
        step = min(self.params.total_steps - 1, int((self.now - began) * rate))
        noisy = rate * self.rng.uniform(1 - self.params.rate_noise, 1 + self.params.rate_noise)
        progress = Progress(step=step, reported_at=_time(self.now), attempt=1,
                            total_steps=self.params.total_steps, throughput=noisy)  # fmt: skip
        self.write(job, replace(job.status, progress=progress))
        self.at(self.now + REPORT_EVERY, lambda: self.report(key, began))

    def finish(self, key: JobKey, pod: PodView, began: float) -> None:
        self.book.put_pod(replace(pod, phase="Succeeded", exit_code=0, ready=False,
                                  started_at=_time(began)))  # fmt: skip
        spec = self.specs[key.name]
        self.completed.append((spec.namespace, spec.image, spec.gpus,
                               self.now - self.started[key.name]))  # fmt: skip
        self.done += 1


def _world(sim: Simulation, *, baseline: bool) -> World:
    book = sim.book
    active, waiting = list(book.active.values()), list(book.waiting())
    if baseline:
        active = [_slurm(j) for j in active]
        waiting = [_slurm(j) for j in waiting]
    return World(now=_time(sim.now), limits=LIMITS, queues=dict(book.queues),
                 nodes=list(book.nodes.values()), foreign=[], active=active,
                 waiting=waiting)  # fmt: skip


def _slurm(job: Job) -> Job:
    """What the baseline knows of a job: its time limit (the default without one)."""
    spec = replace(job.spec, max_runtime_seconds=job.spec.max_runtime_seconds or SLURM_DEFAULT)
    return replace(job, spec=spec, status=replace(job.status, progress=None))


class Estimator:
    """A kept plan per kind, computed again when older than PLAN_EVERY."""

    def __init__(self, sim: Simulation, *, baseline: bool) -> None:
        self.sim, self.baseline = sim, baseline
        self.kept: estimates.Plan | None = None
        self.at = -math.inf
        self.seconds: list[float] = []

    def estimate(self, name: str) -> Estimate | None:
        spec = self.sim.specs[name]
        key = JobKey(spec.namespace, name)
        stale = self.kept is None or self.sim.now - self.at >= PLAN_EVERY
        if stale or key not in self.kept.estimates:  # type: ignore[union-attr]
            # (a job newer than the plan: the next plan, within PLAN_EVERY, has it)
            learned = Learned() if self.baseline else learned_from(self.sim.completed)
            began = time.perf_counter()
            self.kept = estimates.plan(_world(self.sim, baseline=self.baseline), learned=learned)
            self.seconds.append(time.perf_counter() - began)
            self.at = self.sim.now
        assert self.kept is not None
        return self.kept.estimate(key)


def _probe(action: Callable[[], None]) -> Callable[[], None]:
    action.probe = True  # type: ignore[attr-defined]
    return action


def run_seed(seed: int, params: TraceParams) -> dict[str, Any]:
    specs = make_trace(seed, params)
    truth = Simulation(specs, params, seed)
    truth.run()
    actual = truth.started
    measured = [s for s in specs[params.warmup :] if actual[s.name] - s.arrival >= MIN_WAIT]
    sim = Simulation(specs, params, seed)
    ours, base = Estimator(sim, baseline=False), Estimator(sim, baseline=True)
    taken: dict[tuple[str, str, str], Estimate | None] = {}
    probes = []
    for spec in measured:
        half = spec.arrival + (actual[spec.name] - spec.arrival) / 2
        for moment, t in (("submit", spec.arrival), ("half", half)):

            def take(name: str = spec.name, moment: str = moment) -> None:
                taken[("ours", moment, name)] = ours.estimate(name)
                taken[("baseline", moment, name)] = base.estimate(name)

            probes.append((t, _probe(take)))
    sim.run(probes)
    assert sim.started == actual, "the replay must be the same run"
    row: dict[str, Any] = {"measured": len(measured)}
    for moment in ("submit", "half"):
        for kind in ("ours", "baseline"):
            errors, ratios = [], []
            for spec in measured:
                e = taken.get((kind, moment, spec.name))
                if e is None or e.start is None:
                    continue
                error = abs((e.start - _time(actual[spec.name])).total_seconds())
                errors.append(error)
                ratios.append(error / (actual[spec.name] - spec.arrival))
            row[f"{kind}_{moment}_median_error_min"] = percentile(errors, 50) / 60
            row[f"{kind}_{moment}_median_error_over_wait"] = percentile(ratios, 50)
            row[f"{kind}_{moment}_coverage"] = len(errors) / len(measured) if measured else 0
    waits = [actual[s.name] - s.arrival for s in measured]
    row["median_wait_min"] = percentile(waits, 50) / 60
    row["plans"] = len(ours.seconds)
    row["plan_p50_ms"] = percentile(ours.seconds, 50) * 1000
    return row


# -- cost at 10,000 queued jobs --------------------------------------------------------


# The queues of the cost part's world (`--shape`): "plain" (two StrictFIFO queues,
# every job in "default": the plan is appended to), or with a rule under which the
# plan is simulated in full each time: "fair" (admission fair sharing between the two
# namespaces in "default"), "cohort" (the queued jobs split between two queues of 256
# GPUs in a fair cohort, the running ones borrowing 144 of them), "preempt" ("default"
# preempts lower priorities; a quarter of the queued jobs have priority 1).
SHAPES = {
    "plain": (QueueView("default"), QueueView("spare")),
    "fair": (QueueView("default", half_life=3600), QueueView("spare")),
    "cohort": tuple(
        QueueView(n, gpu_quota=256, cohort="c", weight=1.0) for n in ("default", "spare")
    ),
    "preempt": (QueueView("default", preemption=LOWER_PRIORITY), QueueView("spare")),
}


def big_book(queued: int, *, seed: int = 1, shape: str = "plain") -> JobBook:
    rng = random.Random(seed)
    nodes = [_node(f"gpu-{i}", 8) for i in range(64)]
    jobs = []
    for i in range(400):  # 512 GPUs: 400 running jobs of 1 or 2 GPUs, placed
        node = f"gpu-{i % 64}"
        body = {"metadata": {"name": f"r{i}", "namespace": "team-a", "uid": f"r{i}",
                             "resourceVersion": "1", "creationTimestamp": format_time(T0)},
                "spec": {"image": "bench/image-0", "gpus": 1, "maxRuntimeSeconds":
                         rng.choice([3600, 7200, 14400])},
                "status": {"phase": "running", "admittedAt": format_time(T0),
                           "runningSince": format_time(T0), "placement": [node],
                           "sequence": i + 1}}  # fmt: skip
        jobs.append(Job.parse(body))
    for i in range(queued):
        created = T0 + timedelta(seconds=i)
        team = ("team-a", "team-b")[i % 2]
        body = {"metadata": {"name": f"q{i}", "namespace": team,
                             "uid": f"q{i}", "resourceVersion": str(i + 2),
                             "creationTimestamp": format_time(created)},
                "spec": {"image": f"bench/image-{i % 5}", "gpus": rng.choice([1, 2, 4, 8]),
                         "maxRuntimeSeconds": rng.choice([1800, 3600, 7200, 14400])},
                "status": {"phase": "queued", "sequence": 1000 + i}}  # fmt: skip
        spec: dict[str, Any] = body["spec"]  # type: ignore[assignment]
        if shape == "cohort":
            spec["queue"] = ("default", "spare")[(i // 2) % 2]
        if shape == "preempt":
            spec["priority"] = rng.choice([0, 0, 0, 1])
        jobs.append(Job.parse(body))
    return JobBook.of(jobs, nodes=nodes, queues=SHAPES[shape])


def _world_of(book: JobBook, now: datetime) -> World:
    """The world the operator plans from (shunter.operator.estimating)."""
    return World(now=now, limits=LIMITS, queues=dict(book.queues),
                 nodes=list(book.nodes.values()), foreign=[], active=list(book.active.values()),
                 waiting=list(book.waiting()), preempt=for_estimates(RULES))  # fmt: skip


def what_if_cost(queued: int, requests: int, *, shape: str = "plain") -> dict[str, float]:
    from shunter.api.whatif import answer_what_if

    book = big_book(queued, shape=shape)
    now = T0 + timedelta(seconds=queued + 10)
    world = _world_of(book, now)
    began = time.perf_counter()
    kept = estimates.plan(world, learned=Learned())
    plan_s = time.perf_counter() - began
    began = time.perf_counter()
    body, timeline = dump(kept)
    dump_s = time.perf_counter() - began
    began = time.perf_counter()
    light = estimates.parse(json.loads(body))
    parse_estimates_s = time.perf_counter() - began
    assert light is not None
    began = time.perf_counter()
    found = estimates.parse(json.loads(body), json.loads(timeline))
    assert found is not None
    held = found
    timeline_of(held)
    parse_s = time.perf_counter() - began
    # A view of one queued job reads its estimate from the parsed estimates.
    keys = list(light.estimates)
    began = time.perf_counter()
    for key in keys:
        light.estimate(key)
    lookup_us = (time.perf_counter() - began) / len(keys) * 1e6

    async def allowed(_queue: str) -> bool:
        return True

    async def ask(requests: int) -> list[float]:
        rng, times = random.Random(2), []
        for i in range(requests):
            gpus = rng.choice([1, 2, 4, 8])
            hypothetical = Job.parse({
                "metadata": {"name": f"whatif-{i}", "namespace": "team-a", "uid": "",
                             "creationTimestamp": format_time(now)},
                "spec": {"image": "bench/image-1", "gpus": gpus, "maxRuntimeSeconds": 3600,
                         "priority": rng.choice([0, 0, 0, 1])},
            })  # fmt: skip
            began = time.perf_counter()
            await answer_what_if(hypothetical, held, now=now, queues=dict(book.queues),
                                 holders=list(book.active.values()), allowed=allowed)  # fmt: skip
            times.append(time.perf_counter() - began)
        return times

    times = asyncio.run(ask(requests))
    return {"queued": queued, "plan_s": plan_s, "dump_s": dump_s,
            "plan_json_mb": (len(body) + len(timeline)) / 1e6,
            "estimates_json_mb": len(body) / 1e6, "timeline_json_mb": len(timeline) / 1e6,
            "parse_estimates_s": parse_estimates_s, "estimate_lookup_us": lookup_us,
            "parse_s": parse_s, "what_if_p50_ms": percentile(times, 50) * 1000,
            "what_if_p99_ms": percentile(times, 99) * 1000,
            "what_if_max_ms": max(times) * 1000}  # fmt: skip


def operator_cpu(queued: int, *, on: bool, seconds: float = 60.0, rate: float = 10.0,
                 every: float = PLAN_EVERY, shape: str = "plain") -> dict[str, float]:  # fmt: skip
    """CPU seconds for `seconds` of events at `rate` per second at `queued` jobs: a pass
    per event (a new job), plus with estimates on the kept plan when the operator's
    rule says it is due (every `every` at most, at most a fifth of the time), brought up
    to date as the operator does (`estimates.replan`: kept, new jobs appended, or
    simulated again in full)."""
    book = big_book(queued, shape=shape)
    cpu_pass = cpu_plan = 0.0
    plans = 0
    last_plan, last_seconds = -math.inf, 0.0
    kept: estimates.Plan | None = None
    learned, how = Learned(), {"full": 0, "appended": 0, "kept": 0}
    for i in range(int(seconds * rate)):
        t = i / rate
        now = T0 + timedelta(seconds=queued + 10 + t)
        body = {"metadata": {"name": f"n{i}", "namespace": "team-a", "uid": f"n{i}",
                             "resourceVersion": str(10**6 + i),
                             "creationTimestamp": format_time(now)},
                "spec": {"image": "bench/image-0", "gpus": 1}}  # fmt: skip
        job = Job.parse(body)
        book.put_job(job)
        began = time.process_time()
        result = plan_pass(book, changed={job.key}, now=now, rules=RULES)
        for key, decision in result.decisions.items():
            book.put_job(replace(book.jobs[key], status=decision.status))
        cpu_pass += time.process_time() - began
        if on and t - last_plan >= max(every, 5 * last_seconds):
            world = _world_of(book, now)
            began = time.process_time()
            kept, done = estimates.replan(kept, world, learned=learned)
            how[done] += 1
            if done != "kept":
                dump(kept)
            last_seconds = time.process_time() - began
            cpu_plan += last_seconds
            last_plan, plans = t, plans + 1
    return {"queued": queued, "estimates": on, "virtual_s": seconds, "events": seconds * rate,
            "cpu_pass_s": cpu_pass, "cpu_plan_s": cpu_plan, "plans": plans,
            **{f"plans_{k}": v for k, v in how.items()},
            "cpu_s_per_min": (cpu_pass + cpu_plan) * 60 / seconds}  # fmt: skip


def aggregate(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for key in runs[0]:
        values = [float(r[key]) for r in runs]
        out[key] = {"mean": statistics.fmean(values),
                    "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
                    "min": min(values), "max": max(values)}  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--jobs", type=int, default=TRACE.jobs)
    parser.add_argument("--queued", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--no-accuracy", action="store_true")
    parser.add_argument("--no-cost", action="store_true")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="plain",
                        help="the queues of the cost part's world (SHAPES)")  # fmt: skip
    args = parser.parse_args()
    params = replace(TRACE, jobs=args.jobs)
    result: dict[str, Any] = {"trace": asdict(params), "seeds": args.seeds, "shape": args.shape}
    if not args.no_accuracy:
        runs = []
        for seed in args.seeds:
            began = time.perf_counter()
            row = run_seed(seed, params)
            row["wall_s"] = time.perf_counter() - began
            runs.append(row)
            ours = row["ours_half_median_error_over_wait"]
            print(f"seed {seed}: half-wait error/wait ours {ours:.2f}"
                  f" baseline {row['baseline_half_median_error_over_wait']:.2f};"
                  f" {row['wall_s']:.0f}s wall", flush=True)  # fmt: skip
        summary = aggregate(runs)
        table(f"accuracy: mean / sd / min / max over seeds {args.seeds}",
              [(k, f"{v['mean']:.3f} / {v['sd']:.3f} / {v['min']:.3f} / {v['max']:.3f}")
               for k, v in summary.items()])  # fmt: skip
        result.update(runs=runs, summary=summary)
    if not args.no_cost:
        cost = what_if_cost(args.queued, args.requests, shape=args.shape)
        table(f"what-if at {args.queued} queued jobs ({args.shape})", list(cost.items()))
        cpu = [operator_cpu(args.queued, on=on, shape=args.shape) for on in (False, True)]
        for row in cpu:
            table(
                f"operator CPU, estimates {'on' if row['estimates'] else 'off'}", list(row.items())
            )
        result.update(what_if=cost, operator_cpu=cpu)
    print(f"\nwrote {write_result('estimates', result)}")


if __name__ == "__main__":
    main()
