"""Multi-node jobs: N Pods admitted as a gang, torchrun wiring, and a cancel that stops
them all, on the real control plane with kwok nodes (a node pool of the test's own)."""

from __future__ import annotations

from collections.abc import Callable

from kubernetes import client

from tests.support.builders import TrainingJobBuilder, a_training_job
from tests.support.nodes import NodePool
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for


def gang(name: str, pool: NodePool, nodes: int = 4) -> TrainingJobBuilder:
    return a_training_job(name).with_gpus(8).with_spec(nodes=nodes, nodeSelector=pool.selector)


def trainer_pods(jobs: Jobs, job: str) -> list[client.V1Pod]:
    pods = jobs.core.list_namespaced_pod(
        jobs.namespace, label_selector=f"shunter.dev/job-name={job}"
    ).items
    return sorted(pods, key=lambda p: p.metadata.name)


def test_a_gang_starts_all_together_or_not_at_all(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    first = node_pool.add(3)
    start_operator(SHUNTER_MAX_RUNNING="10")
    jobs.create(gang("big", node_pool).running_for("600s"))
    wait_for(lambda: "needs 4 nodes with 8 GPUs" in str(jobs.status("big").get("message")),
             timeout=15, what="the gang to be unschedulable on 3 nodes")  # fmt: skip
    assert trainer_pods(jobs, "big") == []  # it holds nothing while it waits
    jobs.create(gang("small", node_pool, nodes=2).running_for("600s"))
    jobs.wait_phase("small", "running")  # a job that fits is not blocked by it
    jobs.cancel("small")
    jobs.wait_phase("small", "cancelled")
    node_pool.add(1)
    running = jobs.wait_phase("big", "running", timeout=30)["status"]
    assert running["podsReady"] == 4
    assert sorted(running["placement"]) == sorted([*first, node_pool.nodes[-1]])
    pods = trainer_pods(jobs, "big")
    assert [p.metadata.name for p in pods] == [f"big-trainer-{i}" for i in range(4)]
    assert len({p.spec.node_name for p in pods}) == 4  # one Pod per node
    env = {e.name: e.value for e in pods[2].spec.containers[0].env}
    assert env["NNODES"] == "4"
    assert env["NODE_RANK"] == "2"
    assert env["NPROC_PER_NODE"] == "8"
    assert env["WORLD_SIZE"] == "32"
    assert env["MASTER_ADDR"] == f"big-trainer-0.big.{jobs.namespace}.svc"
    service = jobs.core.read_namespaced_service("big", jobs.namespace)
    assert service.spec.cluster_ip == "None"
    assert service.spec.publish_not_ready_addresses is True


def test_cancel_stops_every_pod_and_forces_the_one_that_hangs(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(4)
    operator = start_operator(SHUNTER_MAX_RUNNING="1")
    # The hang label applies to every Pod of the job; kwok lets a delete hang for all.
    jobs.create(gang("g", node_pool).with_grace(1).hanging_on_delete().running_for("600s"))
    jobs.create(a_training_job("next").with_spec(nodeSelector=node_pool.selector)
                .running_for("600s"))  # fmt: skip
    jobs.wait_phase("g", "running")
    jobs.cancel("g")
    jobs.wait_phase("g", "cancelled", timeout=30)
    log = operator.log()
    ns = jobs.namespace
    for i in range(4):
        assert f"[Terminate] Attempting graceful termination of pod {ns}/g-trainer-{i}" in log
        assert (
            f"[Terminate] Pod {ns}/g-trainer-{i} did not terminate gracefully, forcing deletion"
            in log
        )
        assert f"[Terminate] Pod {ns}/g-trainer-{i} force deleted" in log
    assert trainer_pods(jobs, "g") == []  # cancelled only when every Pod object is gone
    termination = jobs.status("g")["termination"]
    assert sorted(termination["forcedPods"]) == [f"g-trainer-{i}" for i in range(4)]
    jobs.wait_phase("next", "running", timeout=15)


def test_one_failing_pod_fails_the_job_and_stops_the_rest(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(2)
    start_operator()
    job = gang("g", node_pool, nodes=2).with_grace(1).failing_after("3s")
    jobs.create(job)
    failed = jobs.wait_phase("g", "failed", timeout=60)["status"]
    assert "failed with exit code 1" in failed["message"]
    assert failed["message"].startswith("Pod g-trainer-")
    wait_for(lambda: all(p.status.phase == "Failed" or p.metadata.deletion_timestamp
                         for p in trainer_pods(jobs, "g")) or not trainer_pods(jobs, "g"),
             timeout=15, what="no Pod of the job left running")  # fmt: skip


def test_operator_killed_during_a_multi_pod_cancel_finishes_it_without_orphans(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(4)
    operator = start_operator(SHUNTER_MAX_RUNNING="1")
    jobs.create(gang("g", node_pool).with_grace(5).hanging_on_delete().running_for("600s"))
    jobs.create(a_training_job("next").with_spec(nodeSelector=node_pool.selector)
                .running_for("600s"))  # fmt: skip
    jobs.wait_phase("g", "running")
    jobs.cancel("g")
    # Killed once every Pod has had its graceful delete, before any is forced.
    wait_for(lambda: len((jobs.status("g").get("termination") or {}).get("pods") or ()) == 4,
             timeout=15, what="graceful deletes of the 4 Pods recorded")  # fmt: skip
    operator.kill()
    assert jobs.phase("g") == "cancelling"
    assert len(trainer_pods(jobs, "g")) == 4  # all hang, deleting: nobody forces them now
    operator.start()

    status = jobs.wait_phase("g", "cancelled", timeout=60)["status"]
    assert sorted(status["termination"]["forcedPods"]) == [f"g-trainer-{i}" for i in range(4)]
    assert trainer_pods(jobs, "g") == []
    resumed = operator.log_since_start()
    ns = jobs.namespace
    for i in range(4):
        assert f"[Terminate] Pod {ns}/g-trainer-{i} force deleted" in resumed
    assert "Attempting graceful termination" not in resumed  # resumed, not started over
    jobs.wait_phase("next", "running", timeout=15)
    assert [p.metadata.name for p in trainer_pods(jobs, "next")] == ["next-trainer"]
