"""Estimated starts and what-ifs on a scripted cluster where the true start is known:
one kwok node of 8 GPUs, jobs whose Pods run for a set time (sim.shunter.dev/run-for)
and say so in maxRuntimeSeconds. The estimate the operator's kept plan gives a queued
job is compared with the time it really starts; a what-if creates nothing, neither
a TrainingJob nor a mirror row, and is refused exactly as a submit."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from kubernetes import client

from shunter.devcluster.accounts import account_with_role
from shunter.domain.model import parse_time
from tests.support.api import ApiProcess
from tests.support.kube import EDITOR, VIEWER
from tests.support.nodes import NodePool
from tests.support.operator import OperatorProcess
from tests.support.policy import kubectl
from tests.support.polling import wait_for

TOLERANCE = 8.0  # seconds: kwok's Pod start and the operator's pass on either side
RUN = 20  # seconds each job runs


def job(pool: NodePool, name: str, **body: Any) -> dict[str, Any]:
    return {"name": name, "gpus": 8, "node_selector": pool.selector, "max_runtime_seconds": RUN + 2,
            "pod_annotations": {"sim.shunter.dev/run-for": f"{RUN}s"}, **body}  # fmt: skip


def names(kubeconfig: Path, namespace: str) -> set[str]:
    listing = json.loads(kubectl(kubeconfig, "get", "trainingjobs", "-n", namespace, "-o", "json"))
    return {j["metadata"]["name"] for j in listing["items"]}


def mirrored(database_url: str, namespace: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT name FROM local_training_jobs WHERE namespace = %s", (namespace,)
        ).fetchall()
    return {r[0] for r in rows}


def test_estimated_start_matches_the_actual_start(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    node_pool: NodePool,
) -> None:
    node_pool.add(1, gpus=8)
    start_operator(SHUNTER_MAX_RUNNING="4", SHUNTER_ESTIMATE_SECONDS="1")
    with start_api().client() as http:
        assert http.post("/api/training/submit", json=job(node_pool, "first")).status_code == 201
        wait_for(lambda: http.get("/api/training/status/first").json()["status"] == "running",
                 timeout=60, what="the first job to run")  # fmt: skip
        assert http.post("/api/training/submit", json=job(node_pool, "second")).status_code == 201

        def estimated() -> dict[str, Any] | None:
            row = http.get("/api/training/status/second").json()
            return row if row.get("estimated_start") else None

        row = wait_for(estimated, timeout=30, what="an estimate for the second job")
        estimate = parse_time(row["estimated_start"])
        assert estimate is not None
        span = row["estimated_start_range"]
        assert parse_time(span["earliest"]) <= estimate <= parse_time(span["latest"])

        def started() -> datetime | None:
            row = http.get("/api/training/status/second").json()
            return parse_time(row.get("admitted_at")) if row["status"] != "queued" else None

        actual = wait_for(started, timeout=120, what="the second job to start")
        error = abs((actual - estimate).total_seconds())
        assert error <= TOLERANCE, (estimate, actual)
        assert datetime.now(UTC) >= actual


def test_a_what_if_is_authorized_as_a_submit_for_each_team(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    user_roles: list[str],
    kube_api: client.ApiClient,
    kubeconfig: Path,
    namespace: str,
) -> None:
    """Acting as the teams: an editor's what-if answers (and creates nothing); a
    viewer's and an outsider's are refused with the 403 a submit gets."""
    start_operator()
    api = start_api(SHUNTER_API_AUTH="kubernetes")
    writer = account_with_role(kube_api, namespace, "writer", EDITOR)
    reader = account_with_role(kube_api, namespace, "reader", VIEWER)
    outsider = account_with_role(kube_api, namespace, "outsider", None)
    body = {"name": "maybe", "pod_annotations": {"sim.shunter.dev/run-for": "60s"}}
    dry = {"dry_run": "true"}
    with api.client(writer) as w, api.client(reader) as r, api.client(outsider) as o:
        answer = w.post("/api/training/submit", params=dry, json=body)
        assert answer.status_code == 200, answer.text
        assert answer.json()["dry_run"] is True
        for caller in (r, o):
            refused = caller.post("/api/training/submit", params=dry, json=body)
            submitted = caller.post("/api/training/submit", json=body)
            assert refused.status_code == submitted.status_code == 403
    assert names(kubeconfig, namespace) == set()


def test_status_carries_the_estimate_for_the_first_jobs_of_a_queue_only(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    node_pool: NodePool,
    kubeconfig: Path,
    namespace: str,
    database_url: str,
) -> None:
    """Like exact positions: status.estimatedStart for the first SHUNTER_QUEUE_POSITIONS
    jobs of the queue; REST shows every queued job's, from the plan, in queue order."""
    node_pool.add(1, gpus=8)
    start_operator(SHUNTER_MAX_RUNNING="4", SHUNTER_ESTIMATE_SECONDS="1",
                   SHUNTER_QUEUE_POSITIONS="2")  # fmt: skip
    waiting = ["q1", "q2", "q3", "q4"]
    with start_api().client() as http:
        holder = {**job(node_pool, "holder"), "max_runtime_seconds": 600,
                  "pod_annotations": {"sim.shunter.dev/run-for": "600s"}}  # fmt: skip
        assert http.post("/api/training/submit", json=holder).status_code == 201
        wait_for(lambda: http.get("/api/training/status/holder").json()["status"] == "running",
                 timeout=60, what="the holder to run")  # fmt: skip
        for name in waiting:
            assert http.post("/api/training/submit", json=job(node_pool, name)).status_code == 201

        # One answer (GET /queue reads one plan; four GETs of /status may straddle the
        # API's reading of a newer one): every queued job's estimate, in queue order.
        seen: list[dict[str, Any]] = []

        def by_queue() -> list[datetime] | None:
            seen[:] = http.get("/api/training/queue").json()["queued"]
            starts = [parse_time(j.get("estimated_start")) for j in seen]
            return starts if len(starts) == len(waiting) and all(starts) else None  # type: ignore[return-value]

        starts = wait_for(by_queue, timeout=30, what="every queued job's estimate over REST")
        assert [j["job_id"] for j in seen] == waiting
        assert starts == sorted(starts), seen
        assert (starts[-1] - starts[0]).total_seconds() >= 3 * RUN
        # Each job's own status shows an estimate too.
        for name in waiting:
            assert http.get(f"/api/training/status/{name}").json()["estimated_start"]

        # A what-if now: behind the four, starting when the last of them ends (the
        # holder runs for ten minutes: nothing moves while the test looks).
        before = names(kubeconfig, namespace), mirrored(database_url, namespace)

        def what_if() -> dict[str, Any] | None:
            answer = http.post("/api/training/submit", params={"dry_run": "true"},
                               json=job(node_pool, "maybe"))  # fmt: skip
            assert answer.status_code == 200, answer.text
            # None until the API has read the operator's published plan (every 2 s)
            return answer.json() if answer.json()["estimated_start"] else None

        what = wait_for(what_if, timeout=30, what="a what-if answered from the plan")
        assert what["dry_run"] is True
        assert what["position"] == len(waiting) + 1
        assert (parse_time(what["estimated_start"]) - starts[-1]).total_seconds() >= RUN
        # with 4 GPUs it would not start sooner (the node is busy until the holder ends)
        assert what["preempts"] == []
        # Refused exactly as a submit would be.
        bad = http.post("/api/training/submit", params={"dry_run": "true"},
                        json=job(node_pool, "q1"))  # fmt: skip
        assert bad.status_code == 409, bad.text
        invalid = http.post("/api/training/submit", params={"dry_run": "true"},
                            json={**job(node_pool, "x"), "gpus": 1000})  # fmt: skip
        assert invalid.status_code == 422
        assert (names(kubeconfig, namespace), mirrored(database_url, namespace)) == before

        def in_status() -> dict[str, str | None]:
            listing = json.loads(kubectl(kubeconfig, "get", "trainingjobs", "-n", namespace,
                                         "-o", "json"))  # fmt: skip
            return {j["metadata"]["name"]: j.get("status", {}).get("estimatedStart")
                    for j in listing["items"] if j["metadata"]["name"] in waiting}  # fmt: skip

        shown = wait_for(lambda: (s := in_status())["q1"] and s["q2"] and s, timeout=30,
                         what="status.estimatedStart of the first two")  # fmt: skip
        assert shown["q3"] is None
        assert shown["q4"] is None
        # A job of higher priority goes first: q2 falls behind the first two, and
        # its status loses the estimate.
        urgent = {**job(node_pool, "urgent"), "priority": 5}
        assert http.post("/api/training/submit", json=urgent).status_code == 201
        waiting.append("urgent")
        wait_for(lambda: (s := in_status())["urgent"] and s["q1"] and s["q2"] is None,
                 timeout=30, what="q2 to lose its estimate to the urgent job")  # fmt: skip
        table = kubectl(kubeconfig, "get", "trainingjobs", "-n", namespace)
        assert "EST. START" in table.splitlines()[0]
