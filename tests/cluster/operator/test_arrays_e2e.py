"""Job arrays on the real control plane with kwok nodes: runs are child TrainingJobs
created lazily (at most maxParallel unfinished), the array counts them, and cancel,
suspend and resume act on the whole array or on one run."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from shunter.domain.model import GROUP, PLURAL, VERSION
from tests.support.builders import TrainingJobBuilder, a_training_job
from tests.support.nodes import NodePool
from tests.support.operator import Jobs, OperatorProcess
from tests.support.policy import kubectl
from tests.support.polling import wait_for

UNFINISHED = (None, "queued", "starting", "running", "cancelling", "stopping", "suspended")


def an_array(name: str, pool: NodePool, count: int, parallel: int) -> TrainingJobBuilder:
    return (
        a_training_job(name)
        .with_gpus(1)
        .with_spec(nodeSelector=pool.selector, array={"count": count, "maxParallel": parallel})
    )


def runs(jobs: Jobs, array: str) -> list[dict[str, Any]]:
    """`kubectl get tj -l shunter.dev/array=ARRAY`."""
    found = jobs.custom.list_namespaced_custom_object(
        GROUP, VERSION, jobs.namespace, PLURAL, label_selector=f"shunter.dev/array={array}"
    )
    items: list[dict[str, Any]] = found["items"]
    return items


def run(jobs: Jobs, name: str) -> dict[str, Any]:
    """The run, or {} while it does not exist yet."""
    return next((r for r in runs(jobs, name.rpartition("-")[0]) if r["metadata"]["name"] == name),
                {})  # fmt: skip


def phase_of(run: dict[str, Any]) -> str | None:
    phase: str | None = (run.get("status") or {}).get("phase")
    return phase


def counts(jobs: Jobs, array: str) -> dict[str, int]:
    found: dict[str, int] = jobs.status(array).get("array") or {}
    return found


def test_an_array_of_100_runs_at_most_10_at_once_and_all_complete(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(2)  # 16 GPUs: room for more than 10 runs, so maxParallel is the limit
    start_operator(SHUNTER_MAX_RUNNING="50")
    jobs.create(an_array("sweep", node_pool, 100, 10).running_for("1s"))
    most_unfinished = most_running = 0

    def done() -> bool:
        nonlocal most_unfinished, most_running
        found = runs(jobs, "sweep")
        unfinished = [r for r in found if phase_of(r) in UNFINISHED]
        running = [r for r in found if phase_of(r) in ("starting", "running")]
        pods = jobs.core.list_namespaced_pod(jobs.namespace).items
        live = [p for p in pods if p.status.phase not in ("Succeeded", "Failed")]
        assert len(unfinished) <= 10, [r["metadata"]["name"] for r in unfinished]
        assert len(live) <= 10
        most_unfinished = max(most_unfinished, len(unfinished))
        most_running = max(most_running, len(running))
        return jobs.phase("sweep") == "completed"

    wait_for(done, timeout=300, interval=0.2, what="the array of 100 to complete")
    found = runs(jobs, "sweep")
    assert sorted(r["metadata"]["name"] for r in found) == sorted(f"sweep-{i}" for i in range(100))
    assert {phase_of(r) for r in found} == {"completed"}
    assert most_unfinished == 10
    assert most_running > 1
    status = jobs.status("sweep")
    assert status["array"] == {"queued": 0, "running": 0, "suspended": 0, "completed": 100,
                               "failed": 0, "cancelled": 0, "notCreated": 0,
                               "display": "100/100 done"}  # fmt: skip
    assert "podName" not in status
    assert "sequence" not in status
    run = jobs.get("sweep-42")
    assert run["metadata"]["labels"]["shunter.dev/array-index"] == "42"
    assert "array" not in run["spec"]
    assert run["metadata"]["ownerReferences"][0]["uid"] == jobs.get("sweep")["metadata"]["uid"]


def test_runs_get_their_index_in_the_environment(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess],
    kubeconfig: Path,
):  # fmt: skip
    node_pool.add(1)
    start_operator(SHUNTER_MAX_RUNNING="10")
    jobs.create(an_array("env", node_pool, 3, 3).running_for("600s"))
    wait_for(lambda: counts(jobs, "env").get("running") == 3, timeout=60, what="3 runs running")
    # `running` counts the runs started too: their Pods follow their own status.
    pods = [f"env-{i}-trainer" for i in range(3)]
    wait_for(lambda: set(pods) <= set(jobs.pod_names()), timeout=30, what="the runs' Pods")
    for i in range(3):
        pod = jobs.core.read_namespaced_pod(pods[i], jobs.namespace)
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert env["SHUNTER_ARRAY_INDEX"] == str(i)
        assert env["SHUNTER_ARRAY_COUNT"] == "3"
        assert env["SHUNTER_JOB_NAME"] == f"env-{i}"
    assert jobs.phase("env") == "running"
    # kubectl: the array is one line with its counts; its runs are listed by label.
    line = kubectl(kubeconfig, "-n", jobs.namespace, "get", "tj", "env").splitlines()[1]
    assert line.split()[:2] == ["env", "running"]
    assert "0/3 done, 3 running" in line
    listed = kubectl(kubeconfig, "-n", jobs.namespace, "get", "tj", "-l",
                     "shunter.dev/array=env", "-o", "wide").splitlines()  # fmt: skip
    assert [row.split()[0] for row in listed[1:]] == ["env-0", "env-1", "env-2"]
    jobs.cancel("env")
    jobs.wait_phase("env", "cancelled")


def test_cancel_one_index_then_the_whole_array(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(1)
    start_operator(SHUNTER_MAX_RUNNING="10")
    jobs.create(an_array("grid", node_pool, 20, 3).running_for("600s"))
    wait_for(lambda: counts(jobs, "grid").get("running") == 3, timeout=60, what="3 runs running")
    # One index: that run is cancelled as any job; the array goes on with the next.
    jobs.cancel("grid-1")
    jobs.wait_phase("grid-1", "cancelled")
    wait_for(lambda: phase_of(run(jobs, "grid-3")) == "running", timeout=60, what="grid-3 to start")
    assert jobs.phase("grid-0") == "running"
    assert jobs.phase("grid-2") == "running"
    wait_for(lambda: counts(jobs, "grid").get("cancelled") == 1, timeout=30,
             what="the array to count the cancelled run")  # fmt: skip
    # The whole array: every unfinished run is cancelled, no new run is created.
    jobs.cancel("grid")
    done = jobs.wait_phase("grid", "cancelled", timeout=90)
    assert done["status"]["array"]["cancelled"] == 4
    assert done["status"]["array"]["notCreated"] == 16
    assert sorted(r["metadata"]["name"] for r in runs(jobs, "grid")) == [
        "grid-0", "grid-1", "grid-2", "grid-3"]  # fmt: skip
    assert {phase_of(r) for r in runs(jobs, "grid")} == {"cancelled"}
    wait_for(lambda: not jobs.pod_names(), timeout=60, what="every Pod to be gone")


def test_suspend_and_resume_the_whole_array(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(1)
    start_operator(SHUNTER_MAX_RUNNING="10")
    jobs.create(an_array("batch", node_pool, 6, 2).running_for("600s"))
    wait_for(lambda: counts(jobs, "batch").get("running") == 2, timeout=60, what="2 runs running")
    # One run suspended on its own stays suspended when the array resumes.
    jobs.patch_spec("batch-1", {"suspended": True})
    jobs.wait_phase("batch-1", "suspended")
    jobs.patch_spec("batch", {"suspended": True})
    jobs.wait_phase("batch-0", "suspended")
    jobs.wait_phase("batch", "suspended")
    assert counts(jobs, "batch")["suspended"] == 2
    assert sorted(r["metadata"]["name"] for r in runs(jobs, "batch")) == ["batch-0", "batch-1"]
    wait_for(lambda: not jobs.pod_names(), timeout=60, what="the Pods to be stopped")
    jobs.patch_spec("batch", {"suspended": False})
    jobs.wait_phase("batch-0", "running")
    assert jobs.get("batch-1")["spec"]["suspended"] is True
    assert jobs.phase("batch") == "running"
    # batch-1 is unfinished (suspended): with batch-0 that is maxParallel, nothing new.
    assert len(runs(jobs, "batch")) == 2
    jobs.cancel("batch")
    jobs.wait_phase("batch", "cancelled", timeout=90)


def test_a_hand_made_job_with_a_runs_labels_is_not_adopted(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(1)
    start_operator(SHUNTER_MAX_RUNNING="10")
    forged = a_training_job("hijack-3").with_gpus(1).with_spec(nodeSelector=node_pool.selector)
    body = forged.running_for("600s").manifest()
    body["metadata"]["labels"] = {"shunter.dev/array": "hijack", "shunter.dev/array-index": "3"}
    body["metadata"]["namespace"] = jobs.namespace
    jobs.custom.create_namespaced_custom_object(GROUP, VERSION, jobs.namespace, PLURAL, body)
    jobs.create(an_array("hijack", node_pool, 5, 5).running_for("2s"))
    done = jobs.wait_phase("hijack", "failed", timeout=120)
    # Index 3's name is held by a job that is not a run: that index fails, never runs,
    # and the hand-made job is neither counted nor owned by the array.
    assert done["status"]["array"]["completed"] == 4
    assert done["status"]["array"]["failed"] == 1
    hand_made = jobs.get("hijack-3")
    assert "ownerReferences" not in hand_made["metadata"]
    assert phase_of(hand_made) in ("starting", "running")
    jobs.cancel("hijack-3")


def test_an_array_survives_an_operator_kill(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(1)
    operator = start_operator(SHUNTER_MAX_RUNNING="10")
    jobs.create(an_array("steady", node_pool, 12, 3).running_for("2s"))
    wait_for(lambda: counts(jobs, "steady").get("completed", 0) >= 3, timeout=60,
             what="some runs to complete")  # fmt: skip
    operator.kill()  # kill -9
    operator.start()
    jobs.wait_phase("steady", "completed", timeout=120)
    found = runs(jobs, "steady")
    assert sorted(r["metadata"]["name"] for r in found) == sorted(f"steady-{i}" for i in range(12))
    assert {phase_of(r) for r in found} == {"completed"}


@pytest.mark.parametrize(
    ("array", "message"),
    [
        ({"count": 0}, "spec.array.count in body should be greater than or equal to 1"),
        ({"count": 1_000_000}, "spec.array.count in body should be less than or equal to 10000"),
        ({"count": 5, "maxParallel": 6}, "spec.array.maxParallel must be at most spec.array.count"),
        ({"count": 5, "maxParallel": 0}, "spec.array.maxParallel in body should be greater than"),
        ({"maxParallel": 2}, "spec.array.count: Required value"),
    ],
    ids=["count-0", "count-10^6", "parallel-over-count", "parallel-0", "no-count"],
)
def test_kubectl_refuses_a_bad_array_and_nothing_is_created(
    jobs: Jobs, kubeconfig: Path, array: dict[str, Any], message: str
):
    body = a_training_job("bad").with_spec(array=array).manifest()
    body["metadata"]["namespace"] = jobs.namespace
    with pytest.raises(subprocess.CalledProcessError) as refused:
        kubectl(kubeconfig, "apply", "-f", "-", stdin=json.dumps(body))
    assert message in refused.value.stderr, refused.value.stderr
    assert runs(jobs, "bad") == []
    names = jobs.custom.list_namespaced_custom_object(GROUP, VERSION, jobs.namespace, PLURAL)
    assert names["items"] == []


def test_an_array_is_immutable_and_its_name_leaves_room_for_the_index(jobs: Jobs):
    with pytest.raises(ApiException) as long:
        jobs.create(a_training_job("x" * 51).with_spec(array={"count": 2}))
    assert "an array's name must be at most 50 characters" in str(long.value.body)
    jobs.create(a_training_job("fixed").with_spec(array={"count": 2}))
    with pytest.raises(ApiException) as changed:
        jobs.patch_spec("fixed", {"array": {"count": 3}})
    assert "spec.array is immutable" in str(changed.value.body)
    plain = jobs.create(a_training_job("plain"))
    assert "array" not in plain["spec"]
    with pytest.raises(ApiException) as added:
        jobs.patch_spec("plain", {"array": {"count": 3}})
    assert "spec.array cannot be added or removed" in str(added.value.body)


def test_deleting_the_array_deletes_its_runs_and_their_pods(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess]
):
    node_pool.add(1)
    start_operator(SHUNTER_MAX_RUNNING="10")
    jobs.create(an_array("gone", node_pool, 6, 2).running_for("600s"))
    wait_for(lambda: counts(jobs, "gone").get("running") == 2, timeout=60, what="2 runs running")
    jobs.custom.delete_namespaced_custom_object(GROUP, VERSION, jobs.namespace, PLURAL, "gone")
    # The garbage collector follows the ownerReferences: array -> runs -> Pods.
    wait_for(lambda: runs(jobs, "gone") == [], timeout=90, what="the runs to be deleted")
    wait_for(lambda: not jobs.pod_names(), timeout=90, what="their Pods to be deleted")
