"""Admission that knows the cluster, on the real control plane with kwok nodes.

Each test uses a node pool of its own (tests.support.nodes), so what it sees of the
cluster is exactly what it built.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from shunter.domain.model import parse_time
from tests.support.builders import TrainingJobBuilder, a_training_job
from tests.support.nodes import NodePool
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for


def in_pool(name: str, pool: NodePool, gpus: int = 8) -> TrainingJobBuilder:
    return a_training_job(name).with_gpus(gpus).with_spec(nodeSelector=pool.selector)


def status(jobs: Jobs, name: str) -> dict[str, object]:
    found: dict[str, object] = jobs.get(name).get("status", {})
    return found


def test_a_job_no_node_can_hold_blocks_no_one_and_starts_when_a_node_appears(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(1, gpus=8)
    start_operator(SHUNTER_MAX_RUNNING="1")
    jobs.create(in_pool("big", node_pool, gpus=64).running_for("600s"))
    jobs.create(in_pool("small", node_pool).running_for("3s"))
    jobs.wait_phase("small", "running")
    # big's refusal and small's admission may be two flights of one pass.
    big = wait_for(lambda: (s := status(jobs, "big")).get("reason") == "Unschedulable" and s,
                   timeout=15, what="big's refusal")  # fmt: skip
    assert big["phase"] == "queued"
    assert big["reason"] == "Unschedulable"
    assert big["message"] == (
        f"Unschedulable: needs 64 GPUs on one node; the largest node in pool {node_pool.name} has 8"
    )
    [huge] = node_pool.add(1, gpus=64)
    jobs.wait_phase("big", "running", timeout=60)  # once "small" has freed the only slot
    assert status(jobs, "big")["placement"] == [huge]


def test_capacity_of_the_pool_and_what_foreign_pods_hold(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    first, _ = node_pool.add(2, gpus=8)
    start_operator(SHUNTER_MAX_RUNNING="10")
    jobs.create(in_pool("a", node_pool).running_for("4s"))
    jobs.create(in_pool("b", node_pool).running_for("600s"))
    jobs.create(in_pool("c", node_pool).running_for("600s"))
    jobs.wait_phase("a", "running")
    jobs.wait_phase("b", "running")
    # c's refusal and b's admission may be two flights of one pass.
    wait_for(lambda: "needs 8 GPUs on one node; the most free in pool"
             in str(status(jobs, "c").get("message")), timeout=15, what="c's refusal")  # fmt: skip
    assert status(jobs, "c")["phase"] == "queued"
    jobs.wait_phase("c", "running", timeout=30)  # when "a" completes
    for name in ("b", "c"):
        jobs.cancel(name)
    for name in ("b", "c"):
        jobs.wait_phase(name, "cancelled")

    # A Pod that is not Shunter's, holding 8 GPUs on the first node, is counted.
    node_pool.foreign_pod(jobs.namespace, first, gpus=8)
    jobs.create(in_pool("d", node_pool).running_for("600s"))
    jobs.create(in_pool("e", node_pool).running_for("600s"))
    jobs.wait_phase("d", "running")
    wait_for(
        lambda: "the most free in pool" in str(status(jobs, "e").get("message")),
        timeout=15,
        what="e to wait for GPUs",
    )
    assert status(jobs, "d")["placement"] != [first]


def test_a_pod_that_never_schedules_gives_its_slot_back_then_fails(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(1, gpus=8)
    # Its checkpoint claim (offered to jobs, so admitted) is never bound: no storage
    # class provisions it, and the scheduler never places a Pod that mounts it. Made
    # before the operator starts, so the operator lists it before it sees the jobs (a
    # claim's watch event may come after the jobs' ones: "stuck" would then wait for
    # a claim it does not know yet, blocking no one, and "next" would start first).
    jobs.core.create_namespaced_persistent_volume_claim(jobs.namespace, {
        "metadata": {"name": "never-bound", "labels": {"shunter.dev/checkpoints": "true"}},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "no-such-class",
                 "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    operator = start_operator(
        SHUNTER_MAX_RUNNING="1", SHUNTER_START_TIMEOUT_SECONDS="3", SHUNTER_START_ATTEMPTS="2",
        SHUNTER_BACKOFF_SECONDS="1",
    )  # fmt: skip
    jobs.create(in_pool("stuck", node_pool).with_spec(checkpoint={"claimName": "never-bound"}))
    jobs.create(in_pool("next", node_pool).running_for("4s"))
    wait_for(
        lambda: "is not scheduled yet" in str(status(jobs, "stuck").get("message")),
        timeout=20,
        what="the scheduler's reason in the message",
    )
    assert "unbound immediate PersistentVolumeClaims" in str(status(jobs, "stuck")["message"])
    jobs.wait_phase("next", "running", timeout=20)  # the slot came back
    # stuck's requeue and next's admission are two flights of one pass.
    wait_for(lambda: status(jobs, "stuck").get("reason") == "StartTimeout", timeout=15,
             what="stuck's start timeout in its status")  # fmt: skip
    jobs.wait_phase("stuck", "failed", timeout=60)
    final = status(jobs, "stuck")
    assert final["reason"] == "StartTimeout"
    assert final["message"] == "Did not start within 3s in 2 attempts; giving up"
    assert final["startTimeouts"] == 2
    wait_for(lambda: jobs.event_reasons("stuck").count("StartTimeout") == 2, timeout=15,
             what="the second StartTimeout Event")  # fmt: skip
    assert "[Terminate] Attempting graceful termination of pod" in operator.log()


def test_max_runtime_is_enforced_by_the_operator_on_kwok(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(1)
    start_operator()  # grace margin 2 s in tests
    jobs.create(
        in_pool("long", node_pool).with_spec(maxRuntimeSeconds=2).with_grace(1).running_for("600s")
    )
    done = jobs.wait_phase("long", "failed", timeout=30)["status"]
    assert done["reason"] == "DeadlineExceeded"
    ran = _at(done["completedAt"]) - _at(done["runningSince"])
    assert 2 <= ran.total_seconds() <= 2 + 1 + 2 + 1  # deadline + grace + margin + 1 s


def test_a_failing_job_is_retried_in_new_pods_up_to_its_backoff_limit(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(1)
    start_operator(SHUNTER_BACKOFF_SECONDS="1")
    jobs.create(in_pool("flaky", node_pool).with_spec(backoffLimit=2).failing_after("1s"))
    done = jobs.wait_phase("flaky", "failed", timeout=90)["status"]
    assert done["attempts"] == 3
    assert done["failures"] == 3
    assert [a["exitCode"] for a in done["history"]] == [1, 1, 1]
    assert jobs.event_reasons("flaky").count("Retrying") == 2
    assert "after 3 attempts" in done["message"]


def _at(value: object) -> datetime:
    parsed = parse_time(value)
    assert parsed is not None
    return parsed
