"""The PostgreSQL mirror: migrations, idempotent upserts, and surviving an outage."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace

import psycopg
import pytest

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


async def wait_for_async(predicate: Callable[[], bool]) -> None:
    """Poll from a thread, so the mirror's task keeps running on the loop meanwhile."""
    await asyncio.to_thread(wait_for, predicate, timeout=20, what="the mirror to flush")
