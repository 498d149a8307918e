"""The kept plan brought up to date (shunter.domain.estimates.replan): whatever it
reuses, it says what a full simulation of the same queue says."""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shunter.domain.admission import Limits
from shunter.domain.estimates import (
    Learned,
    Stops,
    World,
    estimates_raw,
    parse,
    plan,
    replan,
    timeline_raw,
)
from shunter.domain.model import Job, JobKey, Phase, StartRange, format_time
from shunter.domain.queues import LOWER_PRIORITY, QueueView
from shunter.operator.book import JobBook
from shunter.operator.planning import plan_pass
from shunter.operator.rules import Rules
from tests.support.builders import a_node, a_pod_of, a_training_job

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def running(name: str, rng: random.Random, node: str) -> Job:
    return (a_training_job(name, rng.choice(["a", "b"])).with_gpus(rng.choice([1, 2, 4]))
            .created_at(at(-5000)).with_spec(maxRuntimeSeconds=rng.choice([600, 1800, 3600]))
            .in_phase("running", admittedAt=format_time(at(-rng.randint(0, 500))),
                      runningSince=format_time(at(-100)), placement=[node]).job())  # fmt: skip


def queued(name: str, rng: random.Random, sequence: int, queues: list[str]) -> Job:
    builder = (a_training_job(name, rng.choice(["a", "b"])).created_at(at(sequence))
               .with_gpus(rng.choice([1, 1, 2, 4, 8, 16])).with_priority(rng.choice([0, 0, 1]))
               .with_spec(queue=rng.choice(queues)))  # fmt: skip
    if rng.random() < 0.8:
        builder = builder.with_spec(maxRuntimeSeconds=rng.choice([300, 900, 3600]))
    status: dict[str, object] = {"sequence": sequence}
    if rng.random() < 0.05:
        status.update(notBefore=format_time(at(rng.randint(10, 2000))), reason="BackOff")
    return builder.in_phase("queued", **status).job()


def a_world(seed: int, *, queued_jobs: int) -> tuple[World, random.Random]:
    rng = random.Random(seed)
    queues = {"strict": QueueView("strict"), "best": QueueView("best", strategy="BestEffortFIFO")}
    nodes = [a_node(f"n{i}", gpus=8) for i in range(3)]
    active = [running(f"r{i}", rng, f"n{i % 3}") for i in range(4)]
    waiting = [
        queued(f"q{i}", rng, i + 1, ["strict", "strict", "best"]) for i in range(queued_jobs)
    ]
    limits = Limits(max_running=100, namespace_gpus=rng.choice([0, 0, 12]))
    return World(now=T0, limits=limits, queues=queues, nodes=nodes, foreign=[],
                 active=active, waiting=waiting), rng  # fmt: skip


def tail(world: World, rng: random.Random, count: int) -> list[Job]:
    """New jobs behind every queued one (priority 0 behind priority 1 only if created
    later... so these take the lowest priority and the latest sequence)."""
    top = max(j.status.sequence or 0 for j in world.waiting)
    jobs = []
    for i in range(count):
        job = queued(f"new{top + 1 + i}", rng, top + 1 + i, ["strict", "strict", "best"])
        jobs.append(replace(job, spec=replace(job.spec, priority=-1)))
    return jobs


def same(a: object, b: object) -> None:
    assert a.estimates == b.estimates  # type: ignore[attr-defined]
    assert a.slots == b.slots  # type: ignore[attr-defined]


def test_appended_jobs_are_planned_as_a_full_simulation_plans_them() -> None:
    hows = []
    for seed in range(40):
        world, rng = a_world(seed, queued_jobs=30 + (seed * 7) % 40)
        kept = plan(world, learned=Learned())
        grown = replace(world, waiting=[*world.waiting, *tail(world, rng, 1 + seed % 3)])
        again, how = replan(kept, grown, learned=kept.basis.learned)  # type: ignore[union-attr]
        same(again, plan(grown, learned=Learned()))
        more = replace(grown, waiting=[*grown.waiting, *tail(grown, rng, 2)])
        third, how2 = replan(again, more, learned=kept.basis.learned)  # type: ignore[union-attr]
        same(third, plan(more, learned=Learned()))
        hows += [how, how2]
    # Full where a queue of a new job was looked past at the plan's first instant (a
    # BestEffortFIFO queue shorter than its lookahead, a StrictFIFO one whose jobs are
    # all capped or never fit): a good share is replayed all the same.
    assert hows.count("appended") >= 20, hows


