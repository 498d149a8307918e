"""Admission with capacity, queues, quotas and preemption: one pass at a time (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from shunter.domain.admission import Limits
from shunter.domain.model import Job, Phase, StopCause
from shunter.domain.nodes import NodeView, PodUsage, Resources
from shunter.domain.queues import QueueView
from shunter.operator.book import JobBook
from shunter.operator.planning import Pass, plan_pass
from shunter.operator.rules import Rules
from tests.support.builders import a_node, a_pod_of, a_training_job, gpu_nodes

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MANY = Rules(limits=Limits(max_running=100))


def queued(name: str, i: int, gpus: int = 8, **spec: object) -> Job:
    b = a_training_job(name).with_gpus(gpus).created_at(T0 + timedelta(seconds=i))
    return b.with_spec(**spec).in_phase("queued", sequence=i + 1).job()


def running(name: str, node: str, gpus: int = 8, priority: int = 0, **spec: object) -> Job:
    b = a_training_job(name).with_gpus(gpus).with_priority(priority).with_spec(**spec)
    return b.in_phase("running", sequence=0, placement=[node], podsReady=1,
                      runningSince="2026-03-01T11:00:00Z").job()  # fmt: skip


def run(jobs: Sequence[Job], *, nodes: Sequence[NodeView] = (), rules: Rules = MANY,
        foreign: Sequence[PodUsage] = (), queues: Sequence[QueueView] = ()) -> Pass:  # fmt: skip
    pods = [a_pod_of(j, node_name=j.status.placement[0]) for j in jobs if j.phase is Phase.RUNNING]
    book = JobBook.of(jobs, pods, nodes=nodes or gpu_nodes(), foreign=foreign, queues=queues)
    waiting = {j.key for j in jobs if j.queued}
    return plan_pass(book, changed=waiting, now=NOW, rules=rules)


def phases(result: Pass) -> dict[str, str]:
    return {k.name: (d.status.phase or Phase.QUEUED).value for k, d in result.decisions.items()}


def test_a_job_that_can_never_fit_waits_with_numbers_and_blocks_no_one():
    big, small = queued("big", 0, gpus=64), queued("small", 1, gpus=8)
    result = run([big, small], rules=Rules(limits=Limits(max_running=1)))
    assert phases(result) == {"big": "queued", "small": "starting"}
    status = result.decisions[big.key].status
    assert status.reason == "Unschedulable"
    assert status.message == (
        "Unschedulable: needs 64 GPUs on one node; the largest node in pool gpu has 8"
    )
    assert status.queue_position is None
    # A node big enough appears: the same job is admitted by itself.
    bigger = run([big], nodes=[*gpu_nodes(), a_node("huge", gpus=64)])
    assert phases(bigger) == {"big": "starting"}
    assert bigger.decisions[big.key].status.placement == ("huge",)


def test_capacity_two_nodes_three_jobs_and_a_foreign_pod():
    nodes = gpu_nodes(2)
    jobs = [queued(n, i) for i, n in enumerate("abc")]
    assert phases(run(jobs, nodes=nodes)) == {"a": "starting", "b": "starting", "c": "queued"}
    held = [PodUsage("x", "gpu-node-0", Resources(gpus=8))]
    result = run(jobs, nodes=nodes, foreign=held)
    assert phases(result) == {"a": "starting", "b": "queued", "c": "queued"}
    assert result.decisions[jobs[1].key].status.message == (
        "Waiting in queue at position 1: needs 8 GPUs on one node; the most free in pool gpu is 0"
    )


def test_a_job_in_backoff_lets_the_next_one_start():
    resting = a_training_job("rest").created_at(T0).in_phase(
        "queued", sequence=1, reason="StartTimeout", message="back off",
        notBefore="2026-03-01T12:05:00Z").job()  # fmt: skip
    result = run([resting, queued("next", 5)], rules=Rules(limits=Limits(max_running=1)))
    assert phases(result) == {"next": "starting"}
    assert result.wake_at[resting.key] == NOW + timedelta(minutes=5)


def test_queue_limits_quotas_and_missing_queues():
    limited = QueueView("team", max_running=1, gpu_quota=16)
    jobs = [queued("a", 0, queue="team"), queued("b", 1, queue="team"),
            queued("c", 2, queue="nowhere"), queued("d", 3)]  # fmt: skip
    result = run(jobs, queues=[limited])
    assert phases(result) == {"a": "starting", "b": "queued", "c": "queued", "d": "starting"}
    assert "queue team runs its limit of 1 jobs" in (
        result.decisions[jobs[1].key].status.message or ""
    )
    assert result.decisions[jobs[2].key].status.reason == "QueueMissing"


def test_a_queue_borrows_idle_quota_of_its_cohort():
    lender = QueueView("lender", gpu_quota=16, cohort="lab")
    borrower = QueueView("borrower", gpu_quota=8, cohort="lab")
    jobs = [queued("b1", 0, queue="borrower"), queued("b2", 1, queue="borrower"),
            queued("b3", 2, queue="borrower"), queued("b4", 3, queue="borrower")]  # fmt: skip
    # 8 of its own plus the lender's 16 idle: three of four start.
    result = run(jobs, queues=[lender, borrower])
    assert phases(result) == {"b1": "starting", "b2": "starting", "b3": "starting", "b4": "queued"}


def test_a_higher_priority_job_preempts_a_lower_one_in_a_lower_priority_queue():
    rules = Rules(limits=Limits(max_running=1))
    queue = QueueView("prio", preemption="lowerPriority")
    low = running("low", "gpu-node-0", queue="prio")
    high = a_training_job("high").with_priority(10).with_spec(queue="prio").in_phase(
        "queued", sequence=5).job()  # fmt: skip
    result = run([low, high], rules=rules, queues=[queue])
    victim = result.decisions[low.key]
    assert victim.status.phase is Phase.STOPPING
    assert victim.status.termination is not None
    assert victim.status.termination.cause is StopCause.PREEMPT
    assert victim.logs[0].startswith(
        "[Preempt] Job default/low (priority 0) preempted by default/high"
    )
    assert result.decisions[high.key].status.message == "Waiting for 1 preempted job to stop"
    # In a `never` queue, nothing is preempted.
    calm = run([low, high], rules=rules, queues=[QueueView("prio")])
    assert low.key not in calm.decisions


def test_an_equal_priority_job_is_never_preempted():
    rules = Rules(limits=Limits(max_running=1))
    queue = QueueView("prio", preemption="lowerPriority")
    peer = running("peer", "gpu-node-0", priority=10, queue="prio")
    high = a_training_job("high").with_priority(10).with_spec(queue="prio").in_phase(
        "queued", sequence=5).job()  # fmt: skip
    assert peer.key not in run([peer, high], rules=rules, queues=[queue]).decisions


def test_a_queue_below_its_quota_reclaims_what_others_borrowed():
    owner = QueueView("owner", gpu_quota=16, cohort="lab")
    borrower = QueueView("borrower", gpu_quota=0, cohort="lab")
    lent = [running(f"l{i}", f"gpu-node-{i}", queue="borrower") for i in range(2)]
    mine = a_training_job("mine").with_gpus(8).with_spec(queue="owner").in_phase(
        "queued", sequence=9).job()  # fmt: skip
    result = run([*lent, mine], nodes=gpu_nodes(2), queues=[owner, borrower])
    stopped = [k.name for k, d in result.decisions.items() if d.status.phase is Phase.STOPPING]
    assert len(stopped) == 1  # the fewest that free enough
