"""Accounting rows in PostgreSQL: what the mirror writes per run, the gap count, an
outage and an API restart, retention, and a database of before 0006."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from shunter.api.errors import Unavailable
from shunter.api.history import History
from shunter.api.usage import Window, summarize
from shunter.devcluster.postgres import LocalPostgres
from shunter.domain.model import Attempt
from shunter.operator.mirror import Mirror, migrate, migration_files
from shunter.operator.stopping import HISTORY
from tests.support.builders import TrainingJobBuilder, a_training_job
from tests.support.polling import wait_for

T0 = datetime(2026, 3, 1, tzinfo=UTC)
WEEK = Window.of(since=T0, until=T0 + timedelta(days=7), step="day", now=T0)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


def preempted_runs(first: int, last: int) -> list[dict[str, Any]]:
    """Runs `first`..`last`, one an hour: each waits 6 min, holds its GPUs 30 min, runs
    24 of them and loses 10 (it checkpointed 14 min in)."""
    return [
        Attempt(n, 143, "Preempted", started_at=at(n) + timedelta(minutes=6),
                finished_at=at(n) + timedelta(minutes=36), lost_seconds=600.0,
                queued_at=at(n), admitted_at=at(n) + timedelta(minutes=6),
                running_at=at(n) + timedelta(minutes=12)).to_raw()
        for n in range(first, last + 1)
    ]  # fmt: skip


def a_job(name: str, first: int, last: int, **status: Any) -> TrainingJobBuilder:
    return (
        a_training_job(name, "team-a")
        .with_gpus(4)
        .with_spec(queue="research")
        .submitted_by("alice")
        .created_at(T0)
        .in_phase("queued", attempts=last, history=preempted_runs(first, last), **status)
    )


def rows_of(url: str, uid: str) -> list[dict[str, Any]]:
    with psycopg.connect(url) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute("SELECT * FROM training_job_attempts WHERE job_id = %s ORDER BY attempt",
                    (uid,))  # fmt: skip
        return cur.fetchall()


async def flushed(mirror: Mirror) -> None:
    await asyncio.to_thread(wait_for, lambda: mirror.backlog == 0, timeout=20,
                            what="the mirror to flush")  # fmt: skip


async def test_each_run_is_a_row_with_its_gpu_seconds_wait_and_outcome(own_postgres: LocalPostgres):
    url = own_postgres.url
    job = a_job("j", 1, 2).job()
    mirror = Mirror(url)
    task = asyncio.create_task(mirror.run())
    history = History(url)
    try:
        mirror.offer(job)
        await flushed(mirror)
        first, _ = rows_of(url, job.uid)
        assert (first["gpus"], first["outcome"]) == (4, "preempted")
        assert (first["allocated_seconds"], first["run_seconds"]) == (1800.0, 1440.0)
        assert (first["wait_seconds"], first["lost_gpu_seconds"]) == (360.0, 2400.0)
        rows, gaps = await history.runs(namespace="team-a", since=WEEK.since, until=WEEK.until)
        assert gaps == {"missing": 0, "jobs": 0}
        found = summarize(rows, by="user", window=WEEK, namespace="team-a", gaps=gaps, step="day")
        (alice,) = found.groups
        assert (alice.key, alice.total_attempts, alice.total_allocated_gpu_hours) == (
            "alice",
            2,
            4.0,
        )
        assert alice.total_lost_gpu_hours == round(2 * 4 * 600 / 3600, 4)
        assert await history.runs(namespace="team-b", since=WEEK.since, until=WEEK.until) == (
            [], {"missing": 0, "jobs": 0})  # fmt: skip
    finally:
        task.cancel()
        await mirror.close()
        await history.close()


async def test_an_outage_loses_only_runs_the_history_no_longer_holds_and_counts_them(
    own_postgres: LocalPostgres,
):
    """The mirror saw runs 1-2; PostgreSQL goes away while the job runs 23 more; the
    history keeps the last HISTORY (6-25), so 3-5 are gone: counted, not hidden. A new
    API (History) reads the same sums from the rows: nothing lived in its memory."""
    url = own_postgres.url
    mirror = Mirror(url, retry_max=0.5)
    task = asyncio.create_task(mirror.run())
    try:
        early = a_job("long", 1, 2).job()
        mirror.offer(early)
        await flushed(mirror)
        own_postgres.stop()
        late = replace(a_job("long", 25 - HISTORY + 1, 25).job(), uid=early.uid)
        mirror.offer(late)
        await asyncio.to_thread(wait_for, lambda: not mirror.healthy, timeout=20,
                                what="the mirror to see the outage")  # fmt: skip
        own_postgres.start()
        await flushed(mirror)
    finally:
        task.cancel()
        await mirror.close()
    assert [r["attempt"] for r in rows_of(url, late.uid)] == [1, 2, *range(6, 26)]
    for _ in range(2):  # two API lifetimes: the answer is the database's
        history = History(url)
        try:
            rows, gaps = await history.runs(namespace=None, since=WEEK.since, until=WEEK.until)
        finally:
            await history.close()
        assert gaps == {"missing": 3, "jobs": 1}
        found = summarize(rows, by="queue", window=WEEK, namespace="*", gaps=gaps, step="hour")
        assert found.groups[0].total_attempts == 22
        assert found.gaps.missing_attempts == 3


async def test_a_running_attempt_is_not_a_gap_and_a_retry_backoff_is_not_either(
    own_postgres: LocalPostgres,
):
    url = own_postgres.url
    running = a_job("running", 1, 2).in_phase(
        "running", attempts=3, history=preempted_runs(1, 2)).job()  # fmt: skip
    retrying = a_job("retrying", 1, 2).in_phase(
        "starting", reason="Retrying", attempts=2, history=preempted_runs(1, 2)).job()  # fmt: skip
    mirror = Mirror(url)
    task = asyncio.create_task(mirror.run())
    history = History(url)
    try:
        mirror.offer(running)
        mirror.offer(retrying)
        await flushed(mirror)
        _, gaps = await history.runs(namespace=None, since=WEEK.since, until=WEEK.until)
        assert gaps == {"missing": 0, "jobs": 0}
    finally:
        task.cancel()
        await mirror.close()
        await history.close()


async def test_retention_deletes_old_runs_which_are_then_neither_gaps_nor_written_again(
    own_postgres: LocalPostgres,
):
    url = own_postgres.url
    job = a_job("kept", 1, 5).job()
    mirror = Mirror(url, retention=timedelta(days=30))
    task = asyncio.create_task(mirror.run())
    history = History(url)
    try:
        mirror.offer(job)
        await flushed(mirror)
        # 30 days after run 3 ended (3:36) and before run 4 did: runs 1-3 go.
        assert await mirror.prune(now=at(3.7) + timedelta(days=30)) == 3
        assert [r["attempt"] for r in rows_of(url, job.uid)] == [4, 5]
        mirror.offer(job)  # the history still holds runs 1-5
        await flushed(mirror)
        assert [r["attempt"] for r in rows_of(url, job.uid)] == [4, 5]
        _, gaps = await history.runs(namespace=None, since=T0, until=at(24))
        assert gaps == {"missing": 0, "jobs": 0}
        assert await mirror.prune(now=at(3.7) + timedelta(days=30)) == 0
    finally:
        task.cancel()
        await mirror.close()
        await history.close()


async def test_a_database_of_before_the_accounting_is_migrated_and_its_runs_counted(
    own_postgres: LocalPostgres,
):
    url = own_postgres.url
    old = a_training_job("old", "team-a").with_gpus(2).in_phase("completed", attempts=1).job()
    with psycopg.connect(url, autocommit=True) as conn:
        for _, name, sql in migration_files():
            if name < "0006":
                conn.execute(sql.encode())
        conn.execute("INSERT INTO local_training_jobs (id, name, namespace, status, gpus,"
                     " attempts, created_at) VALUES (%s, 'old', 'team-a', 'completed', 2, 1,"
                     " %s)", (old.uid, T0))  # fmt: skip
        conn.execute("INSERT INTO training_job_attempts (job_id, attempt, reason, started_at,"
                     " finished_at) VALUES (%s, 1, 'Completed', %s, %s)",
                     (old.uid, at(1), at(3)))  # fmt: skip
    async with await psycopg.AsyncConnection.connect(url) as conn:
        assert "0006_accounting.sql" in await migrate(conn)
    history = History(url)
    try:
        rows, gaps = await history.runs(namespace="team-a", since=WEEK.since, until=WEEK.until)
    finally:
        await history.close()
    found = summarize(rows, by="namespace", window=WEEK, namespace="team-a", gaps=gaps, step="day")
    assert found.groups[0].total_allocated_gpu_hours == 4.0
    assert found.groups[0].outcomes["completed"].lost_gpu_hours == 0


def test_a_database_that_cannot_be_reached_is_a_clear_503_for_each_history_read():
    """The history reads share one cursor; each names what is unavailable."""

    async def reads() -> list[str]:
        history = History("postgresql://shunter@127.0.0.1:1/none?connect_timeout=1")
        said = []
        try:
            for read in (
                history.runs(namespace=None, since=WEEK.since, until=WEEK.until),
                history.attempts(namespace="default", name="any"),
            ):
                try:
                    await read
                except Unavailable as exc:
                    said.append(str(exc))
        finally:
            await history.close()
        return said

    said = asyncio.run(reads())
    assert [s.split(" is unavailable: ")[0] for s in said] == ["Usage history", "Job history"]
