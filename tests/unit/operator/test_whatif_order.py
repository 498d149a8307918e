"""The what-if takes its queue in the order the pass does and preempts as the pass
would (shunter.domain.whatif with shunter.domain.ordering and shunter.domain.victims):
each answer is checked against the operator's own pass on the same jobs with the
hypothetical job submitted, and against the full plan with it in."""

from __future__ import annotations

import random
from dataclasses import replace

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shunter.domain.admission import queue_order
from shunter.domain.fairshare import Ledger
from shunter.domain.model import Audit, Job, Phase
from shunter.domain.ordering import Sharing
from shunter.domain.queues import LOWER_PRIORITY, QueueView
from shunter.domain.victims import what_if_preempter
from shunter.domain.whatif import insert
from shunter.operator.planning import admission_state
from shunter.operator.preemption import choose, sized_cap
from shunter.operator.rules import Rules
from tests.support.builders import a_node, a_training_job
from tests.unit.operator.test_estimate_order import (
    NOW,
    at,
    estimated,
    fair_world,
    passed,
    queued,
    running,
    start,
)
from tests.unit.operator.test_victims import NOW as VICTIMS_NOW
from tests.unit.operator.test_victims import SLOTS
from tests.unit.operator.test_victims import running as running_specs
from tests.unit.operator.test_victims import world as victims_world


def hypothetical(name: str, namespace: str, *, queue: str, priority: int = 0,
                 gpus: int = 8) -> Job:  # fmt: skip
    """A job as the API's dry run returns it: no sequence yet, created now."""
    return (a_training_job(name, namespace).with_gpus(gpus).with_priority(priority)
            .created_at(NOW).with_spec(queue=queue, maxRuntimeSeconds=600)
            .in_phase("queued").job())  # fmt: skip


def submitted(job: Job, sequence: int) -> Job:
    """The same job once really submitted (the pass numbers it)."""
    return (a_training_job(job.key.name, job.key.namespace).with_gpus(job.spec.gpus)
            .with_priority(job.spec.priority).created_at(NOW)
            .with_spec(queue=job.spec.queue, maxRuntimeSeconds=600)
            .in_phase("queued", sequence=sequence).job())  # fmt: skip


def test_a_fair_queue_what_if_has_the_position_and_start_the_pass_and_plan_give() -> None:
    rng = random.Random(7)
    nodes = [a_node("n0")]
    differs = 0
    for i in range(40):
        active, waiting, queues = fair_world(rng)
        byname = {q.name: q for q in queues}
        kept = estimated(active, waiting, queues, nodes)
        job = hypothetical(f"new{i}", rng.choice("abc"), queue="fair",
                           priority=rng.choice([0, 0, 1]))  # fmt: skip
        sharing = Sharing.now(byname, active, NOW)
        answer = insert(kept, job, now=NOW, queues=byname, sharing=sharing)
        real = submitted(job, 1000)
        after = passed(active, [*waiting, real], queues, nodes)
        assert answer.position == after[real.key].status.queue_position
        again = estimated(active, [*waiting, real], queues, nodes)
        assert answer.estimate.start == at(start(again, real) or 0.0)
        plain = insert(kept, job, now=NOW, queues=byname)
        differs += plain.position != answer.position
    assert differs  # admission order would have answered otherwise


def test_a_low_usage_team_goes_ahead_of_older_jobs_in_the_what_if() -> None:
    # a has used far more than b: b's new job comes before a's two older ones.
    ledger = Ledger(NOW, {"a": 1e6, "b": 0.0}, {("a", ""): 1e6, ("b", ""): 0.0})
    queue = QueueView("fair", half_life=3600, usage=ledger)
    waiting = [queued("a1", 8, 1, queue="fair", namespace="a"),
               queued("a2", 8, 2, queue="fair", namespace="a")]  # fmt: skip
    active = [running("big", 8, node="n0", limit=600)]
    kept = estimated(active, waiting, [queue], [a_node("n0")])
    job = hypothetical("b1", "b", queue="fair")
    answer = insert(kept, job, now=NOW, queues={"fair": queue},
                    sharing=Sharing.now({"fair": queue}, active, NOW))  # fmt: skip
    assert answer.position == 1
    assert answer.estimate.start == at(600)
    plain = insert(kept, job, now=NOW, queues={"fair": queue})
    assert plain.position == 3
    assert plain.estimate.start == at(1800)


def test_sharing_ahead_agrees_with_the_fair_order() -> None:
    # Sharing.ahead (bisection per tenant) counts what Sharing.order yields first.
    rng = random.Random(3)
    for i in range(50):
        _, waiting, queues = fair_world(rng)
        queue = queues[0]
        lanes: dict[tuple[str, str], list] = {}
        for job in sorted(waiting, key=queue_order):
            lanes.setdefault((job.key.namespace, ""), []).append((queue_order(job), job.key))
        sharing = Sharing({queue.name: queue.usage or Ledger()}, {})
        new = hypothetical(f"x{i}", rng.choice("abc"), queue="fair", priority=rng.choice([0, 1]))
        mine = lanes.setdefault((new.key.namespace, ""), [])
        counts = sharing.ahead(queue, {t: list(e) for t, e in lanes.items()}, new)
        mine.append((queue_order(new), new.key))
        mine.sort()
        order = list(sharing.order(queue, lanes))
        assert sum(counts.values()) == order.index(new.key)


