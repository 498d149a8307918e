"""The estimates take the queues in the order the pass does (shunter.domain.ordering
owns the rules; shunter.domain.estimates simulates them): admission fair sharing
inside a queue, cohort holds, and preemption for a waiting head. Each is checked
against the operator's own pass (planning.plan_pass) on the same jobs."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from shunter.domain.admission import Limits
from shunter.domain.estimates import Learned, Plan, World, plan
from shunter.domain.fairshare import Ledger
from shunter.domain.model import Job, JobKey, Phase, format_time
from shunter.domain.nodes import NodeView
from shunter.domain.queues import LOWER_PRIORITY, QueueView
from shunter.domain.whatif import insert
from shunter.operator.book import JobBook
from shunter.operator.planning import plan_pass
from shunter.operator.preemption import for_estimates
from shunter.operator.rules import Rules
from tests.support.builders import a_node, a_pod_of, a_training_job

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(hours=1)
LIMITS = Limits(max_running=100)
RULES = Rules(limits=LIMITS)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


def running(name: str, gpus: int, *, node: str, limit: int, queue: str = "default",
            namespace: str = "default", priority: int = 0, grace: int = 30) -> Job:  # fmt: skip
    return (a_training_job(name, namespace).with_gpus(gpus).with_priority(priority)
            .with_grace(grace).created_at(NOW - timedelta(seconds=60))
            .with_spec(queue=queue, maxRuntimeSeconds=limit)
            .in_phase("running", sequence=0, admittedAt=format_time(NOW),
                      runningSince=format_time(NOW), placement=[node])
            .job())  # fmt: skip


def queued(name: str, gpus: int, sequence: int, *, queue: str, namespace: str = "default",
           priority: int = 0, limit: int = 600) -> Job:  # fmt: skip
    return (a_training_job(name, namespace).with_gpus(gpus).with_priority(priority)
            .created_at(T0 + timedelta(seconds=sequence))
            .with_spec(queue=queue, maxRuntimeSeconds=limit)
            .in_phase("queued", sequence=sequence).job())  # fmt: skip


def estimated(active: Sequence[Job], waiting: Sequence[Job], queues: Sequence[QueueView],
              nodes: Sequence[NodeView], *, preempt: bool = False) -> Plan:  # fmt: skip
    world = World(now=NOW, limits=LIMITS, queues={q.name: q for q in queues}, nodes=nodes,
                  foreign=[], active=active, waiting=waiting,
                  preempt=for_estimates(RULES) if preempt else None)  # fmt: skip
    return plan(world, learned=Learned())


def passed(active: Sequence[Job], waiting: Sequence[Job], queues: Sequence[QueueView],
           nodes: Sequence[NodeView]) -> dict[JobKey, Job]:  # fmt: skip
    """The operator's pass on the same jobs: each job as its decision leaves it."""
    jobs = [*active, *waiting]
    pods = [a_pod_of(j, node_name=j.status.placement[0]) for j in active]
    book = JobBook.of(jobs, pods, nodes=nodes, queues=queues)
    decided = plan_pass(book, changed=(), now=NOW, rules=RULES).decisions
    return {j.key: j if j.key not in decided else replace(j, status=decided[j.key].status)
            for j in jobs}  # fmt: skip


def start(kept: Plan, job: Job) -> float | None:
    found = kept.estimates[job.key].start
    return None if found is None else (found - NOW).total_seconds()


# -- admission fair sharing inside a queue ----------------------------------------------


def fair_world(rng: random.Random) -> tuple[list[Job], list[Job], list[QueueView]]:
    """A queue with admission fair sharing behind a job holding the node's 8 GPUs:
    three teams' usage far apart (the order cannot flip within the plan), jobs of
    8 GPUs (one at a time), submitted interleaved, some of higher priority."""
    usage = dict(zip(("a", "b", "c"), rng.sample([0.0, 1e6, 2e6], 3), strict=True))
    ledger = Ledger(NOW, usage, {(ns, ""): v for ns, v in usage.items()})
    queue = QueueView("fair", half_life=3600, usage=ledger)
    waiting = [queued(f"j{i}", 8, i + 1, queue="fair", namespace=rng.choice("abc"),
                      priority=rng.choice([0, 0, 1]))
               for i in range(rng.randint(2, 12))]  # fmt: skip
    return [running("big", 8, node="n0", limit=600)], waiting, [queue]


