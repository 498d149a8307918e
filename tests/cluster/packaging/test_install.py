"""`helm install` on the real control plane, then the system running as the chart's
ServiceAccounts: the acceptance scenarios pass, which proves the chart's RBAC is
enough, and actions outside it are refused, which proves it is not too much.

The Deployments are installed with zero replicas: the operator and the API run here as
local processes holding the chart's ServiceAccount tokens (TokenRequest), so the API
server applies exactly the chart's Roles to every call they make. Both of the chart's
shapes are run: the release serves a list of namespaces (a Role in each), and a second
operator replica holds the RBAC the chart renders for serving every namespace
(ClusterRoles). Neither may read CRDs or Namespaces (kopf's scanning is off, see
shunter.operator.main); a log with kopf's "Not enough permissions" warning, or any
403, fails the test.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from shunter.devcluster.accounts import account_with_role, service_account_token
from shunter.devcluster.controlplane import default_bin_dir
from tests.support.api import ApiProcess
from tests.support.chart import CHART, helm
from tests.support.kube import api_client, temporary_namespace, token_kubeconfig
from tests.support.operator import OperatorProcess
from tests.support.policy import chart_account
from tests.support.polling import wait_for


def http_events(api: ApiProcess, token: str, job: str) -> list[dict[str, str]]:
    with api.client(token) as http:
        events: list[dict[str, str]] = http.get(f"/api/training/status/{job}/events").json()
        return events


def refusals(log: str) -> list[str]:
    """Log lines that show a call the RBAC refused (kopf words its own 403s as
    'Not enough permissions ...')."""
    words = ("Forbidden", " 403", "Not enough permissions")
    return [line for line in log.splitlines() if any(w in line for w in words)]


@contextlib.contextmanager
def standby_everywhere(
    kube_api: client.ApiClient, kubeconfig: Path, *, namespace: str, lease: str, out: Path
) -> Iterator[OperatorProcess]:
    """A second operator replica serving every namespace, as the chart's default install
    (ClusterRoles) lets it: it stands by behind the running leader (the same Lease), so
    it watches the whole cluster and writes nothing."""
    with chart_account(kube_api, kubeconfig, component="operator", namespace=namespace,
                       out=out / "standby.kubeconfig") as account:  # fmt: skip
        standby = OperatorProcess(
            kubeconfig=account, namespace=namespace, database_url=None,
            log_path=out / "standby.log",
            env={"SHUNTER_NAMESPACE": "", "SHUNTER_LEASE_NAME": lease,
                 "SHUNTER_IDENTITY": f"standby-{namespace}"},
        )  # fmt: skip
        try:
            yield standby.start(lead=False)
        finally:
            standby.stop()


@pytest.fixture
def release(kubeconfig: Path, namespace: str, crd: None) -> Iterator[str]:
    name = f"r{namespace[-8:]}"
    result = helm(
        "install",
        name,
        str(CHART),
        "--namespace",
        namespace,
        "--kubeconfig",
        str(kubeconfig),
        "--set",
        f"admission.watchNamespaces={{{namespace}}}",
        "--set",
        "admission.excludeReleaseNamespace=false",  # the jobs run beside the release here
        # The chart's admission policies bind cluster-wide by default; the other tests
        # share this cluster, so they judge only this test's namespace.
        "--set-json",
        "policy.namespaceSelector="
        + json.dumps({"matchLabels": {"kubernetes.io/metadata.name": namespace}}),
        "--set",
        "operator.replicas=0",
        "--set",
        "api.replicas=0",
        "--set",
        "database.url=postgresql://unused@db/shunter",
        "--wait",
        "--timeout",
        "60s",
        check=False,
    )
    assert result.returncode == 0, result.stderr
    yield name
    helm("uninstall", name, "--namespace", namespace, "--kubeconfig", str(kubeconfig), check=False)


@pytest.fixture
def fair_queue(kube_api: client.ApiClient, namespace: str, crd: None) -> Iterator[str]:
    """A queue with admission fair sharing: the operator writes its decayed usage to the
    queue's status (trainingqueues/status), which the chart must let it do."""
    name = f"fair-{namespace[-8:]}"
    queues = client.CustomObjectsApi(kube_api)
    queues.create_cluster_custom_object("shunter.dev", "v1alpha1", "trainingqueues", {
        "apiVersion": "shunter.dev/v1alpha1", "kind": "TrainingQueue",
        "metadata": {"name": name},
        "spec": {"admissionFairSharing": {"halfLifeSeconds": 3600}},
    })  # fmt: skip
    yield name
    queues.delete_cluster_custom_object("shunter.dev", "v1alpha1", "trainingqueues", name)


def queue_usage(kube_api: client.ApiClient, name: str) -> dict[str, Any]:
    body = client.CustomObjectsApi(kube_api).get_cluster_custom_object(
        "shunter.dev", "v1alpha1", "trainingqueues", name
    )
    return dict((body.get("status") or {}).get("usage") or {})


