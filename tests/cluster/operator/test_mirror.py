"""The mirror behind a running operator: a PostgreSQL outage loses no row, nor any
run's accounting the cluster still holds."""

from __future__ import annotations

from collections.abc import Callable

import psycopg

from shunter.devcluster.postgres import LocalPostgres
from tests.support.builders import a_training_job
from tests.support.operator import Jobs, OperatorProcess, mirror_row
from tests.support.polling import wait_for


def test_postgres_outage_loses_no_row(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess], own_postgres: LocalPostgres
):
    operator = start_operator(database=own_postgres.url)
    first = jobs.create(a_training_job("before"))
    jobs.wait_phase("before", "running")
    wait_for(
        lambda: mirror_row(own_postgres.url, first["metadata"]["uid"]),
        timeout=30,
        what="the first row",
    )

    own_postgres.stop()
    jobs.cancel("before")
    during = jobs.create(a_training_job("during"))
    jobs.wait_phase("before", "cancelled")  # reconciling goes on without the database
    jobs.wait_phase("during", "running")
    wait_for(
        lambda: "PostgreSQL unavailable" in operator.log(),
        timeout=30,
        what="the operator to notice the outage",
    )

    own_postgres.start()

    def caught_up() -> bool:
        a = mirror_row(own_postgres.url, first["metadata"]["uid"])
        b = mirror_row(own_postgres.url, during["metadata"]["uid"])
        return bool(a and b and a["status"] == "cancelled" and b["status"] == "running")

    wait_for(caught_up, timeout=60, what="the mirror to catch up")
    assert "PostgreSQL is back" in operator.log()
    # The run that ended during the outage is accounted from the job's status.history.
    with psycopg.connect(own_postgres.url) as conn:
        runs = conn.execute(
            "SELECT attempt, outcome, gpus, allocated_seconds FROM training_job_attempts"
            " WHERE job_id = %s", (first["metadata"]["uid"],)).fetchall()  # fmt: skip
    assert [(r[0], r[1], r[2]) for r in runs] == [(1, "cancelled", 1)]
    assert runs[0][3] > 0
