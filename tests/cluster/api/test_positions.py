"""One queue position per job, whoever asks: kubectl, GET /status, GET /queue and
GET /live show the position the operator recorded (README "Queue positions").

The issue's setup: one running job holds the only slot; behind it a job no node can
hold, `qa`, a job naming a queue that does not exist, `qb`; and, in mixed queues, two
jobs of a real queue and jobs past the exact limit."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.api import ApiProcess
from tests.support.nodes import NodePool
from tests.support.operator import OperatorProcess
from tests.support.policy import kubectl
from tests.support.polling import wait_for, wait_until_equal

EXACT = 3  # SHUNTER_QUEUE_POSITIONS for this test: qd and qe are past it

Positions = dict[str, int | None]


def submit(http: httpx.Client, pool: NodePool, name: str, **body: Any) -> None:
    response = http.post(
        "/api/training/submit",
        json={"name": name, "gpus": 8, "node_selector": pool.selector,
              "pod_annotations": {"sim.shunter.dev/run-for": "600s"}, **body},
    )  # fmt: skip
    assert response.status_code == 201, response.text


def by_kubectl(kubeconfig: Path, namespace: str) -> Positions:
    listing = json.loads(kubectl(kubeconfig, "get", "trainingjobs", "-n", namespace, "-o", "json"))
    return {
        j["metadata"]["name"]: j.get("status", {}).get("queuePosition")
        for j in listing["items"]
        if j.get("status", {}).get("phase") == "queued"
    }


def by_status(http: httpx.Client, names: list[str]) -> Positions:
    rows = [http.get(f"/api/training/status/{n}").json() for n in names]
    return {r["job_id"]: r["queue_position"] for r in rows if r["status"] == "queued"}


def by_queue(http: httpx.Client) -> Positions:
    view = http.get("/api/training/queue").json()
    return {j["job_id"]: j["queue_position"] for j in view["queued"]}


def by_live(http: httpx.Client) -> Positions:
    view = http.get("/api/training/live").json()
    return {j["job_id"]: j["queue_position"] for j in view["items"] if j["status"] == "queued"}


def test_every_view_shows_the_operators_position(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    node_pool: NodePool,
    queues: Callable[..., str],
    kubeconfig: Path,
    namespace: str,
):
    node_pool.add(1, gpus=8)
    start_operator(SHUNTER_MAX_RUNNING="1", SHUNTER_QUEUE_POSITIONS=str(EXACT))
    team = queues(maxRunning=4)
    with start_api().client() as http:
        submit(http, node_pool, "run")
        wait_for(lambda: http.get("/api/training/status/run").json()["status"] == "running",
                 timeout=30, what="the first job to run")  # fmt: skip
        submit(http, node_pool, "huge", gpus=64)
        submit(http, node_pool, "qa")
        submit(http, node_pool, "nq", queue="no-such-queue")
        submit(http, node_pool, "qb")
        submit(http, node_pool, "t1", queue=team)
        submit(http, node_pool, "qc")
        submit(http, node_pool, "t2", queue=team)
        submit(http, node_pool, "qd")
        submit(http, node_pool, "qe")
        names = ["huge", "qa", "nq", "qb", "t1", "qc", "t2", "qd", "qe"]

        # The definition: the place in the job's own queue among those waiting for
        # their turn; the job no node can hold has none; past the limit, none.
        expected: Positions = {
            "huge": None, "qa": 1, "nq": 1, "qb": 2, "t1": 1, "qc": 3, "t2": 2,
            "qd": None, "qe": None,
        }  # fmt: skip
        wait_until_equal(lambda: by_kubectl(kubeconfig, namespace), expected, timeout=60,
                         what="the operator's positions in kubectl")  # fmt: skip

        def views() -> dict[str, Positions]:
            return {"status": by_status(http, names), "queue": by_queue(http),
                    "live": by_live(http)}  # fmt: skip

        # The API's caches follow the watch: each view converges on kubectl's answer.
        def agreeing() -> dict[str, Positions] | None:
            seen = views()
            return seen if all(p == expected for p in seen.values()) else None

        seen = wait_for(agreeing, timeout=30, what="every view to show kubectl's positions")
        assert seen == {"status": expected, "queue": expected, "live": expected}

        past = http.get("/api/training/status/qd").json()
        assert past["message"] == f"Waiting in queue (more than {EXACT} jobs ahead)"
        never = http.get("/api/training/status/huge").json()
        assert never["reason"] == "Unschedulable"
