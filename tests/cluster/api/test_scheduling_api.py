"""Suspend, resume, the runs of a job and a job no node can hold, over HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.support.api import ApiProcess
from tests.support.nodes import NodePool
from tests.support.operator import OperatorProcess
from tests.support.polling import wait_for


def submit(http: httpx.Client, pool: NodePool, **body: Any) -> dict[str, Any]:
    response = http.post(
        "/api/training/submit",
        json={"gpus": 8, "node_selector": pool.selector,
              "pod_annotations": {"sim.shunter.dev/run-for": "600s"}, **body},
    )  # fmt: skip
    assert response.status_code == 201, response.text
    answer: dict[str, Any] = response.json()
    return answer


def status_of(http: httpx.Client, job_id: str) -> dict[str, Any]:
    body: dict[str, Any] = http.get(f"/api/training/status/{job_id}").json()
    return body


def test_submitting_a_job_no_node_can_hold_says_so(http: httpx.Client, node_pool: NodePool):
    node_pool.add(1, gpus=8)  # waits until Ready: the API's node watch has it by then
    answer = submit(http, node_pool, name="huge", gpus=64)
    assert answer["status"] == "queued"
    assert answer["message"] == (
        "Job submitted, but it cannot run on this cluster as it is: needs 64 GPUs on one node;"
        f" the largest node in pool {node_pool.name} has 8; it waits until a node that fits"
        " appears"
    )
    assert submit(http, node_pool, name="fine")["message"] == "Job submitted"


def test_suspend_and_resume_in_the_guides_style(http: httpx.Client, node_pool: NodePool):
    node_pool.add(1)
    job = submit(http, node_pool, name="s1")["job_id"]
    wait_for(lambda: status_of(http, job)["status"] == "running", timeout=30, what="running")

    answer = http.post(f"/api/training/suspend/{job}")
    assert answer.status_code == 200
    assert answer.json() == {
        "success": True, "job_id": job, "previous_status": "running",
        "message": "Job suspended (was running)",
    }  # fmt: skip
    assert status_of(http, job)["status"] == "suspended"  # the API waited for it
    again = http.post(f"/api/training/suspend/{job}")
    assert (again.status_code, again.json()["message"]) == (409, "Job is already suspended")

    resumed = http.post(f"/api/training/resume/{job}")
    assert resumed.status_code == 200
    assert resumed.json() == {
        "success": True, "job_id": job, "previous_status": "suspended",
        "message": "Job resumed: back in its place in the queue",
    }  # fmt: skip
    wait_for(lambda: status_of(http, job)["status"] == "running", timeout=30, what="resumed")
    not_suspended = http.post(f"/api/training/resume/{job}")
    assert (not_suspended.status_code, not_suspended.json()["message"]) == (
        409, "Job is not suspended")  # fmt: skip
    missing = http.post("/api/training/suspend/no-such-job")
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "job_id": "no-such-job", "message": "Job not found"}
    assert http.post(f"/api/training/cancel/{job}").status_code == 200
    finished = http.post(f"/api/training/suspend/{job}")
    assert finished.status_code == 409
    assert finished.json()["message"] == "Job already finished with status: cancelled"


def test_the_runs_of_a_retried_job_come_from_the_history(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    node_pool: NodePool,
):
    # Retried 1 s and 2 s after its failures (not the default 10 s and 20 s).
    start_operator(SHUNTER_BACKOFF_SECONDS="1")
    api = start_api()
    node_pool.add(1)
    with api.client() as http:
        job = submit(
            http, node_pool, name="flaky", backoff_limit=2,
            pod_annotations={"sim.shunter.dev/fail-after": "1s"},
        )["job_id"]  # fmt: skip
        wait_for(lambda: status_of(http, job)["status"] == "failed", timeout=120, what="failed")

        def three_rows() -> list[dict[str, Any]] | None:
            rows: list[dict[str, Any]] = http.get(f"/api/training/jobs/{job}/attempts").json()
            return rows if len(rows) == 3 else None

        rows = wait_for(three_rows, timeout=20, what="three runs in the history")
        assert [(r["attempt"], r["exit_code"]) for r in rows] == [(1, 1), (2, 1), (3, 1)]
        assert http.get("/api/training/jobs/never-ran/attempts").status_code == 404


def test_the_queue_view_shows_each_queues_usage(
    http: httpx.Client, node_pool: NodePool, queues: Any
):
    node_pool.add(2)
    team = queues(maxRunning=1, gpuQuota=16)
    first = submit(http, node_pool, name="u1", queue=team)["job_id"]
    submit(http, node_pool, name="u2", queue=team)
    wait_for(lambda: status_of(http, first)["status"] == "running", timeout=30, what="u1 runs")

    def numbered() -> dict[str, Any] | None:
        view: dict[str, Any] = http.get("/api/training/queue", params={"queue": team}).json()
        positions = [(j["job_id"], j["queue_position"]) for j in view["queued"]]
        return view if positions == [("u2", 1)] else None

    view = wait_for(numbered, timeout=10, what="u2 at position 1 of its queue")
    assert [j["job_id"] for j in view["running"]] == ["u1"]
    [usage] = view["queues"]
    assert usage == {
        "name": team, "exists": True, "running": 1, "gpus": 8, "waiting": 1, "max_running": 1,
        "gpu_quota": 16, "borrowed": 0, "borrowing_limit": None, "cohort": None,
        "preemption": "never", "queueing_strategy": "StrictFIFO",
    }  # fmt: skip
