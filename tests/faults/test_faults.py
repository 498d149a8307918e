"""Fault tolerance, bounded in time: operator crashes, a PostgreSQL outage under load,
and a kube-apiserver restart. Each ends by checking the invariants row by row."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from shunter.devcluster.controlplane import ControlPlane
from shunter.devcluster.postgres import LocalPostgres
from tests.support.api import ApiProcess
from tests.support.background import Background
from tests.support.invariants import all_finished, assert_invariants
from tests.support.load import Load
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for


def test_operator_killed_at_random_points_during_200_cycles(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess], database_url: str
):
    rng = random.Random(20261125)
    operator = start_operator(SHUNTER_MAX_RUNNING="10", SHUNTER_GRACE_MARGIN_SECONDS="1")
    kills = 0

    def kill_and_restart() -> None:
        nonlocal kills
        operator.kill()
        kills += 1
        operator.start()

    load = Load(jobs, rng, prefix="c", cancel_share=0.5, hang_share=0.2, cancel_wait=0.3)
    with Background.every(lambda: rng.uniform(1.0, 4.0), kill_and_restart, name="killer"):
        try:
            load.cycles(200)
        finally:
            wait_for(
                lambda: all_finished(jobs),
                timeout=240,
                what="every job to finish",
            )
    assert kills >= 3
    load.assert_refusals_were_finished_jobs()
    operator.kill()
    operator.start()  # one more clean restart must not change anything
    assert_invariants(jobs, database_url, load.cancelled)


def test_postgres_stopped_for_30_seconds_under_load_loses_no_row(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess], own_postgres: LocalPostgres
):
    postgres, url = own_postgres, own_postgres.url
    start_operator(database=url, SHUNTER_MAX_RUNNING="10")
    # Every third job cancelled at once: none can have finished, so nothing is refused.
    load = Load(jobs, random.Random(20261128), run_for=(1,), cancel_share=1 / 3)
    load.for_seconds(5)
    postgres.stop()
    load.for_seconds(30)  # 30 s of submissions and cancellations, no database
    postgres.start()
    load.for_seconds(5)
    wait_for(
        lambda: all_finished(jobs),
        timeout=120,
        what="every job to finish",
    )
    assert load.count >= 100
    assert load.refusals == []
    assert_invariants(jobs, url, load.cancelled)


def test_operator_and_api_recover_from_an_apiserver_restart(
    control_plane: ControlPlane | None,
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
):
    if control_plane is None:
        pytest.skip("restarting kube-apiserver needs the local control plane")
    start_operator()
    api = start_api()
    with api.client() as http:
        first = http.post("/api/training/submit", json={"name": "before"}).json()["job_id"]
        wait_for(
            lambda: http.get(f"/api/training/status/{first}").json()["status"] == "running",
            timeout=30,
            what="the first job to run",
        )

        control_plane.restart_apiserver()

        def cancelled_after_restart() -> bool:
            try:
                answer = http.post(f"/api/training/cancel/{first}")
            except Exception:
                return False
            return answer.status_code == 200 or answer.json().get("previous_status") == "cancelled"

        wait_for(cancelled_after_restart, timeout=90, what="the API to serve again")
        wait_for(
            lambda: http.get(f"/api/training/status/{first}").json()["status"] == "cancelled",
            timeout=60,
            what="the operator to finish the cancel",
        )
        second = http.post("/api/training/submit", json={"name": "after"}).json()["job_id"]
        wait_for(
            lambda: http.get(f"/api/training/status/{second}").json()["status"] == "running",
            timeout=60,
            what="a new job to run after the restart",
        )
        queue = http.get("/api/training/queue").json()
        assert [j["job_id"] for j in queue["running"]] == ["after"]
