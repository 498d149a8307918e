"""Start-time estimates: the kept plan's simulation on scripted queues whose true
starts are known, and the what-if answered from it (shunter.domain.estimates)."""

from __future__ import annotations

import json
import random
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shunter.domain import estimates
from shunter.domain.admission import Limits
from shunter.domain.estimates import Learned, World, plan
from shunter.domain.model import Job, Phase, format_time
from shunter.domain.queues import QueueView
from shunter.domain.whatif import insert
from tests.support.builders import a_node, a_training_job

T0 = datetime(2026, 1, 1, tzinfo=UTC)
LIMITS = Limits(max_running=100)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def running(name: str, gpus: int, *, since: float = 0, limit: int | None = None,
            node: str = "n0", **progress: object) -> Job:  # fmt: skip
    builder = a_training_job(name).with_gpus(gpus).created_at(at(since - 1))
    if limit is not None:
        builder = builder.with_spec(maxRuntimeSeconds=limit)
    builder = builder.in_phase("running", admittedAt=format_time(at(since)),
                               runningSince=format_time(at(since)), placement=[node])  # fmt: skip
    if progress:
        builder = builder.with_progress(**progress)  # type: ignore[arg-type]
    return builder.job()


def queued(name: str, gpus: int, sequence: int, *, limit: int | None = None,
           queue: str = "default", priority: int = 0) -> Job:  # fmt: skip
    builder = a_training_job(name).with_gpus(gpus).created_at(at(sequence)).with_priority(priority)
    builder = builder.with_spec(queue=queue)
    if limit is not None:
        builder = builder.with_spec(maxRuntimeSeconds=limit)
    return builder.in_phase("queued", sequence=sequence).job()


def world(active: list[Job], waiting: list[Job], *, now: float = 0, nodes: int = 1,
          queues: dict[str, QueueView] | None = None) -> World:  # fmt: skip
    return World(now=at(now), limits=LIMITS, queues=queues or {},
                 nodes=[a_node(f"n{i}", gpus=8) for i in range(nodes)], foreign=[],
                 active=active, waiting=waiting)  # fmt: skip


def starts(kept: estimates.Plan) -> dict[str, float | None]:
    return {k.name: (e.start - T0).total_seconds() if e.start else None
            for k, e in kept.estimates.items()}  # fmt: skip


def test_eight_gpus_known_ends_give_exact_starts() -> None:
    # 8 GPUs: a (4) ends at 600, b (4) at 1200. c (4, 900 s) starts when a ends; d needs
    # all 8, so it starts when b and c have ended (1500); e (StrictFIFO) after d ends.
    active = [running("a", 4, limit=600), running("b", 4, limit=1200)]
    waiting = [queued("c", 4, 1, limit=900), queued("d", 8, 2, limit=300),
               queued("e", 2, 3, limit=60)]  # fmt: skip
    kept = plan(world(active, waiting, now=100), learned=Learned())
    assert starts(kept) == {"c": 600, "d": 1500, "e": 1800}
    for e in kept.estimates.values():
        assert e.earliest is not None
        assert e.latest is not None
        assert e.start is not None
        assert e.earliest <= e.start <= e.latest
    # The low scenario ends every limited job at a quarter of its limit.
    assert kept.estimates[waiting[0].key].earliest == at(150)


def test_progress_report_comes_before_the_limit() -> None:
    # 400 of 1000 steps at 2 steps/s reported at 100: 300 s left -> ends at 400, not 3600.
    a = running("a", 8, limit=3600, step=400, totalSteps=1000, throughput=2.0,
                reportedAt=format_time(at(100)))  # fmt: skip
    kept = plan(world([a], [queued("b", 8, 1, limit=60)], now=100), learned=Learned())
    assert starts(kept) == {"b": 400}
    assert kept.sources[a.key] == "progress"
    e = kept.estimates[next(iter(kept.estimates))]
    assert e.earliest == at(370)
    assert e.latest == at(430)  # +-10 % of what is left


def test_learned_runtimes_come_before_the_limit() -> None:
    a = running("a", 8, limit=3600)
    past = Learned({("default", "shunter/trainer:test", 8): [500.0, 600.0, 700.0, 800.0]})
    kept = plan(world([a], [queued("b", 8, 1)], now=10), learned=past)
    assert starts(kept) == {"b": 600}  # the median of the past runs
    assert kept.sources[a.key] == "learned"


