"""Property-based tests of the pure admission and preemption code (hypothesis).

For random clusters (nodes of random sizes, some not Ready, some GPUs held by foreign
Pods) and random queues of jobs (random sizes, node counts and priorities), one pass:
- never admits more GPUs than a node has free, nor over the GPU budget or slot limit;
- never admits a job that cannot fit, and gives every admitted Pod its own node;
- never lets a job that can never run block one that can: if nothing was admitted,
  the first runnable job really did not fit.
For preemption: never an equal or higher priority victim, enough is freed for the
preemptor, and no victim could be spared.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shunter.domain.admission import Limits, QueueOrder, waiting
from shunter.domain.capacity import Capacity, pod_need
from shunter.domain.model import Job, Phase
from shunter.domain.nodes import PodUsage, Resources
from shunter.domain.queues import QueueView
from shunter.operator.book import JobBook
from shunter.operator.planning import admission_state, plan_pass
from shunter.operator.preemption import choose
from shunter.operator.rules import Rules
from tests.support.builders import a_node, a_pod_of, a_training_job

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)

nodes_strategy = st.lists(
    st.tuples(st.sampled_from([0, 1, 2, 4, 8, 16]), st.booleans(), st.integers(0, 8)),
    min_size=1,
    max_size=8,
)
jobs_strategy = st.lists(
    st.tuples(st.sampled_from([0, 1, 2, 4, 8, 16, 64]), st.integers(1, 4), st.integers(0, 3)),
    min_size=1,
    max_size=12,
)


def build(nodes: list[tuple[int, bool, int]], specs: list[tuple[int, int, int]]):
    views = [a_node(f"n{i}", gpus=g, ready=r) for i, (g, r, _) in enumerate(nodes)]
    foreign = [
        PodUsage(f"f{i}", f"n{i}", Resources(gpus=min(held, g)))
        for i, (g, _, held) in enumerate(nodes)
        if held and g
    ]
    jobs = [
        a_training_job(f"j{i}").with_gpus(g).with_priority(p).with_spec(nodes=n)
        .created_at(T0 + timedelta(seconds=i)).in_phase("queued", sequence=i + 1).job()
        for i, (g, n, p) in enumerate(specs)
    ]  # fmt: skip
    return views, foreign, jobs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(nodes_strategy, jobs_strategy, st.integers(1, 6), st.sampled_from([0, 8, 24]))
def test_one_pass_never_over_admits_and_never_lets_the_unrunnable_block(
    nodes: list[tuple[int, bool, int]], specs: list[tuple[int, int, int]], slots: int, budget: int
):
    views, foreign, jobs = build(nodes, specs)
    rules = Rules(limits=Limits(max_running=slots, gpu_budget=budget))
    book = JobBook.of(jobs, nodes=views, foreign=foreign)
    before = Capacity.build(views, foreign, ())
    result = plan_pass(book, now=NOW, rules=rules)
    admitted = [j for j in jobs if j.key in result.decisions
                and result.decisions[j.key].status.phase is Phase.STARTING]  # fmt: skip

    assert len(admitted) <= slots
    if budget:
        assert sum(j.spec.total_gpus for j in admitted) <= budget
    held: Counter[str] = Counter()
    for job in admitted:
        placement = result.decisions[job.key].status.placement
        assert len(placement) == job.spec.nodes
        assert len(set(placement)) == job.spec.nodes  # one Pod per node
        for node in placement:
            assert before.nodes[node].ready
            held[node] += pod_need(job).gpus
    for node, gpus in held.items():
        assert gpus <= before.free[node].gpus  # never over a node's free GPUs

    # Strict FIFO, but the unrunnable never block: the first job that could ever run
    # and was not admitted did not fit beside what was admitted before it.
    runnable = [j for j in jobs if before.never_fits(j) is None
                and (not budget or j.spec.total_gpus <= budget)]  # fmt: skip
    order = sorted(runnable, key=lambda j: (-j.spec.priority, j.created_at))
    for job in order:
        if job in admitted:
            continue
        state = admission_state(JobBook.of([], nodes=views, foreign=foreign), rules)
        for earlier in admitted:
            state.take(earlier, result.decisions[earlier.key].status.placement)
        assert state.verdict(job, now=NOW).kind != "admit", f"{job.key} was blocked"
        break


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.tuples(st.sampled_from([1, 2, 4, 8]), st.integers(0, 5)), min_size=1, max_size=8),
    st.sampled_from([1, 2, 4, 8]),
    st.integers(0, 6),
    st.integers(1, 8),
)
def test_preemption_picks_lower_priorities_enough_and_no_more(
    running_specs: list[tuple[int, int]], gpus: int, priority: int, slots: int
):
    nodes = [a_node(f"n{i}", gpus=8) for i in range(4)]
    queue = QueueView("q", preemption="lowerPriority")
    active: list[Job] = []
    free = {n.name: 8 for n in nodes}
    for i, (g, p) in enumerate(running_specs):
        node = next((n for n, f in free.items() if f >= g), None)
        if node is None:
            continue
        free[node] -= g
        active.append(
            a_training_job(f"r{i}").with_gpus(g).with_priority(p).with_spec(queue="q")
            .in_phase("running", placement=[node], sequence=i + 1,
                      runningSince=(NOW - timedelta(minutes=30 - i)).isoformat()).job()
        )  # fmt: skip
    preemptor = a_training_job("p").with_gpus(gpus).with_priority(priority).with_spec(
        queue="q").in_phase("queued", sequence=99).job()  # fmt: skip
    rules = Rules(limits=Limits(max_running=slots))
    pods = [a_pod_of(j, node_name=j.status.placement[0]) for j in active]
    book = JobBook.of([*active, preemptor], pods, nodes=nodes, queues=[queue])
    state = admission_state(book, rules)
    found = choose(preemptor, state, active=active, now=NOW, rules=rules)
    if state.verdict(preemptor, now=NOW).kind == "admit":
        return  # nothing to preempt for
    if found is None:
        # No set of lower-priority jobs frees enough.
        trial = state.copy()
        for job in active:
            if job.spec.priority < priority:
                trial.give(job)
        assert trial.verdict(preemptor, now=NOW).kind != "admit"
        return
    assert all(v.spec.priority < priority for v in found.victims)
    trial = state.copy()
    for victim in found.victims:
        trial.give(victim)
    assert trial.verdict(preemptor, now=NOW).kind == "admit"
    for spared in found.victims:
        again = state.copy()
        for victim in found.victims:
            if victim is not spared:
                again.give(victim)
        assert again.verdict(preemptor, now=NOW).kind != "admit", "a victim could be spared"


changes_strategy = st.lists(
    st.tuples(
        st.integers(0, 7),  # which job
        st.sampled_from(["queued", "new", "running", "completed", "cancel", "suspend", "gone"]),
        st.integers(0, 3),  # priority
        st.sampled_from(["default", "team-a", "team-b"]),
        st.integers(0, 5),  # creation second
    ),
    max_size=40,
)


@given(changes_strategy)
@settings(max_examples=300, deadline=None)
def test_the_kept_queue_order_is_the_sorted_one(changes: list[tuple[int, str, int, str, int]]):
    """QueueOrder, kept change by change, always equals sorting the jobs afresh."""
    order, jobs = QueueOrder(), {}
    for i, what, priority, queue, second in changes:
        builder = (a_training_job(f"j{i}").with_priority(priority).with_spec(queue=queue)
                   .created_at(T0 + timedelta(seconds=second)))  # fmt: skip
        if what == "cancel":
            builder = builder.in_phase("queued", sequence=i + 1).cancelled()
        elif what == "suspend":
            builder = builder.in_phase("queued", sequence=i + 1).with_spec(suspended=True)
        elif what not in ("new", "gone"):
            builder = builder.in_phase(what, sequence=i + 1)
        if what == "gone":
            if f"j{i}" in jobs:
                order.remove(jobs.pop(f"j{i}").key)
        else:
            jobs[f"j{i}"] = builder.job()
            order.put(jobs[f"j{i}"])
        expected = waiting(jobs.values())
        assert list(order.keys()) == [j.key for j in expected]
        for name in ("default", "team-a", "team-b"):
            assert list(order.keys(name)) == [j.key for j in expected if j.spec.queue == name]
            assert order.count(name) == sum(1 for j in expected if j.spec.queue == name)
        assert order.count() == len(expected)
        assert sorted(order.names()) == sorted({j.spec.queue for j in expected})
