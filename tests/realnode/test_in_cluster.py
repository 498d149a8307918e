"""The chart installed in-cluster, from the image built here, passes the acceptance guide.

The operator and the API run as the chart's Deployments on the real node (restricted
Pod Security enforced on the namespace), with their ServiceAccounts and in-cluster
configuration, PostgreSQL reached from the Pods (the embedded server on the node's
address). The guide's tests from tests/cluster/api/test_acceptance.py run unchanged over a
`kubectl port-forward` to the API's Service; the jobs' own Pods go to the kwok GPU
nodes as before (the real node has no GPUs).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kubernetes import client

from shunter.devcluster.controlplane import ControlPlane, default_bin_dir
from shunter.devcluster.nodeconfig import POD_SUBNET
from shunter.devcluster.postgres import LocalPostgres
from shunter.devcluster.processes import free_port
from shunter.devcluster.realnode import NODE_IP, pool_selector, toleration
from shunter.domain.model import GROUP, PLURAL, VERSION
from tests.cluster.api.test_acceptance import (  # noqa: F401 (collected and run here again)
    test_1_cancel_queued_job,
    test_2_cancel_running_job,
    test_3_cancel_completed_job,
    test_4_cancel_non_existent_job,
    test_5_multiple_cancellations,
    test_6_queue_continues_after_cancellation,
    test_7_graceful_versus_force_termination_logs,
    test_database_verification,
    test_performance_ten_rapid_submit_and_cancel,
)
from tests.support.chart import CHART, helm
from tests.support.kube import temporary_namespace
from tests.support.pgdirs import postgres_root
from tests.support.polling import ConditionTimeout, wait_for
from tests.support.realnode import BuiltImages, LazyNode

RELEASE = "guide"
# The API Service's address, fixed so that trainer Pods reach the report channel on a
# cluster without DNS (this one): reports.url names it (chart api.service.clusterIP).
API_CLUSTER_IP = "10.96.200.10"


@dataclass(frozen=True)
class InCluster:
    namespace: str
    base_url: str
    kubeconfig: Path
    database_url: str | None  # as this machine reaches it


def _kubectl(kubeconfig: Path, *args: str) -> str:
    result = subprocess.run([str(default_bin_dir() / "kubectl"), f"--kubeconfig={kubeconfig}",
                             *args], capture_output=True, text=True)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def in_cluster(
    control_plane: ControlPlane | None,
    lazy_node: LazyNode,
    kube_api: client.ApiClient,
    kubeconfig: Path,
    built_images: BuiltImages,
    tmp_path_factory: pytest.TempPathFactory,
    crd: None,
) -> Iterator[InCluster]:
    lazy_node.ensure_up()
    postgres = None
    database = os.environ.get("SHUNTER_IN_CLUSTER_DATABASE_URL", "")
    postgres_dirs = contextlib.ExitStack()
    if control_plane is not None:
        # Pods reach the embedded server on the node's address (the bridge gateway).
        root = postgres_dirs.enter_context(postgres_root("in-cluster-postgres"))
        postgres = LocalPostgres(root, listen=("127.0.0.1", NODE_IP), trust=(POD_SUBNET,))
        postgres.up()
        database = postgres.url_for(NODE_IP)
    placement = {"nodeSelector": pool_selector(), "tolerations": [toleration()]}
    repository, tag = built_images.operator.rsplit(":", 1)
    with temporary_namespace(kube_api, "shunter-guide") as namespace:
        client.CoreV1Api(kube_api).patch_namespace(namespace, {"metadata": {"labels": {
            "pod-security.kubernetes.io/enforce": "restricted"}}})  # fmt: skip
        values = tmp_path_factory.mktemp("values") / "values.yaml"
        values.write_text(yaml.safe_dump({
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            # The jobs run beside the release here, so its namespace is served.
            "admission": {"watchNamespaces": [namespace], "excludeReleaseNamespace": False},
            # Its admission policies judge only its namespace: other tests share the cluster.
            "policy": {"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": namespace}}},
            "database": {"url": database},
            # This cluster has no storage provisioner: the kwok jobs get emptyDirs.
            "checkpoints": {"defaultSize": ""},
            "api": {"auth": "none", "simulator": True, **placement,  # jobs go to kwok nodes
                    "service": {"clusterIP": API_CLUSTER_IP}},
            "operator": placement,
            "reports": {"url": f"http://{API_CLUSTER_IP}:8000/api/trainer/v1/report"},
        }))  # fmt: skip
        result = helm("install", RELEASE, str(CHART), "--namespace", namespace,
                      "--kubeconfig", str(kubeconfig), "-f", str(values), "--wait",
                      "--timeout", "240s", check=False)  # fmt: skip
        assert result.returncode == 0, result.stderr + _kubectl(
            kubeconfig, "describe", "pods", "-n", namespace
        )
        port = free_port()
        forward = subprocess.Popen(
            [str(default_bin_dir() / "kubectl"), f"--kubeconfig={kubeconfig}", "port-forward",
             "-n", namespace, f"svc/{RELEASE}-shunter-api", f"{port}:8000"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        base_url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            try:
                return httpx.get(f"{base_url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(ready, timeout=60, what="the in-cluster API through port-forward")
            yield InCluster(namespace, base_url, kubeconfig,
                            postgres.url if postgres is not None else None)  # fmt: skip
        finally:
            forward.terminate()
            forward.wait(timeout=30)
            helm("uninstall", RELEASE, "--namespace", namespace, "--kubeconfig",
                 str(kubeconfig), "--wait", check=False)  # fmt: skip
            if postgres is not None:
                postgres.down()
            postgres_dirs.close()


@pytest.fixture
def http(in_cluster: InCluster, kube_api: client.ApiClient) -> Iterator[httpx.Client]:
    """The guide's client; each test starts from an empty namespace."""
    with httpx.Client(base_url=in_cluster.base_url, timeout=30) as session:
        yield session
    custom = client.CustomObjectsApi(kube_api)
    custom.delete_collection_namespaced_custom_object(GROUP, VERSION, in_cluster.namespace, PLURAL)
    core = client.CoreV1Api(kube_api)
    wait_for(
        lambda: (
            not custom.list_namespaced_custom_object(GROUP, VERSION, in_cluster.namespace, PLURAL)[
                "items"
            ]
            and not core.list_namespaced_pod(
                in_cluster.namespace, label_selector="shunter.dev/job-name"
            ).items
        ),
        timeout=120,
        what="the namespace's jobs and trainer Pods to be gone",
    )


