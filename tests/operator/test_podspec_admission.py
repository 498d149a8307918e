"""The trainer Pod as a real API server admits it: a namespace enforcing the
`restricted` Pod Security Standard accepts it (server-side dry run, so nothing runs)."""

from __future__ import annotations

import pytest
from kubernetes import client

from shunter.operator.model import Job
from shunter.operator.podspec import build_pod
from tests.support.builders import a_training_job

pytestmark = pytest.mark.cluster


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
