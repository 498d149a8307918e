"""Auth is Kubernetes': TokenReview says who, SubjectAccessReview says whether.

Real ServiceAccount tokens (TokenRequest) granted the chart's own user roles
(`shunter-trainingjob-editor` / `-viewer`, or the built-in `edit` / `view` they are
aggregated into) by RoleBindings in the test namespace; the API server decides every
cell of the matrix.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client

from shunter.devcluster.accounts import account_with_role
from tests.support.api import ApiProcess
from tests.support.kube import EDITOR, VIEWER
from tests.support.operator import OperatorProcess
from tests.support.polling import wait_for

SUBMIT = {"pod_annotations": {"sim.shunter.dev/run-for": "600s"}}


@pytest.fixture
def secured(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    user_roles: list[str],
) -> ApiProcess:
    start_operator()
    return start_api(SHUNTER_API_AUTH="kubernetes")


def test_no_or_bad_token_is_401_with_a_json_reason(secured: ApiProcess):
    with secured.client() as anonymous:
        response = anonymous.get("/api/training/queue")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json()["message"].startswith("Missing bearer token")
        assert anonymous.get("/healthz").status_code == 200
    with secured.client() as empty:  # HTTP strips "Bearer "'s trailing space
        response = empty.get("/api/training/queue", headers={"Authorization": "Bearer"})
        assert response.status_code == 401
        assert response.json()["message"].startswith("Missing bearer token")
    with secured.client("not-a-real-token") as forged:
        response = forged.post("/api/training/cancel/anything")
        assert response.status_code == 401
        assert response.json() == {"success": False, "message": "Invalid or expired token"}


def test_rbac_decides_each_verb(secured: ApiProcess, kube_api: client.ApiClient, namespace: str):
    writer = account_with_role(kube_api, namespace, "writer", EDITOR)
    reader = account_with_role(kube_api, namespace, "reader", VIEWER)
    outsider = account_with_role(kube_api, namespace, "outsider", None)

    with secured.client(writer) as w, secured.client(reader) as r, secured.client(outsider) as o:
        created = w.post("/api/training/submit", json=SUBMIT)
        assert created.status_code == 201, created.text
        job = created.json()["job_id"]

        assert r.get("/api/training/queue").status_code == 200
        assert r.get(f"/api/training/status/{job}").status_code == 200
        denied = r.post(f"/api/training/cancel/{job}")
        assert denied.status_code == 403
        assert "may not patch trainingjobs" in denied.json()["message"]
        assert r.post("/api/training/submit", json=SUBMIT).status_code == 403

        for call in (
            o.get("/api/training/queue"),
            o.get(f"/api/training/status/{job}"),
            o.post(f"/api/training/cancel/{job}"),
        ):
            assert call.status_code == 403
        # An outsider cannot even learn whether a job exists.
        assert o.post("/api/training/cancel/no-such-job").status_code == 403

        cancelled = w.post(f"/api/training/cancel/{job}")
        assert cancelled.status_code == 200
        assert cancelled.json()["success"] is True


def test_no_access_to_other_namespaces(
    secured: ApiProcess, kube_api: client.ApiClient, namespace: str
):
    writer = account_with_role(kube_api, namespace, "writer", EDITOR)
    with secured.client(writer) as w:
        for call in (
            w.get("/api/training/queue", params={"namespace": "kube-system"}),
            w.post("/api/training/submit", params={"namespace": "default"}, json=SUBMIT),
            w.post("/api/training/cancel/x", params={"namespace": "default"}),
        ):
            assert call.status_code == 403
            assert "may not" in call.json()["message"]


def test_the_built_in_edit_and_view_roles_include_shunter(
    secured: ApiProcess, kube_api: client.ApiClient, namespace: str
):
    """The chart's roles are aggregated: whoever has `edit` or `view` in a namespace may
    use Shunter there without a grant of its own."""
    rbac = client.RbacAuthorizationV1Api(kube_api)

    def aggregated(role: str, verb: str) -> bool:
        rules = rbac.read_cluster_role(role).rules or []
        return any(
            "shunter.dev" in (r.api_groups or []) and "trainingjobs" in (r.resources or [])
            and verb in (r.verbs or [])
            for r in rules
        )  # fmt: skip

    wait_for(
        lambda: aggregated("edit", "patch") and aggregated("view", "list"),
        timeout=30,
        what="the aggregation controller to fold the chart's roles into edit and view",
    )
    editor = account_with_role(kube_api, namespace, "builtin-editor", "edit")
    viewer = account_with_role(kube_api, namespace, "builtin-viewer", "view")
    with secured.client(editor) as e, secured.client(viewer) as v:
        created = e.post("/api/training/submit", json=SUBMIT)
        assert created.status_code == 201, created.text
        job = created.json()["job_id"]
        assert v.get(f"/api/training/status/{job}").status_code == 200
        assert v.post(f"/api/training/cancel/{job}").status_code == 403
        assert e.post(f"/api/training/cancel/{job}").status_code == 200
