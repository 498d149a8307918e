"""The trainer Pod as a real API server admits it: a namespace enforcing the
`restricted` Pod Security Standard accepts it (a server-side dry run, then a job run
end to end there by the operator)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client

from shunter.domain.model import Job
from shunter.domain.podspec import build_pod
from tests.support.builders import a_training_job
from tests.support.operator import Jobs, OperatorProcess


def test_restricted_namespace_admits_the_trainer_pod(kube_api: client.ApiClient, namespace: str):
    core = client.CoreV1Api(kube_api)
    core.patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    job: Job = a_training_job("restricted", namespace).with_gpus(0).job()
    pod = build_pod(job)
    pod["metadata"]["ownerReferences"] = []  # the job itself does not exist here
    created = core.create_namespaced_pod(namespace, pod, dry_run="All")
    assert created.spec.security_context.run_as_non_root is True

    # The same namespace refuses a Pod that drops the hardening: the check is real.
    del pod["spec"]["containers"][0]["securityContext"]
    with pytest.raises(client.ApiException) as refused:
        core.create_namespaced_pod(namespace, pod, dry_run="All")
    assert refused.value.status == 403
    assert "violates PodSecurity" in str(refused.value.body)


def test_a_job_runs_end_to_end_in_a_restricted_namespace(
    kube_api: client.ApiClient,
    jobs: Jobs,
    start_operator: Callable[..., OperatorProcess],
):
    """Not only a dry run: the operator's real Pods are admitted there, run, complete,
    and are cancelled (kwok plays the kubelet)."""
    client.CoreV1Api(kube_api).patch_namespace(
        jobs.namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    start_operator(SHUNTER_MAX_RUNNING="2")
    jobs.create(a_training_job("finishes").running_for("2s"))
    jobs.create(a_training_job("cancelled"))
    jobs.wait_phase("cancelled", "running", timeout=30)
    jobs.cancel("cancelled")
    assert jobs.wait_phase("cancelled", "cancelled", timeout=60)["status"]["message"] == (
        "Cancelled by user"
    )
    done = jobs.wait_phase("finishes", "completed", timeout=60)["status"]
    assert done["reason"] == "Completed"
    pod = jobs.core.read_namespaced_pod("finishes-trainer", jobs.namespace)
    assert pod.spec.security_context.run_as_non_root is True
    assert pod.spec.automount_service_account_token is False
    assert "PodRejected" not in jobs.event_reasons("finishes")
