"""Red team: a namespace's TrainingJob editor tries to mount claims nobody offered.

The attacker is a ServiceAccount holding only the chart's editor ClusterRole in the
namespace (a RoleBinding): it may create TrainingJobs, through the REST API (auth on,
its token) and straight through the API server (what kubectl does), and nothing else.
It tries (a) a job named so that the operator's own `NAME-checkpoints` is somebody's
existing claim, from a checkpoint size or the operator's default, and (b) naming
another job's claim, or a user's, as its checkpoint claim. Every way ends without a
Pod: 422 from REST, `failed` / ClaimNotAllowed from the operator; and it cannot offer
the claim to itself (labelling it is not an editor's right).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from shunter.devcluster.accounts import account_with_role
from tests.cluster.operator.test_claims_e2e import make_claim
from tests.support.api import ApiProcess
from tests.support.builders import a_training_job
from tests.support.kube import EDITOR, api_client, token_kubeconfig
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

# The chart's default gives every job a NAME-checkpoints claim (checkpoints.defaultSize).
SIZE = {"SHUNTER_CHECKPOINT_SIZE": "1Gi"}


@pytest.fixture
def secured(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    user_roles: list[str],
) -> ApiProcess:
    start_operator(SHUNTER_MAX_RUNNING="5", **SIZE)
    return start_api(SHUNTER_API_AUTH="kubernetes", **SIZE)


@pytest.fixture
def attacker(kube_api: client.ApiClient, namespace: str) -> str:
    """The editor's token."""
    return account_with_role(kube_api, namespace, "mallory", EDITOR)


def as_attacker(kubeconfig: Path, token: str, tmp_path: Path) -> client.ApiClient:
    return api_client(token_kubeconfig(kubeconfig, token, tmp_path / "mallory.kubeconfig"))


def create_job(api: client.ApiClient, namespace: str, name: str, **spec: Any) -> None:
    """`kubectl create -f` of a TrainingJob, as whoever api authenticates."""
    body = a_training_job(name).with_spec(**spec).manifest()
    body["metadata"]["namespace"] = namespace
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        "shunter.dev", "v1alpha1", namespace, "trainingjobs", body
    )


def assert_refused_without_pod(jobs: Jobs, name: str, claim: str) -> None:
    status = jobs.wait_phase(name, "failed", timeout=30)["status"]
    assert status["reason"] == "ClaimNotAllowed"
    assert f"checkpoint claim '{claim}' may not be mounted" in status["message"]
    assert not [p for p in jobs.pod_names() if p.startswith(f"{name}-trainer")]


def test_an_editor_cannot_mount_a_claim_by_naming_its_job_after_it(
    secured: ApiProcess, attacker: str, jobs: Jobs, kubeconfig: Path, tmp_path: Path
):
    make_claim(jobs, "payroll-checkpoints", labelled=False)  # somebody's data
    make_claim(jobs, "ledger-checkpoints", labelled=False)
    with secured.client(attacker) as http:
        for body in ({"name": "payroll", "checkpoint_size": "1Gi"}, {"name": "payroll"}):
            refused = http.post("/api/training/submit", json=body)
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"] == {
                "reason": "ClaimNotAllowed", "claim": "payroll-checkpoints"}  # fmt: skip

    mallory = as_attacker(kubeconfig, attacker, tmp_path)
    create_job(mallory, jobs.namespace, "payroll", checkpoint={"size": "1Gi"})
    create_job(mallory, jobs.namespace, "ledger")  # the operator's default size
    assert_refused_without_pod(jobs, "payroll", "payroll-checkpoints")
    assert_refused_without_pod(jobs, "ledger", "ledger-checkpoints")

    # Nor can it offer the claim to itself: labelling a claim is not an editor's right.
    with pytest.raises(ApiException) as denied:
        client.CoreV1Api(mallory).patch_namespaced_persistent_volume_claim(
            "payroll-checkpoints", jobs.namespace,
            {"metadata": {"labels": {"shunter.dev/checkpoints": "true"}}},
        )  # fmt: skip
    assert denied.value.status == 403


def test_an_editor_cannot_mount_another_jobs_or_a_users_claim_by_name(
    secured: ApiProcess, attacker: str, jobs: Jobs, kubeconfig: Path, tmp_path: Path
):
    jobs.create(a_training_job("victim"))  # its NAME-checkpoints, made by the operator
    wait_for(lambda: "victim-trainer" in jobs.pod_names(), timeout=30, what="the victim's Pod")
    make_claim(jobs, "home", labelled=False)
    with secured.client(attacker) as http:
        for claim in ("victim-checkpoints", "home"):
            refused = http.post("/api/training/submit",
                                json={"name": "thief", "checkpoint_claim": claim})  # fmt: skip
            assert refused.status_code == 422, refused.text
            assert refused.json()["detail"] == {"reason": "ClaimNotAllowed", "claim": claim}

    mallory = as_attacker(kubeconfig, attacker, tmp_path)
    create_job(mallory, jobs.namespace, "thief", checkpoint={"claimName": "victim-checkpoints"})
    create_job(mallory, jobs.namespace, "squatter", checkpoint={"claimName": "home"})
    assert_refused_without_pod(jobs, "thief", "victim-checkpoints")
    assert_refused_without_pod(jobs, "squatter", "home")