def test_a_fair_queue_is_estimated_in_the_order_of_the_pass_positions() -> None:
    rng = random.Random(25)
    nodes = [a_node("n0")]
    for _ in range(30):
        active, waiting, queues = fair_world(rng)
        kept = estimated(active, waiting, queues, nodes)
        after = passed(active, waiting, queues, nodes)
        by_position = sorted(waiting, key=lambda j: after[j.key].status.queue_position or 0)
        by_estimate = sorted(waiting, key=lambda j: start(kept, j) or 0.0)
        assert [j.key for j in by_estimate] == [j.key for j in by_position]
        # One at a time, every 600 s from the end of the running job.
        assert sorted(start(kept, j) or 0.0 for j in waiting) == [
            600.0 * (i + 1) for i in range(len(waiting))
        ]


def test_the_team_with_less_usage_is_estimated_first_and_moves_back_as_it_runs() -> None:
    # b has used far less than a: b1 starts first although a's jobs came first. Once
    # b1 runs, b's score holds its GPUs (HOLD_SECONDS each): with usage close to a's,
    # a1 comes before b2, as the pass would take them then.
    ledger = Ledger(NOW, {"a": 1000.0, "b": 0.0}, {("a", ""): 1000.0, ("b", ""): 0.0})
    queue = QueueView("fair", half_life=3600, usage=ledger)
    waiting = [queued("a1", 8, 1, queue="fair", namespace="a"),
               queued("a2", 8, 2, queue="fair", namespace="a"),
               queued("b1", 8, 3, queue="fair", namespace="b"),
               queued("b2", 8, 4, queue="fair", namespace="b")]  # fmt: skip
    active = [running("big", 8, node="n0", limit=600)]
    kept = estimated(active, waiting, [queue], [a_node("n0")])
    assert {j.key.name: start(kept, j) for j in waiting} == {
        "b1": 600, "a1": 1200, "b2": 1800, "a2": 2400}  # fmt: skip
    # Without fair sharing the same jobs go in submission order.
    plain = estimated(active, waiting, [QueueView("fair")], [a_node("n0")])
    assert [start(plain, j) for j in waiting] == [600, 1200, 1800, 2400]


# -- cohort holds -------------------------------------------------------------------------


def test_idle_cohort_quota_held_for_a_lower_share_head_delays_a_borrower_as_in_the_pass() -> None:
    # Cohort c (fair sharing): p holds its 4, q borrows 6 (share 6); 2 GPUs idle. p's
    # head (4 GPUs, share 4 once admitted) does not fit the idle 2: the cohort's idle
    # quota is held for it, so q's 2-GPU job (share 8) waits although it fits now,
    # until p's running job ends (600) and p's head starts beside it.
    queues = [QueueView(name, gpu_quota=4, cohort="c", weight=1.0) for name in ("p", "q")]
    queues.append(QueueView("s", gpu_quota=8, cohort="c", weight=1.0))
    nodes = [a_node("n0"), a_node("n1")]
    active = [running("p0", 4, node="n0", limit=600, queue="p"),
              running("q0", 8, node="n1", limit=3600, queue="q"),
              running("q1", 2, node="n0", limit=3600, queue="q")]  # fmt: skip
    head = queued("p-head", 4, 1, queue="p")
    borrower = queued("q-small", 2, 2, queue="q")
    after = passed(active, [head, borrower], queues, nodes)
    assert after[borrower.key].phase is Phase.QUEUED
    assert "held for queue p" in (after[borrower.key].status.message or "")
    kept = estimated(active, [head, borrower], queues, nodes)
    assert start(kept, head) == 600
    assert start(kept, borrower) == 600  # not 0: the hold, as in the pass


