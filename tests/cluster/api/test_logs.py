"""GET /status/{id}/logs on the real control plane: every answer of shunter.api.logs.

kwok's nodes run no process, so a running job's answer there is the one honest line
saying so. A node whose kubelet does not answer is made for real: a Node object with
no kubelet behind its address, and a Pod bound to it; the API server itself fails to
reach it, as it would a dead node.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client

from shunter.domain.model import GROUP, JOB_UID_LABEL, PLURAL, VERSION
from tests.cluster.api.test_acceptance import submit, wait_status
from tests.support.api import ApiProcess
from tests.support.builders import a_training_job
from tests.support.operator import Jobs


def logs(http: httpx.Client, job: str, **params: Any) -> httpx.Response:
    return http.get(f"/api/training/status/{job}/logs", params=params)


def test_unknown_and_queued_jobs_have_no_logs(http: httpx.Client):
    missing = logs(http, "no-such-job")
    assert (missing.status_code, missing.json()["message"]) == (404, "Job not found")

    running = submit(http)
    wait_status(http, running, "running")
    waiting = submit(http)  # one slot: it stays queued, without a Pod
    answer = logs(http, waiting)
    assert answer.status_code == 404
    assert answer.json()["message"] == f"Job {waiting} has no Pod (it is queued)"


def test_a_pod_on_a_kwok_node_says_it_has_no_process(http: httpx.Client):
    job = submit(http)
    wait_status(http, job, "running")
    status = http.get(f"/api/training/status/{job}").json()
    for follow in (False, True):
        answer = logs(http, job, follow=follow, tail=10)
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith("text/plain")
        assert answer.headers["x-shunter-simulated-node"] == "true"
        assert answer.text == (
            f"Pod {status['pod_name']} runs on a simulated node ({status['node_name']}, kwok):"
            " no process, no logs.\n"
        )


def job_with_pod(
    jobs: Jobs,
    kube_api: client.ApiClient,
    name: str,
    *,
    pod_labels: dict[str, str] | None = None,
    node: str | None = None,
) -> str:
    """A job whose status names its Pod, and that Pod, written by hand as the operator
    (and the scheduler, with node) would have: for states an operator that places its
    own Pods does not leave them in. The Pod's name."""
    created = jobs.create(a_training_job(name))
    pod = f"{name}-trainer"
    status = {"phase": "starting", "podName": pod, **({"nodeName": node} if node else {})}
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, jobs.namespace, PLURAL, name, {"status": status}
    )
    labels = pod_labels if pod_labels is not None else {JOB_UID_LABEL: created["metadata"]["uid"]}
    container = {"name": "trainer", "image": "shunter/trainer:test"}
    spec: dict[str, Any] = {"tolerations": [{"operator": "Exists"}], "containers": [container]}
    if node:
        spec["nodeName"] = node
    else:  # a selector no node has: the scheduler leaves it Pending, unbound
        spec["nodeSelector"] = {"test.shunter.dev/nowhere": "true"}
    client.CoreV1Api(kube_api).create_namespaced_pod(
        jobs.namespace, {"metadata": {"name": pod, "labels": labels}, "spec": spec}
    )
    return pod


def test_a_pod_not_scheduled_yet_has_no_logs(
    start_api: Callable[..., ApiProcess], jobs: Jobs, kube_api: client.ApiClient
):
    api = start_api()
    pod = job_with_pod(jobs, kube_api, "unplaced")
    with api.client() as http:
        answer = logs(http, "unplaced")
        assert answer.status_code == 409
        assert answer.json()["message"] == f"Pod {pod} is not scheduled on a node yet: no logs"


def test_a_cancelled_jobs_pod_is_gone(http: httpx.Client):
    job = submit(http)
    wait_status(http, job, "running")
    assert http.post(f"/api/training/cancel/{job}").status_code == 200
    wait_status(http, job, "cancelled")
    answer = logs(http, job)
    assert answer.status_code == 404
    assert "no longer exists" in answer.json()["message"]


@pytest.fixture
def dead_node(kube_api: client.ApiClient) -> Iterator[str]:
    """A Node that is not kwok's and whose kubelet address answers nothing."""
    core = client.CoreV1Api(kube_api)
    name = f"dead-{uuid.uuid4().hex[:6]}"
    taint = {"key": "test/dead", "effect": "NoSchedule"}
    core.create_node({"metadata": {"name": name}, "spec": {"taints": [taint]}})
    core.patch_node_status(name, {"status": {
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 1}},  # nothing listens there
    }})  # fmt: skip
    try:
        yield name
    finally:
        core.delete_node(name)


def test_a_node_whose_kubelet_does_not_answer_is_a_502(
    start_api: Callable[..., ApiProcess], jobs: Jobs, kube_api: client.ApiClient, dead_node: str
):
    """No operator here: the job's status and its Pod, bound to the dead node, are
    written by hand."""
    api = start_api()
    job_with_pod(jobs, kube_api, "on-dead-node", node=dead_node)
    with api.client() as http:
        answer = logs(http, "on-dead-node")
        assert answer.status_code == 502
        assert answer.json()["message"].startswith("Cannot read the logs: Get ")
        assert "connection refused" in answer.json()["message"]
        followed = logs(http, "on-dead-node", follow=True)
        assert followed.status_code == 502


def test_a_pod_of_an_earlier_job_of_the_same_name_is_not_shown(
    start_api: Callable[..., ApiProcess], jobs: Jobs, kube_api: client.ApiClient
):
    api = start_api()
    job_with_pod(jobs, kube_api, "reused", pod_labels={JOB_UID_LABEL: "an-older-uid"})
    with api.client() as http:
        answer = logs(http, "reused")
        assert answer.status_code == 404
        assert answer.json()["message"] == "Pod reused-trainer belongs to another job named reused"
