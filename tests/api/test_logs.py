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

from shunter.operator.model import GROUP, JOB_UID_LABEL, PLURAL, VERSION
from tests.api.test_acceptance import submit, wait_status
from tests.support.api import ApiProcess
from tests.support.builders import a_training_job
from tests.support.operator import Jobs
from tests.support.polling import wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


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


def test_a_pod_that_cannot_be_scheduled_has_no_logs_yet(http: httpx.Client):
    huge = submit(http, {"gpus": 64})  # larger than any node: admitted, never scheduled
    wait_for(
        lambda: http.get(f"/api/training/status/{huge}").json()["pod_name"] is not None,
        timeout=30,
        what="the job's Pod",
    )
    answer = logs(http, huge)
    assert answer.status_code == 409
    assert "not scheduled on a node yet" in answer.json()["message"]


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
    start_api: Callable[..., ApiProcess],
    jobs: Jobs,
    kube_api: client.ApiClient,
    dead_node: str,
    namespace: str,
):
    """No operator here: the job's status and Pod are written by hand, the Pod bound to
    the dead node, as the operator and the scheduler would have."""
    api = start_api()
    created = jobs.create(a_training_job("on-dead-node"))
    pod = "on-dead-node-trainer"
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "on-dead-node",
        {"status": {"phase": "running", "podName": pod, "nodeName": dead_node}},
    )  # fmt: skip
    client.CoreV1Api(kube_api).create_namespaced_pod(namespace, {
        "metadata": {"name": pod, "labels": {JOB_UID_LABEL: created["metadata"]["uid"]}},
        "spec": {"nodeName": dead_node, "tolerations": [{"operator": "Exists"}],
                 "containers": [{"name": "trainer", "image": "shunter/trainer:test"}]},
    })  # fmt: skip
    with api.client() as http:
        answer = logs(http, "on-dead-node")
        assert answer.status_code == 502
        assert answer.json()["message"].startswith("Cannot read the logs: Get ")
        assert "connection refused" in answer.json()["message"]
        followed = logs(http, "on-dead-node", follow=True)
        assert followed.status_code == 502


def test_a_pod_of_an_earlier_job_of_the_same_name_is_not_shown(
    start_api: Callable[..., ApiProcess], jobs: Jobs, kube_api: client.ApiClient, namespace: str
):
    api = start_api()
    jobs.create(a_training_job("reused"))
    client.CustomObjectsApi(kube_api).patch_namespaced_custom_object_status(
        GROUP, VERSION, namespace, PLURAL, "reused",
        {"status": {"phase": "running", "podName": "reused-trainer"}},
    )  # fmt: skip
    client.CoreV1Api(kube_api).create_namespaced_pod(namespace, {
        "metadata": {"name": "reused-trainer", "labels": {JOB_UID_LABEL: "an-older-uid"}},
        "spec": {"containers": [{"name": "trainer", "image": "shunter/trainer:test"}]},
    })  # fmt: skip
    with api.client() as http:
        answer = logs(http, "reused")
        assert answer.status_code == 404
        assert answer.json()["message"] == "Pod reused-trainer belongs to another job named reused"