def test_a_running_job_past_the_median_is_judged_by_the_longer_runs() -> None:
    a = running("a", 8)
    past = Learned({("default", "shunter/trainer:test", 8): [100.0, 200.0, 900.0, 1000.0, 1100.0]})
    kept = plan(world([a], [queued("b", 8, 1)], now=300), learned=past)
    assert starts(kept) == {"b": 1000}


def test_no_runtime_known_says_why() -> None:
    kept = plan(world([running("a", 8)], [queued("b", 4, 1, limit=60)], now=5), learned=Learned())
    (e,) = kept.estimates.values()
    assert e.start is None
    assert e.reason == "no runtime known for the job ahead: default/a"


def test_a_job_that_never_fits_says_why() -> None:
    kept = plan(world([], [queued("big", 16, 1, limit=60)]), learned=Learned())
    (e,) = kept.estimates.values()
    assert e.start is None
    assert "Unschedulable" in (e.reason or "")


def test_queue_limits_and_other_queues() -> None:
    # Queue q runs one job at a time; the default queue is free: x starts now even
    # though it is behind q's jobs in admission order.
    queues = {"q": QueueView("q", max_running=1)}
    waiting = [queued("q1", 1, 1, limit=100, queue="q"), queued("q2", 1, 2, limit=100, queue="q"),
               queued("x", 1, 3, limit=100)]  # fmt: skip
    kept = plan(world([], waiting, queues=queues), learned=Learned())
    assert starts(kept) == {"q1": 0, "q2": 100, "x": 0}


def test_the_horizon_is_said() -> None:
    waiting = [queued(f"j{i}", 8, i, limit=60) for i in range(5)]
    kept = plan(world([], waiting), learned=Learned(), max_starts=2)
    reasons = [e.reason for e in kept.estimates.values()]
    assert reasons[:2] == [None, None]
    assert all(r is not None and "horizon" in r for r in reasons[2:])


def _random_world(rng: random.Random, *, now: float) -> tuple[list[Job], list[Job]]:
    active, used = [], [0, 0]
    for i in range(rng.randint(0, 4)):
        gpus = rng.choice([1, 2, 4])
        node = 0 if used[0] + gpus <= 8 else 1
        if used[node] + gpus > 8:
            continue
        used[node] += gpus
        active.append(running(f"r{i}", gpus, since=rng.uniform(-500, 0), node=f"n{node}",
                              limit=rng.choice([300, 900, 1800])))  # fmt: skip
    waiting = [queued(f"w{i}", rng.choice([1, 2, 4, 8]), i + 1,
                      limit=rng.choice([120, 600, 1200]), priority=rng.choice([0, 0, 1]))
               for i in range(rng.randint(1, 12))]  # fmt: skip
    return active, waiting


def test_what_if_agrees_with_planning_again_with_the_job() -> None:
    """Inserting a job into the kept plan gives the start a new plan that includes it
    gives (the job submitted last, so it is behind every job of its priority)."""
    rng = random.Random(25)
    for _ in range(200):
        active, waiting = _random_world(rng, now=0)
        kept = plan(world(active, waiting, nodes=2), learned=Learned())
        extra = queued("new", rng.choice([1, 2, 4, 8]), 1000, limit=300,
                       priority=rng.choice([0, 1]))  # fmt: skip
        again = plan(world(active, [*waiting, extra], nodes=2), learned=Learned())
        answer = insert(kept, extra, now=at(0), queues={})
        assert answer.estimate == again.estimates[extra.key], (active, waiting, extra)


def test_the_published_plan_answers_the_same() -> None:
    rng = random.Random(7)
    active, waiting = _random_world(rng, now=0)
    kept = plan(world(active, waiting, nodes=2), learned=Learned())
    body = json.loads(json.dumps(estimates.estimates_raw(kept)))
    light = estimates.parse(body)
    assert light is not None
    assert light.estimates == kept.estimates
    assert light.jobs == {}  # the views read the estimates only
    back = estimates.parse(body, json.loads(json.dumps(estimates.timeline_raw(kept))))
    assert back is not None
    assert back.estimates == kept.estimates
    assert back.slots == kept.slots
    assert back.nodes == kept.nodes
    extra = queued("new", 4, 1000, limit=300)
    assert insert(back, extra, now=at(0), queues={}) == insert(kept, extra, now=at(0), queues={})


def test_position_counts_the_jobs_ahead_in_its_queue() -> None:
    waiting = [queued("a", 8, 1, limit=60), queued("b", 8, 2, limit=60)]
    kept = plan(world([], waiting), learned=Learned())
    answer = insert(kept, queued("c", 8, 1000, limit=60), now=at(0), queues={})
    assert answer.position == 3
    assert answer.estimate.start == at(120)