def test_a_preempting_what_if_starts_at_its_victims_deadline_and_names_the_passes_victims() -> None:
    # Queue q preempts lower priorities; two low jobs of 4 GPUs hold the node for ten
    # hours (graces 120 and 45 s). A high job of 8 GPUs preempts both: it starts at
    # the later deadline (120 s), the plan with it in says the same, and the pass
    # stops exactly those two.
    queue = QueueView("q", preemption=LOWER_PRIORITY)
    nodes = [a_node("n0")]
    active = [running("low1", 4, node="n0", limit=36_000, queue="q", grace=120),
              running("low2", 4, node="n0", limit=36_000, queue="q", grace=45)]  # fmt: skip
    kept = estimated(active, [], [queue], nodes, preempt=True)
    job = hypothetical("high", "default", queue="q", priority=10)
    answer = insert(kept, job, now=NOW, queues={"q": queue}, preempt=what_if_preempter(600),
                    active=active)  # fmt: skip
    assert sorted((v.key.name, g) for v, g in answer.victims) == [("low1", 120), ("low2", 45)]
    assert answer.estimate.start == at(120)
    assert answer.estimate.latest == at(120)
    assert answer.estimate.earliest == NOW
    real = submitted(job, 1)
    after = passed(active, [real], [queue], nodes)
    stopped = {k.name for k, j in after.items() if j.phase is Phase.STOPPING}
    assert stopped == {v.key.name for v, _ in answer.victims}
    full = estimated(active, [real], [queue], nodes, preempt=True)
    assert start(full, real) == 120
    # Not the head (an older job of its priority waits first): it preempts nothing.
    first = queued("first", 8, 1, queue="q", priority=10)
    kept = estimated(active, [first], [queue], nodes, preempt=True)
    behind = insert(kept, job, now=NOW, queues={"q": queue}, preempt=what_if_preempter(600),
                    active=active)  # fmt: skip
    assert behind.victims == ()
    assert behind.position == 2
    # A queue that never preempts: it waits for the ends.
    never = QueueView("q")
    kept = estimated(active, [], [never], nodes)
    waits = insert(kept, job, now=NOW, queues={"q": never}, preempt=what_if_preempter(600),
                   active=active)  # fmt: skip
    assert waits.victims == ()
    assert waits.estimate.start == at(36_000)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(running_specs, st.sampled_from([2, 4, 8]), st.integers(1, 4))
def test_the_what_if_chooses_the_victims_the_operator_chooses(specs, gpus: int, priority: int):
    # Random running jobs, trainers that report or not: the API's preempter (domain
    # victims, the operator's defaults) names the operator's choice, with its graces.
    active, preemptor, book = victims_world(specs, gpus, priority)
    rules = Rules(limits=SLOTS)
    state = admission_state(book, rules)
    found = choose(preemptor, state, active=active, now=VICTIMS_NOW, rules=rules)
    stops = what_if_preempter(sized_cap(rules))(preemptor, state, active, VICTIMS_NOW)
    expected = () if found is None else found.victims
    assert tuple(v for v, _ in stops.victims) == expected


def test_a_published_plan_keeps_the_submitters_so_the_read_back_what_if_is_fair() -> None:
    # The API reads the plan the operator published: each job's submitter (its tenant
    # in a fair queue) is in it, so the what-if's fair order is the same from either.
    from shunter.domain.estimates import estimates_raw, parse, timeline_raw

    ledger = Ledger(NOW, {"t": 1e6}, {("t", "heavy"): 1e6, ("t", "light"): 0.0})
    queue = QueueView("fair", half_life=3600, usage=ledger)
    waiting = [
        replace(queued(f"h{i}", 8, i + 1, queue="fair", namespace="t"),
                audit=Audit(submitted_by="heavy"))
        for i in range(3)
    ]  # fmt: skip
    active = [running("big", 8, node="n0", limit=600)]
    kept = estimated(active, waiting, [queue], [a_node("n0")])
    read = parse(estimates_raw(kept), timeline_raw(kept))
    assert read is not None
    assert {k: j.audit for k, j in read.jobs.items()} == {k: j.audit for k, j in kept.jobs.items()}
    job = replace(hypothetical("l1", "t", queue="fair"), audit=Audit(submitted_by="light"))
    sharing = Sharing.now({"fair": queue}, active, NOW)
    mine = insert(read, job, now=NOW, queues={"fair": queue}, sharing=sharing)
    assert mine == insert(kept, job, now=NOW, queues={"fair": queue}, sharing=sharing)
    assert mine.position == 1
    assert mine.estimate.start == at(600)
