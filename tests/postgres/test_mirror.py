"""The PostgreSQL mirror: migrations, idempotent upserts, and surviving an outage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

import psycopg
import pytest

from shunter.api.history import History
from shunter.api.schemas import AttemptRow
from shunter.devcluster.postgres import LocalPostgres
from shunter.operator.mirror import Mirror, migrate, migration_files, row_of
from tests.support.builders import a_training_job
from tests.support.operator import mirror_row
from tests.support.polling import wait_for


async def test_a_database_from_before_cancellation_is_migrated(own_postgres: LocalPostgres):
    url = own_postgres.url
    first = migration_files()[0]
    with psycopg.connect(url, autocommit=True) as conn:
        # The database as the single-machine version left it.
        conn.execute(first[2])
        conn.execute(
            "INSERT INTO local_training_jobs (id, name, status) "
            "VALUES ('00000000-0000-0000-0000-000000000001', 'old', 'completed')"
        )
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute("UPDATE local_training_jobs SET status = 'cancelled' WHERE name = 'old'")

    async with await psycopg.AsyncConnection.connect(url) as conn:
        applied = await migrate(conn)
        assert "0002_cancellation.sql" in applied
        assert await migrate(conn) == []  # idempotent

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("UPDATE local_training_jobs SET status = 'cancelled' WHERE name = 'old'")
        row = conn.execute("SELECT status, namespace FROM local_training_jobs").fetchone()
        assert row == ("cancelled", "default")


async def test_replayed_older_state_never_overwrites_a_newer_row(own_postgres: LocalPostgres):
    mirror = Mirror(own_postgres.url)
    task = asyncio.create_task(mirror.run())
    try:
        builder = a_training_job("j").in_phase("running")
        running = builder.job()
        newer = replace(
            a_training_job("j").in_phase("cancelled", message="Cancelled by user").job(),
            uid=running.uid,
            resource_version="200",
        )
        mirror.offer(newer)
        await wait_for_async(lambda: mirror.backlog == 0)
        mirror.offer(running)  # resourceVersion 100: older
        await wait_for_async(lambda: mirror.backlog == 0)
        row = mirror_row(own_postgres.url, running.uid)
        assert row is not None
        assert row["status"] == "cancelled"
        assert row["error"] == "Cancelled by user"
        assert row_of(newer).resource_version == 200
    finally:
        task.cancel()
        await mirror.close()


async def test_who_submitted_and_who_cancelled_are_mirrored(own_postgres: LocalPostgres):
    url = own_postgres.url
    with psycopg.connect(url, autocommit=True) as conn:  # a database of before 0003
        for _, name, sql in migration_files():
            if name < "0003":
                conn.execute(sql.encode())
    async with await psycopg.AsyncConnection.connect(url) as conn:
        assert "0003_audit.sql" in await migrate(conn)
    mirror = Mirror(url)
    task = asyncio.create_task(mirror.run())
    try:
        job = (
            a_training_job("audited")
            .submitted_by("alice")
            .cancelled(by="system:serviceaccount:team:bob")
            .in_phase("cancelled", message="Cancelled by user")
            .job()
        )
        mirror.offer(job)
        await wait_for_async(lambda: mirror.backlog == 0)
        row = mirror_row(url, job.uid)
        assert row is not None
        assert (row["submitted_by"], row["cancelled_by"]) == (
            "alice",
            "system:serviceaccount:team:bob",
        )
        assert row["error"] == "Cancelled by user"  # the guide's, whoever cancelled
    finally:
        task.cancel()
        await mirror.close()


async def test_runs_keep_where_they_resumed_their_checkpoint_and_the_work_they_lost(
    own_postgres: LocalPostgres,
):
    """0005 on a database of before it (a run mirrored then keeps NULLs); then a job's
    reported progress and checkpoint on its row, and each run's resumed-from step, last
    checkpoint and lost seconds, read back by the API's history."""
    url = own_postgres.url
    old = a_training_job("old").in_phase("completed", attempts=1).job()
    with psycopg.connect(url, autocommit=True) as conn:
        for _, name, sql in migration_files():
            if name < "0005":
                conn.execute(sql.encode())
        conn.execute("INSERT INTO local_training_jobs (id, name, status) VALUES (%s, 'old',"
                     " 'completed')", (old.uid,))  # fmt: skip
        conn.execute("INSERT INTO training_job_attempts (job_id, attempt, exit_code)"
                     " VALUES (%s, 1, 0)", (old.uid,))  # fmt: skip
    async with await psycopg.AsyncConnection.connect(url) as conn:
        assert "0005_progress.sql" in await migrate(conn)

    checkpointed = datetime(2026, 1, 1, 0, 30, tzinfo=UTC)
    runs = [
        {"attempt": 1, "exitCode": 143, "reason": "Preempted", "checkpointStep": 300,
         "lostSeconds": 42.5},
        {"attempt": 2, "resumedFromStep": 300},  # running: nothing lost yet
    ]  # fmt: skip
    job = (
        a_training_job("resumed")
        .in_phase("running", attempts=2, history=runs)
        .with_progress(420, totalSteps=1000)
        .with_checkpoint(400, at=checkpointed, attempt=2)
        .job()
    )
    mirror = Mirror(url)
    task = asyncio.create_task(mirror.run())
    history = History(url)
    try:
        mirror.offer(job)
        await wait_for_async(lambda: mirror.backlog == 0)
        row = mirror_row(url, job.uid)
        assert row is not None
        assert (row["progress_step"], row["total_steps"]) == (420, 1000)
        assert (row["checkpoint_step"], row["checkpointed_at"]) == (400, checkpointed)
        attempts = await history.attempts(namespace="default", name="resumed")
        assert [(a["attempt"], a["resumed_from_step"], a["checkpoint_step"], a["lost_seconds"])
                for a in attempts] == [(1, None, 300, 42.5), (2, 300, None, None)]  # fmt: skip
        assert [AttemptRow(**a).model_dump()["lost_seconds"] for a in attempts] == [42.5, None]
        before = await history.attempts(namespace="default", name="old")
        assert [(a["exit_code"], a["lost_seconds"]) for a in before] == [(0, None)]
    finally:
        task.cancel()
        await mirror.close()
        await history.close()


async def wait_for_async(predicate: Callable[[], bool]) -> None:
    """Poll from a thread, so the mirror's task keeps running on the loop meanwhile."""
    await asyncio.to_thread(wait_for, predicate, timeout=20, what="the mirror to flush")
