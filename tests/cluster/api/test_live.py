"""GET /live, which the web UI polls: slot holders first, then the queue in order,
then finished jobs newest first, with counts over the whole namespace. Its body is
rendered once per version of the watch cache and kept (shunter.api.rendering): one
team's kept body is never another team's answer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client

from shunter.devcluster.accounts import account_with_role
from tests.cluster.api.test_acceptance import submit, wait_status
from tests.cluster.api.test_stream import events_of, until
from tests.support.api import ApiProcess
from tests.support.kube import EDITOR, temporary_namespace
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


@pytest.fixture
def other_namespace(kube_api: client.ApiClient, unique_name: str) -> Iterator[str]:
    with temporary_namespace(kube_api, f"{unique_name}-b") as name:
        yield name


def names(body: dict[str, Any]) -> list[str]:
    return [item["job_id"] for item in body["items"]]


def test_a_kept_rendering_is_never_another_teams_answer(
    namespace: str,
    other_namespace: str,
    kube_api: client.ApiClient,
    user_roles: list[str],
    start_api: Callable[..., ApiProcess],
):
    # One watch cache over every namespace: both teams' jobs are in it, and both
    # bodies are rendered from it (the same limit, the same cache version).
    api = start_api(SHUNTER_API_AUTH="kubernetes", SHUNTER_API_WATCH_NAMESPACE="")
    team_a = account_with_role(kube_api, namespace, "team-a", EDITOR)
    team_b = account_with_role(kube_api, other_namespace, "team-b", EDITOR)
    mine = {"namespace": other_namespace}
    with api.client(team_a) as a, api.client(team_b) as b:
        assert a.post("/api/training/submit", json={"name": "a-secret"}).status_code == 201
        made = b.post("/api/training/submit", params=mine, json={"name": "b-own"})
        assert made.status_code == 201, made.text

        seen_by_a = a.get("/api/training/live")
        assert seen_by_a.status_code == 200
        assert (names(seen_by_a.json()), seen_by_a.json()["count"]) == (["a-secret"], 1)
        # Team B asks at once, for the same view of its own namespace, and of A's.
        seen_by_b = b.get("/api/training/live", params=mine)
        assert seen_by_b.status_code == 200
        assert (names(seen_by_b.json()), seen_by_b.json()["count"]) == (["b-own"], 1)
        assert seen_by_b.json()["namespace"] == other_namespace
        peek = b.get("/api/training/live", params={"namespace": namespace})
        assert peek.status_code == 403
        assert "a-secret" not in peek.text
        assert b.get("/api/training/live").status_code == 403  # the server's default is A's

        # The stream pushes the same kept body, under the same rule.
        refused = b.get("/api/training/stream", params={"namespace": namespace})
        assert refused.status_code == 403
        with b.stream("GET", "/api/training/stream", params=mine) as response:
            assert response.status_code == 200
            live = until(events_of(response.iter_lines()), "live", lambda _: True, timeout=10)
        assert live == b.get("/api/training/live", params=mine).json()
        assert names(a.get("/api/training/live").json()) == ["a-secret"]