def test_nothing_the_plan_reads_changed_keeps_the_plan() -> None:
    world, _ = a_world(1, queued_jobs=20)
    learned = Learned()
    kept = plan(world, learned=learned)
    first = world.waiting[0]
    written = replace(first, resource_version="99", status=replace(
        first.status, estimated_start=at(5), estimated_range=StartRange(at(1), at(9)),
        queue_position=1))  # fmt: skip
    later = replace(world, now=at(1), waiting=[written, *world.waiting[1:]])
    again, how = replan(kept, later, learned=learned)
    assert (again, how) == (kept, "kept")


def test_any_other_change_simulates_again() -> None:
    world, rng = a_world(2, queued_jobs=20)
    learned = Learned()
    kept = plan(world, learned=learned)
    first = world.waiting[0]
    bumped = replace(first, spec=replace(first.spec, priority=5))
    cases = {
        "a priority": replace(world, waiting=[bumped, *world.waiting[1:]]),
        "a job ahead of others": replace(
            world,
            waiting=[
                *world.waiting,
                replace(tail(world, rng, 1)[0], spec=replace(first.spec, priority=9)),
            ],
        ),
        "a job gone": replace(world, waiting=world.waiting[1:]),
        "a node": replace(world, nodes=world.nodes[1:]),
        "older than REBASE": replace(world, now=at(61)),
    }
    for what, changed in cases.items():
        again, how = replan(kept, changed, learned=learned)
        assert how == "full", what
        same(again, plan(changed, learned=learned))
    assert replan(kept, world, learned=Learned({("a", "x", 1): (1.0, 2.0, 3.0)}))[1] == "full"


def test_a_progress_report_counts_only_when_it_moves_the_end() -> None:
    base = (a_training_job("r", "a").with_gpus(8).created_at(at(-100))
            .in_phase("running", admittedAt=format_time(at(-100)),
                      runningSince=format_time(at(-100)), placement=["n0"])
            .with_progress(1000, totalSteps=10_000, throughput=10.0,
                           reportedAt=format_time(at(0))).job())  # fmt: skip

    def with_progress(step: int) -> Job:
        assert base.status.progress is not None
        progress = replace(base.status.progress, step=step)
        return replace(base, status=replace(base.status, progress=progress))

    waiting = [a_training_job("q", "a").with_gpus(8).created_at(at(1))
               .with_spec(maxRuntimeSeconds=60).in_phase("queued", sequence=1).job()]  # fmt: skip
    world = World(now=T0, limits=Limits(max_running=10), queues={}, nodes=[a_node("n0", gpus=8)],
                  foreign=[], active=[with_progress(1000)], waiting=waiting)  # fmt: skip
    learned = Learned()
    kept = plan(world, learned=learned)  # 900 s left
    near = replan(kept, replace(world, active=[with_progress(1500)]), learned=learned)
    assert near[1] == "kept"  # 50 s earlier: within a tenth of the 900 s left
    far = replan(kept, replace(world, active=[with_progress(3000)]), learned=learned)
    assert far[1] == "full"  # 200 s earlier


def test_an_appended_plan_is_published_as_a_new_version_of_the_same_instant() -> None:
    # Queue "strict" has jobs that wait for GPUs: a job joining its end is looked at
    # later than the plan's first instant.
    world, rng = a_world(1, queued_jobs=60)
    kept = plan(world, learned=Learned())
    grown = replace(world, now=at(5), waiting=[*world.waiting, *tail(world, rng, 1)])
    again, how = replan(kept, grown, learned=kept.basis.learned)  # type: ignore[union-attr]
    assert how == "appended"
    assert again.computed_at == kept.computed_at  # as of the kept plan's instant
    assert again.version == at(5) > kept.version
    body = estimates_raw(again)
    assert parse(body) is not None
    older = timeline_raw(kept)
    assert parse(body, older) is None  # the parts of two versions never mix
    assert parse({**body, "format": 1}) is None  # an older operator's plan: none


