"""examples/: each file applied with kubectl as its comments say, on the real control
plane with the chart's CRDs and its admission policies (default values), doing what
its comments promise. The first examples (jobs, priority, a hung Pod) are applied by
test_kubectl.py; a new example without a test here fails the first test."""

from __future__ import annotations

import contextlib
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.cluster.packaging.test_kubectl import EXAMPLES, KUBECTL_EXAMPLES, columns, kubectl
from tests.support.api import ApiProcess
from tests.support.builders import a_training_job
from tests.support.operator import Jobs, OperatorProcess
from tests.support.policy import Policies, policies
from tests.support.polling import wait_for

QUEUES = EXAMPLES / "queues-cohort.yaml"
GANG = EXAMPLES / "multinode-trainingjob.yaml"
SUSPEND = EXAMPLES / "suspend-resume.yaml"
ARRAY = EXAMPLES / "array-trainingjob.yaml"


PIPELINE = EXAMPLES / "pipeline.yaml"


def test_every_example_is_applied_by_a_test():
    tested = {*KUBECTL_EXAMPLES, QUEUES.name, GANG.name, SUSPEND.name, ARRAY.name,
              PIPELINE.name}  # fmt: skip
    assert {p.name for p in EXAMPLES.glob("*.yaml")} == tested


def commented(example: Path, verb: str) -> list[list[str]]:
    """The `kubectl VERB ...` commands of an example's comments, as arguments after
    `kubectl` (the file's own comments are the instructions the test follows)."""
    lines = (line.lstrip("#").strip() for line in example.read_text().splitlines())
    return [shlex.split(line, comments=True)[1:] for line in lines
            if line.startswith(f"kubectl {verb} ")]  # fmt: skip


@pytest.fixture
def policed(kube_api: client.ApiClient, kubeconfig: Path, namespace: str) -> Iterator[Policies]:
    """The chart's admission policies, with its default values, on the test's namespace."""
    with policies(kube_api, kubeconfig) as found:
        found.bind(namespace)
        found.install(simulator=False)
        found.await_enforced(namespace, {"image": "x", "tolerations": [{"operator": "Exists"}]})
        yield found


@contextlib.contextmanager
def applied(kubeconfig: Path, namespace: str, example: Path) -> Iterator[None]:
    """`kubectl apply -f EXAMPLE` (as its comments say); its objects deleted afterwards
    (the cluster-scoped queues would outlive the namespace)."""
    (command,) = commented(example, "apply")
    assert command == ["apply", "-f", f"examples/{example.name}"]
    assert "created" in kubectl(kubeconfig, namespace, "apply", "-f", str(example))
    try:
        yield
    finally:
        kubectl(kubeconfig, namespace, "delete", "--ignore-not-found", "--wait=false",
                "-f", str(example))  # fmt: skip


@pytest.mark.usefixtures("policed")
def test_a_queue_borrows_its_cohorts_idle_gpus_and_gives_them_back(
    kubeconfig: Path, namespace: str, jobs: Jobs,
    start_operator: Callable[..., OperatorProcess], start_api: Callable[..., ApiProcess],
):  # fmt: skip
    with applied(kubeconfig, namespace, QUEUES):
        start_operator()  # one slot, as the guide and the demo
        jobs.wait_phase("vision-big", "running")
        api = start_api()

        def vision() -> dict[str, object]:
            with api.client() as http:
                found = http.get("/api/training/queue", params={"queue": "vision"}).json()
            (queue,) = found["queues"]
            return dict(queue)

        wait_for(lambda: vision()["gpus"] == 8, timeout=30, what="vision's job in the API cache")
        assert vision()["borrowed"] == 4  # 8 GPUs on a quota of 4: 4 lent by speech
        # speech finds no free slot: it takes its 4 GPUs back from the borrower.
        jobs.create(a_training_job("speech-job").with_gpus(4).with_spec(queue="speech"))
        jobs.wait_phase("speech-job", "running", timeout=60)
        # The borrower's requeue and speech's admission are two flights of one pass.
        borrower = wait_for(lambda: (s := jobs.status("vision-big")).get("preemptions") and s,
                            timeout=15, what="vision-big's preemption in its status")  # fmt: skip
        assert borrower["preemptions"] == 1
        assert borrower["phase"] == "queued"
        jobs.wait_event("vision-big", "Preempted")