# -- preemption ---------------------------------------------------------------------------


def test_a_head_that_preempts_is_estimated_after_the_victims_grace_not_their_end() -> None:
    # Queue q preempts lower priorities. low holds the node's 8 GPUs for 10 hours;
    # high (priority 10) waits. The pass preempts low (grace 120 s): high starts when
    # low's Pods are gone, and low runs again after high, for what it had left.
    queue = QueueView("q", preemption=LOWER_PRIORITY)
    nodes = [a_node("n0")]
    low = running("low", 8, node="n0", limit=36_000, queue="q", grace=120)
    high = queued("high", 8, 1, queue="q", priority=10)
    after = passed([low], [high], [queue], nodes)
    assert after[low.key].phase is Phase.STOPPING  # the pass preempts it
    kept = estimated([low], [high], [queue], nodes, preempt=True)
    assert start(kept, high) == 120
    resumed = JobKey("default", "low#2")
    slots = kept.slots[resumed]
    assert slots[1].start == at(720)  # after high's 600 s
    assert slots[1].end == at(720 + 36_000)  # what it had left when preempted
    assert kept.slots[low.key][1].end == at(120)
    # The what-if reads the plan with the resumed run in it.
    answer = insert(kept, queued("later", 8, 3700, queue="q"), now=NOW, queues={"q": queue})
    assert answer.estimate.start == at(720 + 36_000)
    # Without a preemption hook (or a queue that never preempts) high waits for low.
    assert start(estimated([low], [high], [queue], nodes), high) == 36_000
    never = QueueView("q")
    assert start(estimated([low], [high], [never], nodes, preempt=True), high) == 36_000


def test_a_job_being_preempted_frees_its_gpus_at_its_deadline_and_runs_again() -> None:
    # The pass already stops low for high: low's GPUs are free at its stop's deadline
    # (not its runtime's end), high starts then and low is back after it.
    queue = QueueView("q", preemption=LOWER_PRIORITY)
    nodes = [a_node("n0")]
    low = running("low", 8, node="n0", limit=36_000, queue="q", grace=120)
    high = queued("high", 8, 1, queue="q", priority=10)
    after = passed([low], [high], [queue], nodes)
    stopping = after[low.key]
    assert stopping.phase is Phase.STOPPING
    kept = estimated([stopping], [high], [queue], nodes, preempt=True)
    assert start(kept, high) == 120
    assert kept.slots[JobKey("default", "low#2")][1].start == at(720)


# -- time slices --------------------------------------------------------------------------


def test_a_time_sliced_queue_is_estimated_round_robin_as_the_pass_would_slice_it() -> None:
    # Queue q gives each job 600 s before it yields to a waiting job of its priority.
    # a runs from now (3000 s, grace 30); b waits. The pass looks again when a's slice
    # ends (600): a yields, its Pods are gone by 630 and b starts; a is back behind b
    # for the 2400 s it had left, and gets the GPUs when b's slice ends in turn.
    queue = QueueView("q", time_slice=600)
    nodes = [a_node("n0")]
    a = running("a", 8, node="n0", limit=3000, queue="q")
    b = queued("b", 8, 1, queue="q", limit=3000)
    book = JobBook.of([a, b], [a_pod_of(a, node_name="n0")], nodes=nodes, queues=[queue])
    assert plan_pass(book, changed=(), now=NOW, rules=RULES).wake_at[b.key] == at(600)
    kept = estimated([a], [b], [queue], nodes, preempt=True)
    assert start(kept, b) == 630
    assert kept.slots[a.key][1].end == at(630)
    again = kept.slots[JobKey("default", "a#2")][1]
    assert again.start == at(630 + 600 + 30)  # b's slice, then b's grace
    # Without the slices in the plan, b waits for a's end.
    assert start(estimated([a], [b], [queue], nodes), b) == 3000