def test_where_the_pass_reorders_or_preempts_the_plan_is_simulated_in_full() -> None:
    """Fair sharing lets a new job go ahead of older ones, a cohort merges the heads by
    share, preemption and slices stop planned jobs: no appending there."""
    world, rng = a_world(3, queued_jobs=20)
    learned = Learned()

    def stops(head: Job, state: object, active: object, now: datetime) -> Stops:
        return Stops()

    cases = {
        "a fair queue": {**world.queues, "strict": QueueView("strict", half_life=3600)},
        "a cohort": {**world.queues, "strict": QueueView("strict", cohort="c")},
        "a preempting queue": {**world.queues,
                               "strict": QueueView("strict", preemption=LOWER_PRIORITY)},
    }  # fmt: skip
    for what, queues in cases.items():
        ruled = replace(world, queues=queues, preempt=stops)
        kept = plan(ruled, learned=learned)
        grown = replace(ruled, waiting=[*ruled.waiting, *tail(ruled, rng, 2)])
        again, how = replan(kept, grown, learned=learned)
        assert how == "full", what
        same(again, plan(grown, learned=learned))


def operated(world: World, *, steps: int = 400) -> dict[JobKey, datetime]:
    """When the operator's own pass (planning.plan_pass) starts each queued job of the
    world, played forward in virtual time: a pass at the world's instant, then at
    every instant a job ends (its maxRuntimeSeconds after it started) or a backoff
    ends, ended jobs gone with their Pods, started ones running on their placement."""
    rules = Rules(limits=world.limits)
    ends = {j.key: (j.status.running_since or T0) + timedelta(seconds=limit(j))
            for j in world.active}  # fmt: skip
    jobs = {j.key: j for j in (*world.active, *world.waiting)}
    started: dict[JobKey, datetime] = {}
    t = world.now
    for _ in range(steps):
        live = [j for k, j in jobs.items() if k not in ends or ends[k] > t]
        pods = [
            a_pod_of(j, node_name=j.status.placement[0]) for j in live if j.phase is Phase.RUNNING
        ]
        book = JobBook.of(live, pods, nodes=world.nodes, queues=world.queues.values())
        for key, decision in plan_pass(book, changed=(), now=t, rules=rules).decisions.items():
            status = decision.status
            if status.placement and key not in ends:  # admitted now: running from t
                status = replace(status, phase=Phase.RUNNING, running_since=t)
                started[key], ends[key] = t, t + timedelta(seconds=limit(jobs[key]))
            jobs[key] = replace(jobs[key], status=status)
        upcoming = [at for at in ends.values() if at > t]
        upcoming += [j.status.not_before for j in jobs.values()
                     if j.status.not_before is not None and j.status.not_before > t]  # fmt: skip
        if not upcoming or all(
            k in started or j.phase is not Phase.QUEUED for k, j in jobs.items()
        ):
            break
        t = min(upcoming)
    return started


def limit(job: Job) -> float:
    assert job.spec.max_runtime_seconds
    return float(job.spec.max_runtime_seconds)


def test_a_plain_world_is_estimated_as_the_operators_passes_admit_it() -> None:
    """Where `_ruled` does not hold (StrictFIFO and BestEffortFIFO queues, backoffs,
    a namespace cap, jobs that never fit), the middle estimate of every queued job is
    when the operator's own passes start it, played forward with each job running
    its maxRuntimeSeconds (the middle runtime the plan takes for it); and a plan that
    replan appended to says the same."""
    hows = []
    for seed in range(12):
        world, rng = a_world(seed, queued_jobs=25)
        world = replace(world, waiting=[with_limit(j) for j in world.waiting])
        kept = plan(world, learned=Learned())
        started = operated(world)
        assert started, seed
        for job in world.waiting:
            assert kept.estimates[job.key].start == started.get(job.key), (seed, job.key)
        grown = replace(world, waiting=[*world.waiting,
                                        *(with_limit(j) for j in tail(world, rng, 2))])  # fmt: skip
        again, how = replan(kept, grown, learned=kept.basis.learned)  # type: ignore[union-attr]
        hows.append(how)
        started = operated(grown)
        for job in grown.waiting:
            assert again.estimates[job.key].start == started.get(job.key), (seed, job.key)
    assert hows.count("appended") >= 4, hows


def with_limit(job: Job) -> Job:
    if job.spec.max_runtime_seconds:
        return job
    return replace(job, spec=replace(job.spec, max_runtime_seconds=900))
