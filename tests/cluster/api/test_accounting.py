"""GET /usage and /shares behind a running operator, PostgreSQL and the cluster's RBAC.

A team's user (a ServiceAccount granted the chart's viewer role in its namespace by a
RoleBinding) reads its own namespace's usage and nobody else's, and not every
namespace's at once; a platform user granted the viewer role cluster-wide (a
ClusterRoleBinding) reads every namespace's. The API server decides each cell.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kubernetes import client

from shunter.devcluster.accounts import account_with_role, service_account_token
from shunter.domain.model import GROUP, VERSION
from tests.support.api import ApiProcess
from tests.support.builders import a_training_job
from tests.support.kube import EDITOR, VIEWER
from tests.support.nodes import NodePool
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

ROUTES = ("/api/training/usage", "/api/training/shares")


@pytest.fixture
def secured(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    user_roles: list[str],
) -> ApiProcess:
    start_operator()
    return start_api(SHUNTER_API_AUTH="kubernetes")


@pytest.fixture
def platform_user(kube_api: client.ApiClient, namespace: str) -> Iterator[str]:
    """A ServiceAccount granted the viewer role in every namespace (ClusterRoleBinding)."""
    name = f"usage-reader-{namespace}"[:63]
    rbac = client.RbacAuthorizationV1Api(kube_api)
    client.CoreV1Api(kube_api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="platform"))
    )
    rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
        metadata=client.V1ObjectMeta(name=name),
        role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                  name=VIEWER),
        subjects=[client.RbacV1Subject(kind="ServiceAccount", name="platform",
                                       namespace=namespace)],
    ))  # fmt: skip
    try:
        yield service_account_token(kube_api, namespace, "platform")
    finally:
        rbac.delete_cluster_role_binding(name)


def group_of(report: dict[str, Any], key: str) -> dict[str, Any] | None:
    return next((g for g in report["groups"] if g["key"] == key), None)


def test_a_team_reads_its_own_usage_and_a_cluster_role_reads_everyones(
    secured: ApiProcess,
    kube_api: client.ApiClient,
    namespace: str,
    jobs: Jobs,
    platform_user: str,
):
    team = account_with_role(kube_api, namespace, "team", EDITOR)
    with secured.client(team) as t, secured.client(platform_user) as p:
        created = t.post("/api/training/submit", json={
            "pod_annotations": {"sim.shunter.dev/run-for": "1s"}, "gpus": 1})  # fmt: skip
        assert created.status_code == 201, created.text
        jobs.wait_phase(created.json()["job_id"], "completed")

        def accounted() -> dict[str, Any] | None:
            answer = t.get("/api/training/usage", params={"namespace": namespace, "step": "hour"})
            assert answer.status_code == 200, answer.text
            return group_of(answer.json(), namespace)

        mine = wait_for(accounted, timeout=60, what="the run in the accounting")
        assert mine["total_attempts"] == 1
        assert mine["outcomes"]["completed"]["attempts"] == 1
        assert mine["total_allocated_gpu_hours"] > 0
        assert mine["total_lost_gpu_hours"] == 0

        by_queue = t.get("/api/training/usage", params={"namespace": namespace, "by": "queue"})
        assert [g["key"] for g in by_queue.json()["groups"]] == ["default"]
        shares = t.get("/api/training/shares", params={"namespace": namespace})
        assert shares.status_code == 200, shares.text
        (default,) = [q for q in shares.json()["queues"] if q["queue"] == "default"]
        assert [n["namespace"] for n in default["namespaces"]] == [namespace]

        for route in ROUTES:
            elsewhere = t.get(route, params={"namespace": "kube-system"})
            assert elsewhere.status_code == 403
            everyone = t.get(route, params={"namespace": "*"})
            assert everyone.status_code == 403
            assert "may not list trainingjobs in every namespace" in everyone.json()["message"]
            assert p.get(route, params={"namespace": "*"}).status_code == 200, route

        everything = p.get("/api/training/usage", params={"namespace": "*"}).json()
        assert everything["namespace"] == "*"
        assert group_of(everything, namespace) is not None
        assert p.get("/api/training/jobs", params={"namespace": "*"}).status_code == 422


def test_shares_show_the_fields_a_queue_carries(
    secured: ApiProcess, kube_api: client.ApiClient, namespace: str, platform_user: str
):
    """Weights come from spec.fairSharing; a queue without it weighs 1. (The operator's
    decayed usage is read from the queue's status when it writes one.)"""
    custom = client.CustomObjectsApi(kube_api)
    names = [f"{namespace}-heavy"[:63], f"{namespace}-light"[:63]]
    cohort = f"{namespace}-cohort"[:63]
    for name, weight in zip(names, (2, None), strict=True):
        spec: dict[str, Any] = {"gpuQuota": 4, "cohort": cohort}
        if weight is not None:
            spec["fairSharing"] = {"weight": weight}
        custom.create_cluster_custom_object(GROUP, VERSION, "trainingqueues", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingQueue",
            "metadata": {"name": name}, "spec": spec})  # fmt: skip
    try:
        with secured.client(platform_user) as p:

            def listed() -> dict[str, dict[str, Any]] | None:
                body = p.get("/api/training/shares", params={"namespace": "*"}).json()
                found = {q["queue"]: q for q in body["queues"] if q["queue"] in names}
                return found if len(found) == 2 else None

            found = wait_for(listed, timeout=30, what="the queues in /shares")
        heavy, light = found[names[0]], found[names[1]]
        # Until the CRD declares spec.fairSharing the API server prunes it: then both
        # queues weigh 1, as the API shows.
        stored = custom.get_cluster_custom_object(GROUP, VERSION, "trainingqueues", names[0])
        weighted = "fairSharing" in stored["spec"]
        assert (heavy["weight"], heavy["fair_sharing"], heavy["normalized_weight"]) == (
            (2.0, True, 0.6667) if weighted else (1.0, False, 0.5))  # fmt: skip
        assert (light["weight"], light["fair_sharing"], light["normalized_weight"]) == (
            (1.0, False, 0.3333) if weighted else (1.0, False, 0.5))  # fmt: skip
        assert light["share"] is None or isinstance(light["share"], float)
    finally:
        for name in names:
            custom.delete_cluster_custom_object(GROUP, VERSION, "trainingqueues", name)


