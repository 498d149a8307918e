"""Arrays over REST: submit with `array`, the array's counts, one run addressed by its
index (GET, cancel, suspend, resume), the whole array cancelled, bad arrays refused
with nothing created, and a team's runs carrying that team's identity and namespace
only. Real operator, real API, kwok nodes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client

from shunter.devcluster.accounts import account_with_role
from tests.support.api import ApiProcess
from tests.support.kube import EDITOR, temporary_namespace
from tests.support.nodes import NodePool
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

LONG = {"sim.shunter.dev/run-for": "600s"}


@pytest.fixture
def rest(
    start_operator: Callable[..., OperatorProcess], start_api: Callable[..., ApiProcess],
    node_pool: NodePool,
) -> Iterator[httpx.Client]:  # fmt: skip
    node_pool.add(1)
    operator = start_operator(SHUNTER_MAX_RUNNING="10", wait=False)
    api = start_api(wait=False)
    operator.wait_started()
    with api.wait_ready().client() as http:
        yield http


def array_body(
    pool: NodePool, name: str, count: int, parallel: int, **extra: Any
) -> dict[str, Any]:
    return {"name": name, "gpus": 1, "node_selector": pool.selector, "pod_annotations": LONG,
            "array": {"count": count, "max_parallel": parallel}, **extra}  # fmt: skip


def status(http: httpx.Client, path: str) -> dict[str, Any]:
    response = http.get(f"/api/training/status/{path}")
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def test_an_array_over_rest_one_index_and_the_whole(
    rest: httpx.Client, node_pool: NodePool, jobs: Jobs
):
    http = rest
    made = http.post("/api/training/submit", json=array_body(node_pool, "rest", 5, 2))
    assert made.status_code == 201, made.text
    assert made.json()["job_id"] == "rest"
    wait_for(lambda: status(http, "rest")["array"]["running"] == 2, timeout=60,
             what="2 runs running")  # fmt: skip
    array = status(http, "rest")
    assert array["status"] == "running"
    assert array["array"] == {"count": 5, "max_parallel": 2, "queued": 0, "running": 2,
                              "suspended": 0, "completed": 0, "failed": 0, "cancelled": 0,
                              "not_created": 3}  # fmt: skip
    assert array["array_run"] is None
    # One index: by its own name, or through the array.
    run = status(http, "rest/index/1")
    assert run["job_id"] == "rest-1"
    assert run["array_run"] == {"array": "rest", "index": 1}
    assert run["array"] is None
    by_name = status(http, "rest-1")
    assert (by_name["job_id"], by_name["created_at"]) == (run["job_id"], run["created_at"])
    assert by_name["array_run"] == run["array_run"]
    missing = http.get("/api/training/status/rest/index/4")
    assert missing.status_code == 404
    assert "has not been created yet" in missing.json()["message"]
    beyond = http.get("/api/training/status/rest/index/5")
    assert beyond.status_code == 404
    assert "has no index 5 (count 5)" in beyond.json()["message"]
    assert http.get("/api/training/status/rest-1/index/0").status_code == 404  # not an array
    not_array = http.post("/api/training/cancel/rest-1/index/0")
    assert not_array.status_code == 404
    assert not_array.json() == {"success": False, "job_id": "rest-1-0",
                                "message": "Job 'rest-1' is not an array"}  # fmt: skip

    # Suspend one index, then cancel it: the guide's bodies, for the run.
    suspended = http.post("/api/training/suspend/rest/index/0")
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["job_id"] == "rest-0"
    resumed = http.post("/api/training/resume/rest/index/0")
    assert resumed.status_code == 200, resumed.text
    # The array counts a starting run as running; the run's own answer says which.
    wait_for(lambda: status(http, "rest-1")["status"] == "running", timeout=30,
             what="run 1 running")  # fmt: skip
    cancelled = http.post("/api/training/cancel/rest/index/1")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() == {"success": True, "job_id": "rest-1",
                                "previous_status": "running",
                                "message": "Job cancelled (was running)"}  # fmt: skip
    wait_for(lambda: status(http, "rest")["array"]["cancelled"] == 1, timeout=30,
             what="the array to count the cancelled run")  # fmt: skip

    # The whole array: suspend, resume, cancel.
    assert http.post("/api/training/suspend/rest").status_code == 200
    assert status(http, "rest")["status"] == "suspended"
    assert http.post("/api/training/resume/rest").status_code == 200
    wait_for(lambda: status(http, "rest")["array"]["running"] == 2, timeout=60,
             what="the runs to run again")  # fmt: skip
    whole = http.post("/api/training/cancel/rest")
    assert whole.status_code == 200, whole.text
    assert whole.json()["previous_status"] == "running"
    assert status(http, "rest")["status"] == "cancelled"
    done = status(http, "rest")["array"]
    assert done["running"] == 0
    assert done["queued"] == 0
    again = http.post("/api/training/cancel/rest")
    assert again.status_code == 409
    assert again.json()["message"] == "Job already finished with status: cancelled"


@pytest.mark.parametrize(
    ("array", "message"),
    [
        ({"count": 0}, "greater than or equal to 1"),
        ({"count": 1_000_000}, "less than or equal to 10000"),
        ({"count": 5, "max_parallel": 6}, "array.max_parallel (6) must be at most array.count (5)"),
        ({"count": 5, "parallel": 2}, "extra"),
    ],
    ids=["count-0", "count-10^6", "parallel-over-count", "unknown-field"],
)
def test_bad_arrays_are_refused_over_rest_and_nothing_is_created(
    start_api: Callable[..., ApiProcess], jobs: Jobs, array: dict[str, Any], message: str
):
    with start_api().client() as http:
        refused = http.post("/api/training/submit", json={"name": "bad", "array": array})
        assert refused.status_code == 422, refused.text
        assert message in refused.text
    listed = jobs.custom.list_namespaced_custom_object("shunter.dev", "v1alpha1",
                                                       jobs.namespace, "trainingjobs")  # fmt: skip
    assert listed["items"] == []


def test_a_teams_array_runs_as_that_team_in_its_namespace_only(
    start_operator: Callable[..., OperatorProcess], start_api: Callable[..., ApiProcess],
    kube_api: client.ApiClient, jobs: Jobs, namespace: str, node_pool: NodePool,
    user_roles: list[str],
):  # fmt: skip
    node_pool.add(1)
    start_operator(SHUNTER_MAX_RUNNING="10")
    api = start_api(SHUNTER_API_AUTH="kubernetes")
    alice = account_with_role(kube_api, namespace, "alice", EDITOR)
    alice_name = f"system:serviceaccount:{namespace}:alice"
    with temporary_namespace(kube_api, f"{namespace}-b") as other:
        bob = account_with_role(kube_api, other, "bob", EDITOR)
        with api.client(alice) as a, api.client(bob) as b:
            made = a.post("/api/training/submit", json=array_body(node_pool, "team", 3, 3))
            assert made.status_code == 201, made.text
            wait_for(lambda: status(a, "team")["array"]["running"] == 3, timeout=60,
                     what="3 runs running")  # fmt: skip
            for i in range(3):
                run = jobs.get(f"team-{i}")
                assert run["metadata"]["namespace"] == namespace
                assert run["metadata"]["annotations"]["shunter.dev/submitted-by"] == alice_name
                assert status(a, f"team/index/{i}")["submitted_by"] == alice_name
            # Another team sees none of it, neither the array nor a run by its index.
            assert b.get(f"/api/training/status/team?namespace={namespace}").status_code == 403
            path = f"/api/training/status/team/index/0?namespace={namespace}"
            assert b.get(path).status_code == 403
            assert b.post(f"/api/training/cancel/team/index/0?namespace={namespace}"
                          ).status_code == 403  # fmt: skip
            mine = b.get(f"/api/training/status/team-0?namespace={other}")
            assert mine.status_code == 404  # not in its own namespace
            cancelled = a.post("/api/training/cancel/team")
            assert cancelled.status_code == 200, cancelled.text
            # The runs are cancelled in the array's name: its canceller, not the operator.
            for i in range(3):
                run = jobs.get(f"team-{i}")
                assert run["spec"]["cancelled"] is True
                assert run["metadata"]["annotations"]["shunter.dev/cancelled-by"] == alice_name