def test_a_job_planned_in_one_scenario_only_keeps_its_scenarios_apart() -> None:
    # a may run 40 days: in the low scenario it ends after 10 and b starts then; in
    # the middle one it ends past the 30-day horizon, so b has no estimate.
    a = running("a", 8, limit=40 * 86400)
    b = queued("b", 8, 1, limit=60)
    kept = plan(world([a], [b]), learned=Learned())
    assert kept.slots[b.key][estimates.LOW].start == at(10 * 86400)
    assert kept.slots[b.key][estimates.MID].start is None
    assert kept.estimates[b.key].start is None
    assert "horizon" in (kept.estimates[b.key].reason or "")


def waiting_for_a() -> tuple[Job, Job, estimates.Plan]:
    """b (8 GPUs) waits for a (running, 600 s) to complete; c (8 GPUs) is behind b in
    order; the plan at 100 s."""
    b = (a_training_job("b").with_gpus(8).created_at(at(1))
         .with_spec(maxRuntimeSeconds=60, dependsOn=[{"name": "a", "condition": "Completed"}])
         .in_phase("queued", sequence=1, reason="Dependency",
                   message="waits for a to be Completed").job())  # fmt: skip
    c = queued("c", 8, 2, limit=60)
    return b, c, plan(world([running("a", 8, limit=600)], [b, c], now=100), learned=Learned())


def test_a_job_waiting_for_its_dependencies_holds_no_place_and_says_why() -> None:
    # b (8 GPUs) waits for its upstream: c, behind it in order, is planned as if b were
    # not there (the pass skips b alike), and b's estimate names what it waits for.
    b, _, kept = waiting_for_a()
    assert starts(kept) == {"b": None, "c": 600}
    assert kept.estimates[b.key].reason == "waits for its dependencies: waits for a to be Completed"


def test_a_what_if_beside_a_job_waiting_for_its_dependencies_counts_only_placed_jobs() -> None:
    # The plan has an estimate for b (saying what it waits for) but no job or slot: a
    # what-if in b's queue, on the kept plan and on the published one read back, is
    # behind c alone (b holds no place, as the pass gives it none).
    b, c, kept = waiting_for_a()
    assert kept.placed() == [c.key]
    back = estimates.parse(json.loads(json.dumps(estimates.estimates_raw(kept))),
                           json.loads(json.dumps(estimates.timeline_raw(kept))))  # fmt: skip
    assert back is not None
    assert b.key in back.estimates
    extra = queued("new", 8, 1000, limit=60)
    for which in (kept, back):
        answer = insert(which, extra, now=at(100), queues={})
        assert answer.position == 2
        assert answer.estimate.start == at(660)


def test_an_estimate_reads_back_from_the_status_it_is_written_to() -> None:
    e = estimates.Estimate(at(60), at(30), at(90))
    status = queued("a", 1, 1).status
    written = replace(status, estimated_start=e.start, estimated_range=e.range())
    assert estimates.Estimate.shown(written) == e
    assert estimates.Estimate.shown(status) is None
    why = estimates.Estimate(reason="no runtime known")
    assert estimates.Estimate.shown(replace(status, estimated_range=why.range())) == why


def test_a_simulated_victim_search_is_given_its_group_and_every_stop():
    """What the estimates' simulation gives a head's victim search: the jobs of its
    cohort (or its queue without one) and every job being stopped, the rest of the
    cluster left out (the operator's choice reads no more: preemption.for_estimates)."""
    queues = {"a": QueueView("a", cohort="c"), "b": QueueView("b", cohort="c"),
              "x": QueueView("x")}  # fmt: skip
    running = estimates._Running(queues)
    jobs = {name: a_training_job(name).with_spec(queue=queue).in_phase("running").job()
            for name, queue in (("a1", "a"), ("b1", "b"), ("x1", "x"), ("x2", "x"))}  # fmt: skip
    for job in jobs.values():
        running.put(job)
    head = a_training_job("head").with_spec(queue="a").job()
    assert {j.key.name for j in running.near(head)} == {"a1", "b1"}
    stopping = replace(jobs["x2"], status=replace(jobs["x2"].status, phase=Phase.STOPPING))
    running.put(stopping)
    assert {j.key.name for j in running.near(head)} == {"a1", "b1", "x2"}
    running.pop(jobs["b1"].key)
    running.pop(stopping.key)
    assert {j.key.name for j in running.near(head)} == {"a1"}
