"""Suspend and resume, priority preemption, and queues with quotas in a cohort, on the
real control plane with kwok nodes (each test in a node pool of its own)."""

from __future__ import annotations

import uuid
from collections.abc import Callable

from tests.support.builders import TrainingJobBuilder, a_training_job
from tests.support.nodes import NodePool
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for


def in_pool(name: str, pool: NodePool, gpus: int = 8) -> TrainingJobBuilder:
    return a_training_job(name).with_gpus(gpus).with_spec(nodeSelector=pool.selector)


def test_suspend_frees_the_slot_and_resume_keeps_the_place_in_the_queue(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(1)
    operator = start_operator(SHUNTER_MAX_RUNNING="1")
    jobs.create(in_pool("first", node_pool).running_for("600s"))
    jobs.create(in_pool("second", node_pool).running_for("600s"))
    jobs.create(in_pool("third", node_pool).running_for("600s"))
    jobs.wait_phase("first", "running")
    jobs.patch_spec("first", {"suspended": True})  # kubectl patch ... suspended: true
    suspended = jobs.wait_phase("first", "suspended")["status"]
    assert suspended["suspensions"] == 1
    assert "[Terminate] Attempting graceful termination of pod" in operator.log()
    jobs.wait_phase("second", "running")  # the slot is reused at once
    # A queued job is suspended at once; resumed, it waits in its original place.
    jobs.patch_spec("third", {"suspended": True})
    jobs.wait_phase("third", "suspended")
    jobs.patch_spec("first", {"suspended": False})
    jobs.patch_spec("third", {"suspended": False})
    wait_for(
        lambda: (
            jobs.status("first").get("queuePosition") == 1
            and jobs.status("third").get("queuePosition") == 2
        ),
        timeout=20,
        what="first back at position 1, third at 2",
    )
    jobs.cancel("second")
    jobs.wait_phase("first", "running", timeout=30)
    assert jobs.status("first")["attempts"] == 2
    jobs.cancel("third")  # cancel works from every state, suspended included
    jobs.wait_phase("third", "cancelled")


def test_a_higher_priority_job_preempts_in_a_lower_priority_queue_only(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess],
    queues: Callable[..., str],
):  # fmt: skip
    node_pool.add(1)
    eager = queues(preemption="lowerPriority")
    calm = queues()
    operator = start_operator(SHUNTER_MAX_RUNNING="1", SHUNTER_GRACE_MARGIN_SECONDS="1")
    jobs.create(in_pool("low", node_pool).with_spec(queue=calm).running_for("600s"))
    jobs.wait_phase("low", "running")
    jobs.create(in_pool("high", node_pool).with_priority(10).with_spec(queue=calm))
    wait_for(lambda: jobs.status("high").get("queuePosition") == 1, timeout=15,
             what="high to wait in a never queue")  # fmt: skip
    assert jobs.phase("low") == "running"  # `never`: nothing is preempted
    jobs.cancel("high")

    jobs.create(in_pool("low2", node_pool).with_spec(queue=eager).running_for("600s"))
    jobs.cancel("low")
    jobs.wait_phase("low2", "running", timeout=30)
    jobs.create(in_pool("urgent", node_pool).with_priority(10).with_spec(queue=eager)
                .running_for("3s"))  # fmt: skip
    jobs.wait_phase("urgent", "running", timeout=30)
    # low2's requeue and urgent's admission are two flights of one pass.
    low2 = wait_for(lambda: (s := jobs.status("low2")).get("preemptions") and s, timeout=15,
                    what="low2's preemption in its status")  # fmt: skip
    assert low2["phase"] in ("queued", "starting", "running")
    assert low2["preemptions"] == 1
    jobs.wait_event("urgent", "Preempting")
    jobs.wait_event("low2", "Preempted")
    assert "[Preempt] Job" in operator.log()
    # When the urgent job is done, the preempted one runs again.
    jobs.wait_phase("urgent", "completed", timeout=30)
    jobs.wait_phase("low2", "running", timeout=30)
    assert jobs.status("low2")["attempts"] == 2


def test_a_queue_borrows_idle_gpus_and_the_owner_reclaims_them(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess],
    queues: Callable[..., str],
):  # fmt: skip
    node_pool.add(2)
    cohort = f"c-{uuid.uuid4().hex[:6]}"
    owner = queues(gpuQuota=8, cohort=cohort)
    borrower = queues(gpuQuota=8, cohort=cohort)
    start_operator(SHUNTER_MAX_RUNNING="10", SHUNTER_GRACE_MARGIN_SECONDS="1")
    for name in ("b1", "b2"):
        jobs.create(in_pool(name, node_pool).with_spec(queue=borrower).with_grace(1)
                    .running_for("600s"))  # fmt: skip
    jobs.wait_phase("b1", "running")
    jobs.wait_phase("b2", "running")  # 8 of its own and 8 borrowed from the owner
    jobs.create(in_pool("mine", node_pool).with_spec(queue=owner).running_for("600s"))
    jobs.wait_phase("mine", "running", timeout=1 + 1 + 1 + 15)  # grace + margin + 1 s + watch
    # The borrower's requeue and mine's admission are two flights of one pass.
    preempted = wait_for(lambda: [n for n in ("b1", "b2") if jobs.status(n).get("preemptions")],
                         timeout=15, what="the borrower's preemption in its status")  # fmt: skip
    assert len(preempted) == 1
    events = jobs.wait_event(preempted[0], "Preempted")
    assert "Preempted" in events
