"""The namespaces served, on the real control plane: a job in an excluded namespace is
left alone (no status, no Pod) by an operator serving the whole cluster, and an
operator given a list of namespaces runs the jobs of each."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes import client

from tests.support.builders import a_training_job
from tests.support.kube import temporary_namespace
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

pytestmark = pytest.mark.cluster


def test_a_job_in_an_excluded_namespace_is_left_alone(
    jobs: Jobs, kube_api: client.ApiClient, unique_name: str,
    start_operator: Callable[..., OperatorProcess],
):  # fmt: skip
    with temporary_namespace(kube_api, f"{unique_name}-excluded") as excluded:
        outside = Jobs(kube_api, excluded)
        # Created first: when the served job (created after it) has its Pod, the
        # operator has long seen this one.
        outside.create(a_training_job("ignored"))
        operator = start_operator(
            SHUNTER_NAMESPACE="",  # the whole cluster, as the chart's default
            SHUNTER_EXCLUDE_NAMESPACES=f"kube-system,{excluded}",
            SHUNTER_MAX_RUNNING="50",
        )
        jobs.create(a_training_job("served"))
        wait_for(lambda: "served-trainer" in jobs.pod_names(), timeout=30,
                 what="the served job's Pod")  # fmt: skip
        assert f"all namespaces except kube-system,{excluded}" in operator.log()
        assert outside.pod_names() == []
        assert "status" not in outside.get("ignored")
        assert outside.event_reasons("ignored") == []
        assert f"{excluded}/ignored" not in operator.log()


def test_an_operator_given_two_namespaces_runs_the_jobs_of_both(
    jobs: Jobs, kube_api: client.ApiClient, unique_name: str,
    start_operator: Callable[..., OperatorProcess],
):  # fmt: skip
    with temporary_namespace(kube_api, f"{unique_name}-second") as second:
        other = Jobs(kube_api, second)
        start_operator(SHUNTER_NAMESPACE=f"{jobs.namespace},{second}", SHUNTER_MAX_RUNNING="5")
        jobs.create(a_training_job("first"))
        other.create(a_training_job("second"))
        wait_for(lambda: "first-trainer" in jobs.pod_names(), timeout=30, what="first's Pod")
        wait_for(lambda: "second-trainer" in other.pod_names(), timeout=30, what="second's Pod")
