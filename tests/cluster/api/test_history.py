"""GET /jobs: history from the PostgreSQL mirror, with its filters, including jobs
whose TrainingJob was deleted."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.cluster.api.test_acceptance import wait_status
from tests.support.api import ApiProcess
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for


def names(http: httpx.Client, **params: Any) -> list[str]:
    """The jobs found, sorted by name: creation times have a resolution of a second, so
    jobs created together have no defined order among themselves."""
    response = http.get("/api/training/jobs", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["total"] == len(body["items"])
    created = [item["created_at"] for item in body["items"]]
    assert created == sorted(created, reverse=True)  # newest first
    return sorted(item["job_id"] for item in body["items"])


def test_filters_and_deleted_jobs(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    jobs: Jobs,
    queues: Callable[..., str],
):
    start_operator(SHUNTER_MAX_RUNNING="3")
    team = queues()
    with start_api().client() as http:
        # One after the other: each runs a second, so their creation times (whole
        # seconds) differ and the time filters have something to tell apart.
        for name, queue in (("alpha-1", "default"), ("beta-2", team), ("gamma-3", team)):
            body = {"name": name, "queue": queue,
                    "pod_annotations": {"sim.shunter.dev/run-for": "1s"}}  # fmt: skip
            assert http.post("/api/training/submit", json=body).status_code == 201
            wait_status(http, name, "completed")
        jobs.custom.delete_namespaced_custom_object(
            "shunter.dev", "v1alpha1", jobs.namespace, "trainingjobs", "alpha-1"
        )
        wait_for(
            lambda: (
                names(http, deleted=True) == ["alpha-1"]
                and names(http, status="completed") == ["alpha-1", "beta-2", "gamma-3"]
            ),
            timeout=30,
            what="the mirror to hold the three jobs, alpha-1 deleted",
        )
        assert names(http, deleted=False) == ["beta-2", "gamma-3"]
        assert names(http, queue=team) == ["beta-2", "gamma-3"]
        assert names(http, name_contains="ta-") == ["beta-2"]
        assert names(http, name_contains="A-1") == []  # case matters, as in the names
        assert names(http, name_contains="a_p") == []  # "_" is literal, not "any one"
        assert names(http, name_contains="%") == []
        assert names(http, status="failed") == []
        assert names(http, submitted_by="demo (auth disabled)") == ["alpha-1", "beta-2", "gamma-3"]

        created = {
            item["job_id"]: item["created_at"]
            for item in http.get("/api/training/jobs").json()["items"]
        }
        assert len(set(created.values())) == 3
        middle = created["beta-2"]
        assert names(http, since=middle) == ["beta-2", "gamma-3"]
        assert names(http, until=middle) == ["alpha-1"]
        assert names(http, since=middle, until=created["gamma-3"]) == ["beta-2"]
        assert names(http, since=middle, until=middle) == []

        bad = http.get("/api/training/jobs", params={"since": "yesterday"})
        assert bad.status_code == 422
        assert bad.json()["message"].startswith("Invalid request: query.since")
        # Found by the fuzz test: a NUL reached PostgreSQL, which cannot hold one (500).
        for field in ("name_contains", "submitted_by"):
            bad = http.get("/api/training/jobs", params={field: "a\x00b"})
            assert bad.status_code == 422, bad.text
            assert field in bad.text