@pytest.fixture
def operator_log(in_cluster: InCluster) -> Callable[[], str]:
    def read() -> str:
        return _kubectl(in_cluster.kubeconfig, "logs", "-n", in_cluster.namespace,
                        f"deploy/{RELEASE}-shunter-operator", "--tail=-1")  # fmt: skip

    return read


@pytest.fixture
def database_url(in_cluster: InCluster) -> str:
    if in_cluster.database_url is None:
        pytest.skip("no PostgreSQL reachable from both the Pods and this machine")
    return in_cluster.database_url


def test_the_system_runs_in_cluster_as_installed(
    in_cluster: InCluster, kube_api: client.ApiClient, built_images: BuiltImages
):
    """The Deployments run the built image on the real node, as their ServiceAccounts,
    with probes passing, in a namespace that enforces restricted Pod Security."""
    core = client.CoreV1Api(kube_api)
    namespace = core.read_namespace(in_cluster.namespace)
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = core.list_namespaced_pod(
        in_cluster.namespace, label_selector=f"app.kubernetes.io/instance={RELEASE}"
    ).items
    assert sorted(p.metadata.labels["app.kubernetes.io/component"] for p in pods) == [
        "api",
        "operator",
    ]
    for pod in pods:
        assert (
            pod.spec.node_name
            == core.list_node(
                label_selector=",".join(f"{k}={v}" for k, v in pool_selector().items())
            )
            .items[0]
            .metadata.name
        )
        assert pod.spec.service_account_name.endswith(pod.metadata.labels[
            "app.kubernetes.io/component"])  # fmt: skip
        assert pod.spec.containers[0].image == built_images.operator
        assert all(s.ready for s in pod.status.container_statuses)
    health = httpx.get(f"{in_cluster.base_url}/readyz", timeout=10)
    assert health.status_code == 200


def test_a_real_trainer_reports_to_the_installed_api(
    in_cluster: InCluster, http: httpx.Client, built_images: BuiltImages
):
    """The report channel as installed: the trainer Pod on the real node reaches the
    API's Service (kube-proxy), the API checks its projected token by TokenReview with
    its own ServiceAccount and writes the job's status with its chart RBAC."""
    response = http.post("/api/training/submit", json={
        "name": "reporting", "image": built_images.trainer, "gpus": 0,
        "args": ["--steps", "100000", "--step-delay", "0.02", "--checkpoint-every", "50"],
        "env": {"SHUNTER_REPORT_INTERVAL_SECONDS": "1"},
        "node_selector": pool_selector(), "tolerations": [toleration()]})  # fmt: skip
    assert response.status_code == 201, response.text

    def reported() -> dict[str, Any] | None:
        body = json.loads(_kubectl(in_cluster.kubeconfig, "get", "trainingjob", "reporting",
                                   "-n", in_cluster.namespace, "-o", "json"))  # fmt: skip
        status: dict[str, Any] = body.get("status", {})
        return status if status.get("checkpoint", {}).get("step", 0) >= 50 else None

    try:
        status = wait_for(reported, timeout=180, what="the trainer's checkpoint in status")
    except ConditionTimeout as exc:
        ns, config = in_cluster.namespace, in_cluster.kubeconfig
        pod = subprocess.run([str(default_bin_dir() / "kubectl"), f"--kubeconfig={config}",
                              "logs", "-n", ns, "reporting-trainer", "--tail=20"],
                             capture_output=True, text=True)  # fmt: skip
        api = _kubectl(config, "logs", "-n", ns, f"deploy/{RELEASE}-shunter-api", "--tail=30")
        api += _kubectl(config, "get", "trainingjob", "reporting", "-n", ns, "-o", "yaml")
        api += _kubectl(config, "get", "nodes", "-l", "shunter.dev/node-pool=real", "-o",
                        "jsonpath={.items[*].spec.taints} {.items[*].status.conditions}"
                        " {.items[*].status.allocatable}")  # fmt: skip
        api += _kubectl(config, "get", "pods", "-A", "-o", "wide")
        raise AssertionError(f"{exc}\ntrainer: {pod.stdout}{pod.stderr}\napi: {api}") from exc
    assert status["progress"]["attempt"] == 1
    assert status["checkpoint"]["onStop"] is True
    cancel = http.post("/api/training/cancel/reporting")
    assert cancel.status_code == 200, cancel.text
