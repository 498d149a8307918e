"""The acceptance guide, replayed over HTTP against the running system.

Every request is one of the guide's curl commands; every expected body is compared
with the guide's JSON exactly. "Wait 10 seconds" becomes a condition polled with a
10 s deadline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.support.operator import mirror_row
from tests.support.polling import wait_for

LONG = {"pod_annotations": {"sim.shunter.dev/run-for": "600s"}}


def submit(http: httpx.Client, body: dict[str, Any] | None = None) -> str:
    response = http.post("/api/training/submit", json=body if body is not None else LONG)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["job_id"])


def status_of(http: httpx.Client, job_id: str) -> str:
    return str(http.get(f"/api/training/status/{job_id}").json()["status"])


def wait_status(http: httpx.Client, job_id: str, status: str, timeout: float = 30) -> None:
    wait_for(
        lambda: status_of(http, job_id) == status, timeout=timeout, what=f"{job_id} to be {status}"
    )


def queue(http: httpx.Client) -> dict[str, Any]:
    response = http.get("/api/training/queue")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def test_1_cancel_queued_job(http: httpx.Client):
    first, second = submit(http), submit(http)
    wait_status(http, first, "running")
    listed = queue(http)
    assert [j["job_id"] for j in listed["queued"]] == [second]

    response = http.post(f"/api/training/cancel/{second}")

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "job_id": second,
        "previous_status": "queued",
        "message": "Job removed from queue and cancelled",
    }
    assert queue(http)["queued"] == []
    assert status_of(http, second) == "cancelled"
    assert status_of(http, first) == "running"


def test_2_cancel_running_job(http: httpx.Client, operator_log: Callable[[], str]):
    job = submit(http)
    wait_status(http, job, "running")
    pod = http.get(f"/api/training/status/{job}").json()["pod_name"]
    waiting = submit(http)

    response = http.post(f"/api/training/cancel/{job}")

    assert response.status_code == 200
    assert response.json() == {
        "success": True,
        "job_id": job,
        "previous_status": "running",
        "message": "Job cancelled (was running)",
    }
    assert status_of(http, job) == "cancelled"
    assert f"{pod} terminated gracefully" in operator_log()
    wait_status(http, waiting, "running", timeout=10)  # the next job starts by itself


def test_3_cancel_completed_job(http: httpx.Client):
    job = submit(http, {"pod_annotations": {"sim.shunter.dev/run-for": "1s"}})
    wait_status(http, job, "completed")

    response = http.post(f"/api/training/cancel/{job}")

    assert response.status_code == 409
    assert response.json() == {
        "success": False,
        "job_id": job,
        "previous_status": "completed",
        "message": "Job already finished with status: completed",
    }
    assert status_of(http, job) == "completed"


def test_4_cancel_non_existent_job(http: httpx.Client):
    response = http.post("/api/training/cancel/invalid-job-id")

    assert response.status_code == 404
    assert response.json() == {
        "success": False,
        "job_id": "invalid-job-id",
        "message": "Job not found",
    }


def test_5_multiple_cancellations(http: httpx.Client):
    job = submit(http)
    wait_status(http, job, "running")

    first = http.post(f"/api/training/cancel/{job}")
    second = http.post(f"/api/training/cancel/{job}")

    assert first.status_code == 200
    assert second.status_code == 409
    assert second.json() == {
        "success": False,
        "job_id": job,
        "previous_status": "cancelled",
        "message": "Job already finished with status: cancelled",
    }


def test_6_queue_continues_after_cancellation(http: httpx.Client):
    a, b, c = submit(http), submit(http), submit(http)
    wait_status(http, a, "running")
    listed = queue(http)
    assert (listed["running_count"], listed["queued_count"]) == (1, 2)

    def b_first_c_second() -> bool:  # the operator numbers them in its next pass
        now = queue(http)
        return [(j["job_id"], j["queue_position"]) for j in now["queued"]] == [(b, 1), (c, 2)]

    wait_for(b_first_c_second, timeout=10, what="B at position 1 and C at 2")

    http.post(f"/api/training/cancel/{a}")

    def b_running_c_first() -> bool:
        now = queue(http)
        return [j["job_id"] for j in now["running"]] == [b] and [
            (j["job_id"], j["queue_position"]) for j in now["queued"]
        ] == [(c, 1)]

    wait_for(b_running_c_first, timeout=10, what="B running and C at position 1")
    assert status_of(http, a) == "cancelled"


def test_7_graceful_versus_force_termination_logs(
    http: httpx.Client, operator_log: Callable[[], str]
):
    hung = submit(
        http,
        {
            **LONG,
            "termination_grace_period_seconds": 1,
            "pod_labels": {"sim.shunter.dev/hang-on-delete": "true"},
        },
    )
    wait_status(http, hung, "running")
    pod = http.get(f"/api/training/status/{hung}").json()["pod_name"]

    assert http.post(f"/api/training/cancel/{hung}").status_code == 200

    wait_status(http, hung, "cancelled")
    log = operator_log()
    lines = [
        line.split("INFO shunter.operator: ", 1)[-1]
        for line in log.splitlines()
        if "[Terminate]" in line and pod in line
    ]
    ns = http.get(f"/api/training/status/{hung}").json()["namespace"]
    assert lines == [
        f"[Terminate] Attempting graceful termination of pod {ns}/{pod}",
        f"[Terminate] Pod {ns}/{pod} did not terminate gracefully, forcing deletion",
        f"[Terminate] Pod {ns}/{pod} force deleted",
    ]


def test_database_verification(http: httpx.Client, database_url: str):
    job = submit(http)
    wait_status(http, job, "running")
    http.post(f"/api/training/cancel/{job}")

    def history_row() -> dict[str, Any] | None:
        items = http.get("/api/training/jobs", params={"status": "cancelled"}).json()["items"]
        return next((i for i in items if i["job_id"] == job), None)

    row = wait_for(history_row, timeout=30, what="the cancelled job in the history")
    uid = row["uid"]
    db = mirror_row(database_url, uid)
    assert db is not None
    assert (db["status"], db["error"]) == ("cancelled", "Cancelled by user")
    assert db["completed_at"] is not None


def test_performance_ten_rapid_submit_and_cancel(http: httpx.Client):
    ids = []
    for _ in range(10):
        job = submit(http)
        response = http.post(f"/api/training/cancel/{job}")
        assert response.status_code == 200, response.text
        assert response.json()["success"] is True
        ids.append(job)

    for job in ids:
        wait_status(http, job, "cancelled")
    listed = queue(http)
    assert (listed["running_count"], listed["queued_count"]) == (0, 0)
    # The queue continues to work.
    after = submit(http)
    wait_status(http, after, "running")
