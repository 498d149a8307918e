"""The namespaces served, on the real control plane: a job in an excluded namespace is
left alone (no status, no Pod) by an operator serving the whole cluster, and an
operator given a list of namespaces runs the jobs of each."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from tests.support.builders import a_training_job
from tests.support.kube import temporary_namespace
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for


@pytest.fixture
def elsewhere(kube_api: client.ApiClient, unique_name: str, crd: None) -> Iterator[Jobs]:
    """The jobs of a second namespace (deleted after the test)."""
    with temporary_namespace(kube_api, f"{unique_name}-b") as name:
        yield Jobs(kube_api, name)


def test_a_job_in_an_excluded_namespace_is_left_alone(
    jobs: Jobs, elsewhere: Jobs, start_operator: Callable[..., OperatorProcess]
):
    # Created first: when the served job (created after it) has its Pod, the operator
    # has long seen this one.
    elsewhere.create(a_training_job("ignored"))
    operator = start_operator(
        SHUNTER_NAMESPACE="",  # the whole cluster, as the chart's default
        SHUNTER_EXCLUDE_NAMESPACES=f"kube-system,{elsewhere.namespace}",
        SHUNTER_MAX_RUNNING="50",
    )
    jobs.create(a_training_job("served"))
    wait_for(lambda: "served-trainer" in jobs.pod_names(), timeout=30,
             what="the served job's Pod")  # fmt: skip
    assert f"all namespaces except kube-system,{elsewhere.namespace}" in operator.log()
    assert elsewhere.pod_names() == []
    assert "status" not in elsewhere.get("ignored")
    assert elsewhere.event_reasons("ignored") == []
    assert f"{elsewhere.namespace}/ignored" not in operator.log()


def test_an_operator_given_two_namespaces_runs_the_jobs_of_both(
    jobs: Jobs, elsewhere: Jobs, start_operator: Callable[..., OperatorProcess]
):
    start_operator(
        SHUNTER_NAMESPACE=f"{jobs.namespace},{elsewhere.namespace}", SHUNTER_MAX_RUNNING="5"
    )
    jobs.create(a_training_job("first"))
    elsewhere.create(a_training_job("second"))
    wait_for(lambda: "first-trainer" in jobs.pod_names(), timeout=30, what="first's Pod")
    wait_for(lambda: "second-trainer" in elsewhere.pod_names(), timeout=30, what="second's Pod")
