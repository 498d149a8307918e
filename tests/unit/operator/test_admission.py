"""Admission order and limits (pure): one pass over a book of jobs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shunter.domain.admission import Limits
from shunter.domain.model import Job, JobKey, Phase
from shunter.operator.book import JobBook
from shunter.operator.planning import plan_pass
from shunter.operator.rules import Rules
from tests.support.builders import a_training_job, gpu_nodes

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Plan:
    admit: tuple[JobKey, ...]
    positions: dict[JobKey, int]


def plan_admission(jobs: Sequence[Job], limits: Limits) -> Plan:
    """Which jobs one pass admits (in queue order) and the positions it writes."""
    book = JobBook.of(jobs, nodes=gpu_nodes(4, gpus=8))
    queued = {j.key for j in jobs if j.queued}  # admitted jobs are not reconciled here
    result = plan_pass(book, changed=queued, now=NOW, rules=Rules(limits=limits))
    order = [j.key for j in book.waiting()]
    admit = tuple(
        k for k in order
        if k in result.decisions and result.decisions[k].status.phase is Phase.STARTING
    )  # fmt: skip
    positions = {
        k: d.status.queue_position
        for k, d in result.decisions.items()
        if d.status.phase is Phase.QUEUED and d.status.queue_position is not None
    }
    return Plan(admit, positions)


def key(name: str) -> JobKey:
    return JobKey("default", name)


def test_one_slot_admits_the_oldest_and_numbers_the_rest():
    jobs = [
        a_training_job(n).created_at(T0 + timedelta(seconds=i)).in_phase("queued").job()
        for i, n in enumerate(["a", "b", "c"])
    ]
    plan = plan_admission(jobs, Limits(max_running=1))
    assert plan.admit == (key("a"),)
    assert plan.positions == {key("b"): 1, key("c"): 2}


def test_a_running_job_holds_the_slot():
    jobs = [
        a_training_job("r").in_phase("running").job(),
        a_training_job("q").in_phase("queued").job(),
    ]
    plan = plan_admission(jobs, Limits(max_running=1))
    assert plan.admit == ()
    assert plan.positions == {key("q"): 1}


def test_a_cancelling_job_still_holds_its_slot():
    jobs = [
        a_training_job("c").in_phase("cancelling").job(),
        a_training_job("q").in_phase("queued").job(),
    ]
    assert plan_admission(jobs, Limits(max_running=1)).admit == ()


def test_finished_and_cancelled_jobs_hold_nothing():
    jobs = [
        a_training_job("done").in_phase("completed").job(),
        a_training_job("gone").in_phase("cancelled").job(),
        a_training_job("q").in_phase("queued").job(),
        a_training_job("cq").cancelled().in_phase("queued").job(),
    ]
    plan = plan_admission(jobs, Limits(max_running=1))
    assert plan.admit == (key("q"),)
    assert plan.positions == {}


def test_priority_goes_first_then_submission_order():
    jobs = [
        a_training_job("old-low").created_at(T0).job(),
        a_training_job("new-high").with_priority(10).created_at(T0 + timedelta(seconds=5)).job(),
        a_training_job("mid-low").created_at(T0 + timedelta(seconds=1)).job(),
    ]
    plan = plan_admission(jobs, Limits(max_running=1))
    assert plan.admit == (key("new-high"),)
    assert plan.positions == {key("old-low"): 1, key("mid-low"): 2}


def test_sequence_breaks_ties_within_one_second():
    jobs = [
        a_training_job("z-first").created_at(T0).in_phase("queued", sequence=1).job(),
        a_training_job("a-second").created_at(T0).in_phase("queued", sequence=2).job(),
    ]
    assert plan_admission(jobs, Limits(max_running=1)).admit == (key("z-first"),)


def test_gpu_budget_blocks_the_head_and_everything_behind_it():
    jobs = [
        a_training_job("running").with_gpus(6).in_phase("running").job(),
        a_training_job("big").with_gpus(4).created_at(T0).job(),
        a_training_job("small").with_gpus(1).created_at(T0 + timedelta(seconds=1)).job(),
    ]
    plan = plan_admission(jobs, Limits(max_running=10, gpu_budget=8))
    assert plan.admit == ()  # strict FIFO: "small" does not overtake "big"
    assert plan.positions == {key("big"): 1, key("small"): 2}


def test_several_slots_fill_in_order_within_the_budget():
    jobs = [
        a_training_job(n).with_gpus(g).created_at(T0 + timedelta(seconds=i)).job()
        for i, (n, g) in enumerate([("a", 4), ("b", 4), ("c", 4)])
    ]
    plan = plan_admission(jobs, Limits(max_running=3, gpu_budget=8))
    assert plan.admit == (key("a"), key("b"))
    assert plan.positions == {key("c"): 1}


def test_a_job_larger_than_the_budget_never_blocks_the_queue():
    jobs = [
        a_training_job("huge").with_gpus(16).created_at(T0).job(),
        a_training_job("fits").with_gpus(2).created_at(T0 + timedelta(seconds=1)).job(),
    ]
    plan = plan_admission(jobs, Limits(max_running=2, gpu_budget=8))
    assert plan.admit == (key("fits"),)
    assert plan.positions == {}  # it waits for the budget to grow, at no position
