"""Fault tolerance, bounded in time: operator crashes, a PostgreSQL outage under load,
and a kube-apiserver restart. Each ends by checking the invariants row by row."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

import pytest
from kubernetes.client.exceptions import ApiException

from shunter.devcluster.controlplane import ControlPlane
from shunter.devcluster.postgres import LocalPostgres
from tests.support.api import ApiProcess
from tests.support.builders import a_training_job
from tests.support.invariants import TERMINAL, all_jobs, assert_invariants
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for


def test_operator_killed_at_random_points_during_200_cycles(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess], database_url: str
):
    rng = random.Random(20261125)
    operator = start_operator(SHUNTER_MAX_RUNNING="10", SHUNTER_GRACE_MARGIN_SECONDS="1")
    stop = threading.Event()
    kills = 0

    def chaos() -> None:
        nonlocal kills
        while not stop.wait(rng.uniform(1.0, 4.0)):
            operator.kill()
            kills += 1
            operator.start()

    monkey = threading.Thread(target=chaos, daemon=True)
    monkey.start()
    cancelled: set[str] = set()
    refusals: list[int | None] = []
    try:
        for i in range(200):
            name = f"c{i:03d}"
            builder = a_training_job(name).running_for(f"{rng.choice([1, 2, 3])}s")
            if rng.random() < 0.2:
                builder = builder.hanging_on_delete().with_grace(1)
            jobs.create(builder)
            if rng.random() < 0.5:
                if rng.random() < 0.5:
                    time.sleep(rng.uniform(0, 0.3))  # sometimes let it get admitted first
                try:
                    jobs.cancel(name)
                    cancelled.add(name)
                except ApiException as exc:
                    refusals.append(exc.status)  # it had already finished
    finally:
        wait_for(
            lambda: all(j.get("status", {}).get("phase") in TERMINAL for j in all_jobs(jobs)),
            timeout=240,
            what="every job to finish",
        )
        stop.set()
        monkey.join()
    assert kills >= 3
    assert set(refusals) <= {422}
    operator.kill()
    operator.start()  # one more clean restart must not change anything
    assert_invariants(jobs, database_url, cancelled)


def test_postgres_stopped_for_30_seconds_under_load_loses_no_row(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess], own_postgres: LocalPostgres
):
    postgres, url = own_postgres, own_postgres.url
    start_operator(database=url, SHUNTER_MAX_RUNNING="10")
    cancelled: set[str] = set()
    counter = 0

    def load(until: float) -> None:
        nonlocal counter
        while time.monotonic() < until:
            name = f"l{counter:03d}"
            counter += 1
            jobs.create(a_training_job(name).running_for("1s"))
            if counter % 3 == 0:
                jobs.cancel(name)
                cancelled.add(name)
            time.sleep(0.2)

    load(time.monotonic() + 5)
    postgres.stop()
    load(time.monotonic() + 30)  # 30 s of submissions and cancellations, no database
    postgres.start()
    load(time.monotonic() + 5)
    wait_for(
        lambda: all(j.get("status", {}).get("phase") in TERMINAL for j in all_jobs(jobs)),
        timeout=120,
        what="every job to finish",
    )
    assert counter >= 100
    assert_invariants(jobs, url, cancelled)


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