def test_chart_install_runs_the_system_with_exactly_its_rbac(
    release: str,
    fair_queue: str,
    namespace: str,
    kubeconfig: Path,
    kube_api: client.ApiClient,
    database_url: str,
    tmp_path: Path,
    crd: None,
):
    operator_sa, api_sa = f"{release}-shunter-operator", f"{release}-shunter-api"
    operator_config = token_kubeconfig(
        kubeconfig,
        service_account_token(kube_api, namespace, operator_sa),
        tmp_path / "operator.kubeconfig",
    )
    api_config = token_kubeconfig(
        kubeconfig, service_account_token(kube_api, namespace, api_sa), tmp_path / "api.kubeconfig"
    )
    with contextlib.ExitStack() as services:  # stopped in reverse: the API, the standby
        operator = OperatorProcess(  # (before the leader, or it would take over), the leader
            kubeconfig=operator_config,
            namespace=namespace,
            database_url=database_url,
            log_path=tmp_path / "operator.log",
            env={"SHUNTER_LEASE_NAME": operator_sa, "SHUNTER_USAGE_WRITE_SECONDS": "1"},
        ).start()
        services.callback(operator.stop)
        everywhere = services.enter_context(standby_everywhere(
            kube_api, kubeconfig, namespace=namespace, lease=operator_sa, out=tmp_path,
        ))  # fmt: skip
        api = ApiProcess(
            kubeconfig=api_config,
            namespace=namespace,
            database_url=database_url,
            log_path=tmp_path / "api.log",
            env={"SHUNTER_API_AUTH": "kubernetes"},
        ).start()
        services.callback(api.stop)
        # A user holding the release's own editor role: the chart ships what users need.
        user = account_with_role(kube_api, namespace, "alice",
                                 f"{release}-shunter-trainingjob-editor")  # fmt: skip
        with api.client(user) as http:
            ids = [
                http.post("/api/training/submit", json={"name": n}).json()["job_id"]
                for n in ("first", "second")
            ]
            assert ids == ["first", "second"]
            wait_for(
                lambda: http.get("/api/training/status/first").json()["status"] == "running",
                timeout=60,
                what="first to run",
            )
            # The API reads the checkpoint claim a submission names (its Role may get
            # claims): an unlabelled one is refused with 422, not a 503 for a 403.
            client.CoreV1Api(kube_api).create_namespaced_persistent_volume_claim(namespace, {
                "metadata": {"name": "home"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}},
            })  # fmt: skip
            refused = http.post("/api/training/submit",
                                json={"name": "third", "checkpoint_claim": "home"})  # fmt: skip
            assert refused.status_code == 422, refused.text
            assert "checkpoint claim 'home' may not be mounted" in refused.json()["message"]
            queued = http.post("/api/training/cancel/second")
            assert queued.json()["message"] == "Job removed from queue and cancelled"
            logs = http.get("/api/training/status/first/logs")  # the Pod and its Node
            assert logs.status_code == 200, logs.text
            assert "simulated node" in logs.text
            running = http.post("/api/training/cancel/first")
            assert running.json()["message"] == "Job cancelled (was running)"
            wait_for(
                lambda: http.get("/api/training/status/first").json()["status"] == "cancelled",
                timeout=60,
                what="first to be cancelled",
            )
            # Its usage in a queue with admission fair sharing reaches the queue's status.
            fair = http.post("/api/training/submit", json={"name": "fair", "queue": fair_queue})
            assert fair.status_code == 201, fair.text
            wait_for(
                lambda: namespace in (queue_usage(kube_api, fair_queue).get("namespaces") or {}),
                timeout=60,
                what="the queue's usage, written by the operator's account",
            )
        # The API's Event cache lists and watches (the detail view's Events).
        wait_for(
            lambda: "Cancelled" in [e["reason"] for e in http_events(api, user, "first")],
            timeout=30,
            what="the Cancelled Event through the API",
        )
        assert "all namespaces except kube-system" in everywhere.log()
        for service in (operator, everywhere, api):
            assert refusals(service.log()) == [], service.log_path

    # Outside the chart's rules, the API server refuses.
    as_operator = api_client(operator_config)
    with pytest.raises(ApiException) as denied:
        client.CustomObjectsApi(as_operator).delete_namespaced_custom_object(
            "shunter.dev", "v1alpha1", namespace, "trainingjobs", "first"
        )
    assert denied.value.status == 403
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(as_operator).list_namespaced_secret(namespace)
    assert denied.value.status == 403
    as_api = api_client(api_config)
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(as_api).list_namespaced_pod(namespace)
    assert denied.value.status == 403
    with pytest.raises(ApiException) as denied:
        client.CustomObjectsApi(as_api).list_namespaced_custom_object(
            "shunter.dev", "v1alpha1", "default", "trainingjobs"
        )
    assert denied.value.status == 403


def test_plain_manifests_are_accepted_by_the_api_server(
    kubeconfig: Path, kube_api: client.ApiClient, crd: None
):
    """`kubectl apply -k manifests/` in server-side dry-run: every object validates."""
    core = client.CoreV1Api(kube_api)
    if any(n.metadata.name == "shunter-system" for n in core.list_namespace().items):
        pytest.skip("shunter-system exists here (a real install): not touching it")
    # Server-side dry-run of namespaced objects needs their namespace to exist.
    with temporary_namespace(kube_api, "shunter-system"):
        result = subprocess.run(
            [
                str(default_bin_dir() / "kubectl"),
                "--kubeconfig",
                str(kubeconfig),
                "apply",
                "--dry-run=server",
                "-k",
                str(CHART.parents[1] / "manifests"),
            ],
            capture_output=True,
            text=True,
        )
    assert result.returncode == 0, result.stderr
    assert "deployment.apps/shunter-operator created (server dry run)" in result.stdout
    assert "clusterrole.rbac.authorization.k8s.io/shunter-api-reviewer created" in result.stdout