@pytest.mark.usefixtures("policed")
def test_a_gang_runs_one_pod_on_each_of_its_nodes(
    kubeconfig: Path, namespace: str, jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    with applied(kubeconfig, namespace, GANG):
        start_operator()
        running = jobs.wait_phase("ddp-two-nodes", "running")["status"]
        assert running["podsReady"] == 2
        pods = jobs.core.list_namespaced_pod(
            namespace, label_selector="shunter.dev/job-name=ddp-two-nodes"
        ).items
        by_name = {p.metadata.name: p for p in pods}
        assert sorted(by_name) == ["ddp-two-nodes-trainer-0", "ddp-two-nodes-trainer-1"]
        nodes = {p.spec.node_name for p in pods}
        assert len(nodes) == 2  # one Pod per node
        assert nodes == set(running["placement"])
        env = {e.name: e.value for e in by_name["ddp-two-nodes-trainer-1"].spec.containers[0].env}
        assert (env["NNODES"], env["NODE_RANK"], env["WORLD_SIZE"]) == ("2", "1", "16")
        assert env["MASTER_ADDR"] == f"ddp-two-nodes-trainer-0.ddp-two-nodes.{namespace}.svc"


@pytest.mark.usefixtures("policed")
def test_the_commented_patches_suspend_and_resume_the_job(
    kubeconfig: Path, namespace: str, jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    suspend, resume = commented(SUSPEND, "patch")
    assert suspend[-1] == '{"spec":{"suspended":true}}'
    assert resume[-1] == '{"spec":{"suspended":false}}'
    with applied(kubeconfig, namespace, SUSPEND):
        operator = start_operator()
        jobs.wait_phase("pausable", "running")
        assert "patched" in kubectl(kubeconfig, namespace, *suspend)
        suspended = jobs.wait_phase("pausable", "suspended")["status"]
        assert suspended["suspensions"] == 1
        assert "[Terminate] Attempting graceful termination of pod" in operator.log()
        assert jobs.pod_names() == []  # its slot and its node are free
        assert "patched" in kubectl(kubeconfig, namespace, *resume)
        resumed = jobs.wait_phase("pausable", "running")["status"]
        assert resumed["attempts"] == 2


@pytest.mark.usefixtures("policed")
def test_the_array_runs_its_indexes_and_the_commented_patches_cancel_one_then_all(
    kubeconfig: Path, namespace: str, jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    one, whole = commented(ARRAY, "patch")
    assert one[:3] == ["patch", "tj", "sweep-1"]
    assert whole[:3] == ["patch", "tj", "sweep"]
    with applied(kubeconfig, namespace, ARRAY):
        start_operator(SHUNTER_MAX_RUNNING="4")
        wait_for(lambda: (jobs.status("sweep").get("array") or {}).get("running") == 2,
                 timeout=60, what="2 runs running")  # fmt: skip
        line = kubectl(kubeconfig, namespace, "get", "tj", "sweep").splitlines()[1]
        assert "0/8 done, 2 running" in line
        listed = kubectl(kubeconfig, namespace, "get", "tj", "-l", "shunter.dev/array=sweep")
        assert [r.split()[0] for r in listed.splitlines()[1:]] == ["sweep-0", "sweep-1"]
        # The runs pass the chart's policies as the array did (the operator creates them).
        # (`running` counts the runs started too: their Pods follow their own status.)
        wait_for(lambda: "sweep-1-trainer" in jobs.pod_names(), timeout=30, what="a run's Pod")
        pod = jobs.core.read_namespaced_pod("sweep-1-trainer", namespace)
        env = {e.name: e.value for e in pod.spec.containers[0].env}
        assert (env["SHUNTER_ARRAY_INDEX"], env["SHUNTER_ARRAY_COUNT"]) == ("1", "8")
        assert "patched" in kubectl(kubeconfig, namespace, *one)
        jobs.wait_phase("sweep-1", "cancelled")
        wait_for(lambda: "sweep-2" in kubectl(kubeconfig, namespace, "get", "tj"), timeout=30,
                 what="the next index")  # fmt: skip
        assert "patched" in kubectl(kubeconfig, namespace, *whole)
        done = jobs.wait_phase("sweep", "cancelled", timeout=60)["status"]["array"]
        assert done["cancelled"] == 3
        assert done["notCreated"] == 5


def test_a_pipeline_waits_in_order_and_its_cancel_takes_the_waiting_steps(
    kubeconfig: Path, namespace: str, jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    (cancel,) = commented(PIPELINE, "patch")
    assert cancel[-1] == '{"spec":{"cancelled":true,"cancelDependents":true}}'
    with applied(kubeconfig, namespace, PIPELINE):
        start_operator(SHUNTER_MAX_RUNNING="4")
        jobs.wait_phase("prepare", "running")
        waits = {"train": "Waiting for prepare to complete",
                 "evaluate": "Waiting for train to reach checkpoint step 1000",
                 "report": "Waiting for evaluate to finish"}  # fmt: skip
        for name, message in waits.items():
            wait_for(lambda n=name, m=message: jobs.status(n).get("message") == m, timeout=30,
                     what=f"{name} to wait for its upstream")  # fmt: skip
            assert jobs.status(name)["reason"] == "Dependency"
        # kubectl get tj: the WAITING FOR column (status.waitingFor) shows each step's
        # condition not met yet; the running step's is empty.
        assert columns(kubeconfig, namespace, "PHASE", "WAITING FOR") == {
            "prepare": ["running", ""],
            "train": ["queued", "prepare Completed"],
            "evaluate": ["queued", "train Checkpointed 1000"],
            "report": ["queued", "evaluate Finished"],
        }
        assert jobs.pod_names() == ["prepare-trainer"]
        assert "patched" in kubectl(kubeconfig, namespace, *cancel)
        for name in waits:
            status = jobs.wait_phase(name, "cancelled")["status"]
            assert status["reason"] == "UpstreamCancelled"
            assert "waitingFor" not in status  # cleared with the wait
        jobs.wait_phase("prepare", "cancelled")
