"""Who did it: the API records the authenticated user who submitted and who cancelled
a job on the TrainingJob itself, and every reader shows it (status, Events, the
mirror, history). Real tokens, real RBAC (the chart's editor role), real PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
from kubernetes import client

from shunter.devcluster.accounts import account_with_role
from tests.cluster.api.test_acceptance import wait_status
from tests.support.api import ApiProcess
from tests.support.kube import EDITOR
from tests.support.operator import Jobs, OperatorProcess, mirror_row
from tests.support.polling import wait_for, wait_until_equal

LONG = {"pod_annotations": {"sim.shunter.dev/run-for": "600s"}}


def events(http: httpx.Client, job: str) -> list[dict[str, Any]]:
    response = http.get(f"/api/training/status/{job}/events")
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


def history(http: httpx.Client, **params: Any) -> list[dict[str, Any]]:
    response = http.get("/api/training/jobs", params=params)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_submit_and_cancel_record_the_authenticated_users(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    kube_api: client.ApiClient,
    jobs: Jobs,
    namespace: str,
    database_url: str,
    user_roles: list[str],
):
    start_operator()
    api = start_api(SHUNTER_API_AUTH="kubernetes")
    alice = account_with_role(kube_api, namespace, "alice", EDITOR)
    bob = account_with_role(kube_api, namespace, "bob", EDITOR)
    alice_name = f"system:serviceaccount:{namespace}:alice"
    bob_name = f"system:serviceaccount:{namespace}:bob"

    with api.client(alice) as a, api.client(bob) as b:
        # The body cannot name anyone: no annotations field, and a Pod annotation of the
        # same key stays on the Pod's metadata, not the job's.
        forged = a.post("/api/training/submit", json={**LONG, "annotations": {"x": "y"}})
        assert forged.status_code == 422
        spoof = {"pod_annotations": {**LONG["pod_annotations"],
                                     "shunter.dev/submitted-by": "mallory"}}  # fmt: skip
        created = a.post("/api/training/submit", json={"name": "audited", **spoof})
        assert created.status_code == 201, created.text
        annotations = jobs.get("audited")["metadata"]["annotations"]
        assert annotations["shunter.dev/submitted-by"] == alice_name
        assert "shunter.dev/cancelled-by" not in annotations
        wait_status(a, "audited", "running")
        status = a.get("/api/training/status/audited").json()
        assert (status["submitted_by"], status["cancelled_by"]) == (alice_name, None)

        assert b.post("/api/training/cancel/audited").status_code == 200
        wait_status(b, "audited", "cancelled")
        status = b.get("/api/training/status/audited").json()
        assert (status["submitted_by"], status["cancelled_by"]) == (alice_name, bob_name)
        assert status["message"] == "Cancelled by user"  # the guide's, unchanged
        assert jobs.get("audited")["metadata"]["annotations"]["shunter.dev/cancelled-by"] == (
            bob_name
        )
        # The Event is posted after the status is written: it may come a little later.
        wait_until_equal(
            lambda: [e["message"] for e in events(b, "audited") if e["reason"] == "Cancelled"],
            [f"Cancelled by user {bob_name}: pod audited-trainer stopped gracefully"],
            timeout=30,
            what="the Cancelled Event naming bob",
        )

        row = wait_for(
            lambda: next(iter(history(a, submitted_by=alice_name, status="cancelled")), None),
            timeout=30,
            what="the cancelled job in the history",
        )
        assert (row["job_id"], row["submitted_by"], row["cancelled_by"]) == (
            "audited",
            alice_name,
            bob_name,
        )
        db = mirror_row(database_url, row["uid"])
        assert db is not None
        assert (db["submitted_by"], db["cancelled_by"], db["error"]) == (
            alice_name,
            bob_name,
            "Cancelled by user",
        )
        assert history(a, submitted_by=bob_name) == []


def test_a_kubectl_cancel_names_nobody_and_auth_off_names_the_demo_user(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    jobs: Jobs,
):
    start_operator()
    with start_api().client() as http:
        created = http.post("/api/training/submit", json={"name": "by-kubectl", **LONG})
        assert created.status_code == 201
        wait_status(http, "by-kubectl", "running")
        jobs.cancel("by-kubectl")  # kubectl patch: no annotation
        wait_status(http, "by-kubectl", "cancelled")
        status = http.get("/api/training/status/by-kubectl").json()
        assert (status["submitted_by"], status["cancelled_by"]) == ("demo (auth disabled)", None)
        wait_until_equal(
            lambda: [
                e["message"] for e in events(http, "by-kubectl") if e["reason"] == "Cancelled"
            ],
            ["Cancelled by user: pod by-kubectl-trainer stopped gracefully"],
            timeout=30,
            what="the Cancelled Event naming no one",
        )
