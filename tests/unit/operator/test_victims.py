"""The checkpoint-aware victim choice (shunter.operator.preemption), against brute force.

For random running jobs (sizes, priorities, trainers that checkpoint on a stop or
not, checkpoints of various ages, some reporting nothing), the chosen set lets the
preemptor start and no feasible set of allowed victims loses fewer GPU-seconds
(shunter.domain.workloss: the same cost the operator uses). Trainers that never
report keep today's choice exactly.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shunter.domain.admission import Limits
from shunter.domain.model import Job, format_time
from shunter.domain.queues import QueueView
from shunter.operator.book import JobBook
from shunter.operator.planning import admission_state
from shunter.operator.preemption import candidates, choose, cost_of
from shunter.operator.rules import Rules
from tests.support.builders import a_node, a_pod_of, a_training_job

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SLOTS = Limits(max_running=16)

# (gpus, priority, kind, minutes since start, minutes since last checkpoint, write s)
# kind: 0 reports nothing, 1 checkpoints on a stop, 2 only every N steps.
running = st.lists(
    st.tuples(st.sampled_from([1, 2, 4, 8]), st.integers(0, 3), st.integers(0, 2),
              st.integers(1, 240), st.integers(0, 60), st.sampled_from([2.0, 20.0, 90.0])),
    min_size=1, max_size=7,
)  # fmt: skip


def a_running(i: int, spec: tuple[int, int, int, int, int, float], node: str) -> Job:
    gpus, priority, kind, started, since_ckpt, write = spec
    status = {"placement": [node], "sequence": i + 1, "attempts": 1,
              "runningSince": format_time(NOW - timedelta(minutes=started))}  # fmt: skip
    if kind:
        at = NOW - timedelta(minutes=min(since_ckpt, started))
        status["checkpoint"] = {"step": 10, "time": format_time(at), "attempt": 1,
                                "writeSeconds": write, "maxWriteSeconds": write, "count": 1,
                                "onStop": kind == 1}  # fmt: skip
        status["progress"] = {"step": 12, "reportedAt": format_time(NOW)}
    return (a_training_job(f"r{i}").with_gpus(gpus).with_priority(priority)
            .with_spec(queue="q").in_phase("running", **status).job())  # fmt: skip


def world(specs, gpus: int, priority: int):
    nodes = [a_node(f"n{i}", gpus=8) for i in range(3)]
    free = {n.name: 8 for n in nodes}
    active: list[Job] = []
    for i, spec in enumerate(specs):
        node = next((n for n, f in free.items() if f >= spec[0]), None)
        if node is not None:
            free[node] -= spec[0]
            active.append(a_running(i, spec, node))
    preemptor = (a_training_job("p").with_gpus(gpus).with_priority(priority)
                 .with_spec(queue="q").in_phase("queued", sequence=99).job())  # fmt: skip
    pods = [a_pod_of(j, node_name=j.status.placement[0]) for j in active]
    book = JobBook.of([*active, preemptor], pods, nodes=nodes,
                      queues=[QueueView("q", preemption="lowerPriority")])  # fmt: skip
    return active, preemptor, book


def admits(state, preemptor: Job, victims) -> bool:
    trial = state.copy()
    for job in victims:
        trial.give(job)
    return trial.verdict(preemptor, now=NOW).kind == "admit"


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(running, st.sampled_from([2, 4, 8]), st.integers(1, 4))
def test_the_victims_lose_the_least_work_of_any_set_that_lets_the_preemptor_start(
    specs, gpus: int, priority: int
):
    active, preemptor, book = world(specs, gpus, priority)
    rules = Rules(limits=SLOTS)
    state = admission_state(book, rules)
    if state.verdict(preemptor, now=NOW).kind == "admit":
        return
    allowed = candidates(preemptor, active, state, now=NOW, rules=rules)
    found = choose(preemptor, state, active=active, now=NOW, rules=rules)
    sets = (c for r in range(1, len(allowed) + 1) for c in itertools.combinations(allowed, r))
    feasible = [set(c) for c in sets if admits(state, preemptor, c)]
    if not feasible:
        assert found is None
        return
    assert found is not None
    assert found.victims
    assert all(v in allowed for v in found.victims)  # today's rules: lower priority only
    assert admits(state, preemptor, found.victims)
    waiting = preemptor.spec.total_gpus
    cost = {j.key: cost_of(j, state, now=NOW, rules=rules, waiting=waiting) for j in allowed}
    chosen = sum(cost[v.key] for v in found.victims)
    best = min(sum(cost[v.key] for v in s) for s in feasible)
    if any(j.status.checkpoint is not None for j in allowed):
        assert chosen <= best + 1e-6, (chosen, best)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(running, st.sampled_from([2, 4, 8]), st.integers(1, 4))
def test_trainers_that_never_report_keep_todays_choice(specs, gpus: int, priority: int):
    silent = [(g, p, 0, s, c, w) for g, p, _, s, c, w in specs]
    active, preemptor, book = world(silent, gpus, priority)
    state = admission_state(book, Rules(limits=SLOTS))
    aware = choose(preemptor, state, active=active, now=NOW, rules=Rules(limits=SLOTS))
    today = choose(preemptor, state, active=active, now=NOW,
                   rules=Rules(limits=SLOTS, checkpoint_aware=False))  # fmt: skip
    assert aware == today


def test_a_job_that_just_checkpointed_is_spared_for_one_that_would_lose_an_hour():
    # One 8-GPU node, two 4-GPU jobs of equal priority that save only every N steps.
    # Today's choice stops the most recently started (r1), 59 minutes past its last
    # checkpoint; r0 started earlier but saved a minute ago: it is the cheaper victim.
    r0 = a_running(0, (4, 0, 2, 120, 1, 20.0), "n0")
    r1 = a_running(1, (4, 0, 2, 60, 59, 20.0), "n0")
    preemptor = (a_training_job("p").with_gpus(4).with_priority(1)
                 .with_spec(queue="q").in_phase("queued", sequence=99).job())  # fmt: skip
    queues = [QueueView("q", preemption="lowerPriority")]
    book = JobBook.of([r0, r1, preemptor], [a_pod_of(j, node_name="n0") for j in (r0, r1)],
                      nodes=[a_node("n0")], queues=queues)  # fmt: skip
    state = admission_state(book, Rules(limits=SLOTS))
    today = choose(preemptor, state, active=[r0, r1], now=NOW,
                   rules=Rules(limits=SLOTS, checkpoint_aware=False))  # fmt: skip
    aware = choose(preemptor, state, active=[r0, r1], now=NOW, rules=Rules(limits=SLOTS))
    assert today is not None
    assert [v.key.name for v in today.victims] == ["r1"]
    assert aware is not None
    assert [v.key.name for v in aware.victims] == ["r0"]


def test_a_slow_checkpointer_is_stopped_with_its_own_grace_when_waiting_costs_more():
    # r0 checkpoints on a stop, but its write takes 300 s (its own grace is 30 s); it
    # saved a minute ago. Waiting 300 s for it with the preemptor's 8 GPUs costs more
    # than the minute it loses when the kubelet kills it at 30 s: its stop gets 30 s.
    r0 = a_running(0, (8, 0, 1, 120, 1, 300.0), "n0")
    preemptor = (a_training_job("p").with_gpus(8).with_priority(1)
                 .with_spec(queue="q").in_phase("queued", sequence=99).job())  # fmt: skip
    queues = [QueueView("q", preemption="lowerPriority")]
    book = JobBook.of([r0, preemptor], [a_pod_of(r0, node_name="n0")],
                      nodes=[a_node("n0")], queues=queues)  # fmt: skip
    state = admission_state(book, Rules(limits=SLOTS))
    found = choose(preemptor, state, active=[r0], now=NOW, rules=Rules(limits=SLOTS))
    assert found is not None
    assert found.graces == (30,)
    # Saved an hour ago instead: the checkpoint is worth the wait (sized: 455 s).
    late = a_running(0, (8, 0, 1, 120, 60, 300.0), "n0")
    book = JobBook.of([late, preemptor], [a_pod_of(late, node_name="n0")],
                      nodes=[a_node("n0")], queues=queues)  # fmt: skip
    state = admission_state(book, Rules(limits=SLOTS))
    found = choose(preemptor, state, active=[late], now=NOW, rules=Rules(limits=SLOTS))
    assert found is not None
    assert found.graces == (455,)