def test_the_weighted_share_metric_shows_what_a_borrowing_queue_holds_over_its_weight(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    queues: Callable[..., str],
    jobs: Jobs,
    node_pool: NodePool,
):
    """The operator writes no weighted share to a queue's status: the metric is the
    operator's rule over the jobs the API watches, as GET /shares shows it."""
    node_pool.add(1)
    cohort = f"c-{uuid.uuid4().hex[:6]}"
    queues(gpuQuota=8, cohort=cohort)  # lends its 8 idle GPUs
    borrower = queues(gpuQuota=0, cohort=cohort, fairSharing={"weight": 2})
    start_operator()
    api = start_api()
    jobs.create(a_training_job("borrows").with_gpus(4).running_for("600s")
                .with_spec(queue=borrower, nodeSelector=node_pool.selector))  # fmt: skip
    jobs.wait_phase("borrows", "running", timeout=60)
    sample = f'shunter_queue_weighted_share{{queue="{borrower}"}} '

    def scraped() -> float | None:
        with api.client() as http:
            lines = http.get("/metrics").text.splitlines()
        return next((float(line[len(sample) :]) for line in lines if line.startswith(sample)),
                    None)  # fmt: skip

    # 4 GPUs held above a quota of 0, over a weight of 2.
    assert wait_for(scraped, timeout=30, what="the borrower's weighted share") == 2.0
    jobs.cancel("borrows")