def test_a_borrower_preempted_for_a_lender_does_not_take_the_gpus_back_first() -> None:
    # b (priority 1) borrows its cohort's GPUs and starts first; l's queue is below its
    # quota and reclaims them: b stops (grace 30) and l starts when b's Pods are gone.
    # In the operator the pass that finds b's Pods gone makes b queued and starts l;
    # b is looked at in the next pass. The plan used to put b back in the same pass,
    # ahead of l by priority: b and l took the GPUs from each other until the anti-loop
    # rules protected b (CI's operators spent minutes per plan in such cohorts).
    queues = [
        QueueView("lender", gpu_quota=16, cohort="c"),
        QueueView("borrower", gpu_quota=4, cohort="c", preemption=LOWER_PRIORITY),
    ]
    b = queued("b", 8, 1, queue="borrower", priority=1, limit=0)
    lender = queued("l", 8, 2, queue="lender", limit=600)
    kept = estimated([], [b, lender], queues, [a_node("n0")], preempt=True)
    assert start(kept, b) == 0
    assert start(kept, lender) == 30
    assert kept.slots[JobKey("default", "b#2")][1].start == at(30 + 600)
    assert JobKey("default", "b#3") not in kept.slots


def test_jobs_with_no_known_end_taking_turns_end_the_plan_after_a_bounded_number_of_reruns():
    # Two jobs of no known end take 30 s turns on the node: the pass would slice them
    # forever. The plan stops after estimates.RERUNS runs again (not at MAX_STARTS,
    # where each change of the world cost minutes and the operator's shutdown waited
    # for it), and the job queued behind at a lower priority says why it has no
    # estimate. The stops are in the runs' history, so the anti-loop rules apply as in
    # the operator: after three slices in the window a run lasts min_run (300 s).
    from shunter.domain.estimates import RERUNS

    rules = replace(RULES, min_run=timedelta(seconds=300))

    queue = QueueView("q", time_slice=30)
    a = queued("a", 2, 1, queue="q", limit=0)
    b = queued("b", 8, 2, queue="q", limit=0)
    low = queued("low", 8, 3, queue="q", priority=-1)
    world = World(
        now=NOW,
        limits=LIMITS,
        queues={"q": queue},
        nodes=[a_node("n0")],
        foreign=[],
        active=[],
        waiting=[a, b, low],
        preempt=for_estimates(rules),
    )
    kept = plan(world, learned=Learned(), max_starts=5_000)
    assert start(kept, a) == 0
    assert start(kept, b) == 30 + 30  # a's slice, then its grace
    assert len(kept.slots) <= RERUNS + 3 + 2
    assert kept.estimates[low.key].reason == (
        f"beyond the plan's horizon ({RERUNS + 3} runs again of preempted or time-sliced jobs)"
    )
    a_runs = sorted((s[1] for k, s in kept.slots.items() if k.name.split("#")[0] == "a"),
                    key=lambda s: s.start or NOW)  # fmt: skip
    lengths = [(s.end - s.start).total_seconds() for s in a_runs[:5] if s.start and s.end]
    assert lengths == [60, 60, 60, 330, 60]  # slice and grace; protected; again


def test_a_plan_with_a_resumed_run_is_published_and_read_back_as_kept() -> None:
    # estcost's publishing (estimates and timeline in columns) carries the resumed
    # run NAME#2 like any job: the API's what-if reads what the operator kept.
    from shunter.domain.estimates import estimates_raw, parse, timeline_raw

    queue = QueueView("q", preemption=LOWER_PRIORITY)
    nodes = [a_node("n0")]
    low = running("low", 8, node="n0", limit=36_000, queue="q", grace=120)
    high = queued("high", 8, 1, queue="q", priority=10)
    kept = estimated([low], [high], [queue], nodes, preempt=True)
    read = parse(estimates_raw(kept), timeline_raw(kept))
    assert read is not None
    assert read.estimates == kept.estimates
    assert read.slots == kept.slots
    later = queued("later", 8, 3700, queue="q")
    mine = insert(read, later, now=NOW, queues={"q": queue})
    assert mine.estimate == insert(kept, later, now=NOW, queues={"q": queue}).estimate
