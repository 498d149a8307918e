"""Red team, arrays: the runs of a team's array are created and cancelled by the
operator, yet carry the team's identity. The chart's identity policy (rendered by helm
as an install renders it) keeps the submitted-by and cancelled-by that the operator's
own account copies from the array; anyone else's values are stamped over, so a team
cannot pass a job off as another user's by dressing it as a run. The operator runs
with the chart's RBAC only (its ServiceAccount's token)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from shunter.domain.model import GROUP, PLURAL, VERSION
from tests.support.kube import EDITOR
from tests.support.operator import Jobs, OperatorProcess
from tests.support.policy import (
    POLICY_LABEL,
    Policies,
    account_kubeconfig,
    kubectl,
    render,
    team,
    token_client,
)
from tests.support.polling import wait_for

GOOD = {"image": "shunter/trainer:test", "gpus": 0,
        "podMetadata": {"annotations": {"sim.shunter.dev/run-for": "600s"}}}  # fmt: skip
SUBMITTED = "shunter.dev/submitted-by"
CANCELLED = "shunter.dev/cancelled-by"


@pytest.fixture
def chart_operator(
    kube_api: client.ApiClient, kubeconfig: Path, namespace: str, tmp_path: Path, crd: None,
    user_roles: list[str],
) -> Iterator[OperatorProcess]:  # fmt: skip
    """The operator as the chart installs it in `namespace`: its ServiceAccount, its
    RBAC and the identity policy of the same release (which names that account)."""
    name = f"arr-{uuid.uuid4().hex[:6]}"
    label = uuid.uuid4().hex[:8]
    values = {"policy": {"namespaceSelector": {"matchLabels": {POLICY_LABEL: label}}}}
    docs = render(("templates/rbac.yaml", "templates/serviceaccounts.yaml",
                   "templates/identity.yaml"), name=name, namespace=namespace,
                  values=values)  # fmt: skip
    manifest = yaml.safe_dump_all(docs)
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=manifest)
    policies = Policies(kube_api, kubeconfig)
    policies.label = label
    policies.bind(namespace)
    policies.await_stamping(namespace, GOOD)
    account = account_kubeconfig(
        kube_api,
        kubeconfig,
        namespace=namespace,
        name=f"{name}-operator",
        out=tmp_path / "operator.kubeconfig",
    )
    operator = OperatorProcess(kubeconfig=account, namespace=namespace, database_url=None,
                               log_path=tmp_path / "operator.log",
                               env={"SHUNTER_MAX_RUNNING": "10"})  # fmt: skip
    try:
        yield operator.start()
    finally:
        operator.stop()
        kubectl(kubeconfig, "delete", "--ignore-not-found", "-n", namespace, "-f", "-",
                stdin=manifest)  # fmt: skip


def test_runs_carry_the_teams_identity_and_a_forged_run_does_not(
    chart_operator: OperatorProcess, kube_api: client.ApiClient, jobs: Jobs, namespace: str
):
    alice = team(kube_api, namespace, EDITOR, "alice")
    alice_name = f"system:serviceaccount:{namespace}:alice"
    as_alice = client.CustomObjectsApi(token_client(kube_api, alice))

    def create(body: dict[str, Any]) -> dict[str, Any]:
        made: dict[str, Any] = as_alice.create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, body)  # fmt: skip
        return made

    array = create({"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
                    "metadata": {"name": "sweep"},
                    "spec": {**GOOD, "array": {"count": 4, "maxParallel": 2}}})  # fmt: skip
    assert array["metadata"]["annotations"][SUBMITTED] == alice_name
    wait_for(lambda: (jobs.status("sweep").get("array") or {}).get("running") == 2, timeout=60,
             what="2 runs running")  # fmt: skip
    for i in (0, 1):
        run = jobs.get(f"sweep-{i}")
        assert run["metadata"]["namespace"] == namespace
        assert run["metadata"]["annotations"][SUBMITTED] == alice_name  # not the operator's

    # A job dressed as a run (its name and labels, another user's name, but no
    # ownerReference): the policy stamps its creator, and the array does not adopt it
    # (that index counts as failed: its name is taken).
    forged = create({
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
        "metadata": {
            "name": "sweep-2", "labels": {"shunter.dev/array": "sweep",
                                          "shunter.dev/array-index": "2"},
            "annotations": {SUBMITTED: "system:serviceaccount:other-team:bob"},
        },
        "spec": GOOD,
    })  # fmt: skip
    assert forged["metadata"]["annotations"][SUBMITTED] == alice_name

    as_alice.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "sweep",
                                            {"spec": {"cancelled": True}})  # fmt: skip
    done = jobs.wait_phase("sweep", "cancelled", timeout=60)
    assert done["metadata"]["annotations"][CANCELLED] == alice_name
    for i in (0, 1):
        run = jobs.get(f"sweep-{i}")
        assert run["status"]["phase"] == "cancelled"
        assert run["metadata"]["annotations"][CANCELLED] == alice_name  # not the operator's
    assert done["status"]["array"]["cancelled"] == 2
    assert done["status"]["array"]["failed"] == 1
    assert jobs.get("sweep-2")["status"].get("phase") != "cancelled"  # not a run: untouched
    jobs.cancel("sweep-2")
    # The chart's RBAC was enough for all of it (creating runs, cancelling them).
    assert [line for line in chart_operator.log().splitlines() if "Forbidden" in line] == []
