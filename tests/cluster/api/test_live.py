"""GET /live, which the web UI polls: slot holders first, then the queue in order,
then finished jobs newest first, with counts over the whole namespace."""

from __future__ import annotations

from typing import Any

import httpx

from tests.cluster.api.test_acceptance import submit, wait_status
from tests.support.polling import wait_for


def test_a_running_job_stays_in_the_first_rows_behind_newer_finished_ones(http: httpx.Client):
    running = submit(http)
    wait_status(http, running, "running")
    first, second = submit(http), submit(http)
    newest = submit(http)
    assert http.post(f"/api/training/cancel/{newest}").status_code == 200

    def numbered() -> dict[str, Any] | None:
        # Positions are the operator's (status.queuePosition): its next pass numbers them.
        body: dict[str, Any] = http.get("/api/training/live", params={"limit": 2}).json()
        return body if body["items"][1]["queue_position"] == 1 else None

    body = wait_for(numbered, timeout=10, what="the first queued job at position 1")
    assert [item["job_id"] for item in body["items"]] == [running, first]
    assert (body["count"], body["running_count"], body["queued_count"]) == (4, 1, 2)
    everything = http.get("/api/training/live", params={"limit": 10}).json()["items"]
    assert [item["job_id"] for item in everything] == [running, first, second, newest]
