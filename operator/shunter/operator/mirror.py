"""The PostgreSQL mirror of TrainingJobs: durable history that outlives the CRs.

Kubernetes stays the source of truth; this module only copies it. Every job event
offers the job's latest state; the newest state per job waits in memory until a
flush writes it, so while PostgreSQL is down the operator keeps reconciling and the
rows catch up when it returns, with nothing lost (the pending set is bounded by the
number of jobs, not of events). After a restart the initial listing offers every job
again, so a row is never missing for long either.

Writes are idempotent upserts keyed by the job's uid and guarded by resourceVersion:
a replayed or reordered older state never overwrites a newer one. Deleted jobs keep
their row, marked with `deleted_at`.

Each job's runs (status.history) are rows of training_job_attempts, with their
accounting (shunter.domain.usage), written in the same transaction as the job's row.
They are derived from what the cluster keeps, so an outage loses nothing the cluster
still holds when the mirror reconnects: a job's last HISTORY runs (shunter.operator.
stopping). A run that left status.history while PostgreSQL was away is not made up;
the API counts it as a gap (shunter.api.usage). Retention (SHUNTER_USAGE_RETENTION_DAYS)
deletes runs that ended before it, oldest first, and notes on the job's row the
highest attempt it deleted, so a deleted run is neither written again from a history
that still holds it nor counted as a gap.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from shunter.domain.dependencies import Absent, Upstream
from shunter.domain.model import Job, JobKey, Phase
from shunter.domain.record import JobRecord, record_of
from shunter.domain.usage import usage_of

log = logging.getLogger("shunter.operator.mirror")

TABLE = "local_training_jobs"
MIGRATIONS_LOCK = 7_274_001  # pg_advisory_xact_lock key shared by every replica
# How often retention runs: usage is kept for days, an hour late is nothing.
PRUNE_EVERY = 3600.0


@dataclass(frozen=True, kw_only=True, slots=True)
class Row(JobRecord):
    """A job's row: its record (shunter.domain.record) and what only the mirror keeps."""

    resource_version: int
    cancel_requested_at: datetime | None
    termination_outcome: str | None
    deleted_at: datetime | None = None


def values(row: Any) -> dict[str, Any]:
    """A row's fields by name, as they are (no deep copy, as `asdict` makes): the
    rows have slots (a first sync of tens of thousands of jobs holds one per job)."""
    return {f.name: getattr(row, f.name) for f in fields(row)}


def row_of(job: Job) -> Row:
    termination = job.status.termination
    return Row(
        **values(record_of(job)),
        resource_version=job.revision,
        cancel_requested_at=termination.requested_at if termination else None,
        termination_outcome=termination.outcome if termination else None,
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class AttemptRow:
    """One run of a job (status.history[]): a row of training_job_attempts."""

    job_id: str
    attempt: int
    exit_code: int | None
    reason: str | None
    started_at: datetime | None
    finished_at: datetime | None
    resumed_from_step: int | None
    checkpoint_step: int | None
    lost_seconds: float | None
    # Accounting (shunter.domain.usage); None while the run goes on.
    queued_at: datetime | None = None
    admitted_at: datetime | None = None
    running_at: datetime | None = None
    gpus: int | None = None
    outcome: str | None = None
    allocated_seconds: float | None = None
    run_seconds: float | None = None
    wait_seconds: float | None = None
    lost_gpu_seconds: float | None = None


def attempt_rows(job: Job) -> list[AttemptRow]:
    rows = []
    for a in job.status.history:
        row = AttemptRow(
            job_id=job.uid,
            attempt=a.number,
            exit_code=a.exit_code,
            reason=a.reason,
            started_at=a.started_at,
            finished_at=a.finished_at,
            resumed_from_step=a.resumed_from_step,
            checkpoint_step=a.checkpoint_step,
            lost_seconds=a.lost_seconds,
        )
        usage = usage_of(a, gpus=job.spec.total_gpus)
        if usage is not None:
            row = replace(
                row,
                queued_at=usage.queued_at,
                admitted_at=usage.admitted_at,
                running_at=usage.running_at,
                gpus=usage.gpus,
                outcome=usage.outcome,
                allocated_seconds=usage.allocated_seconds,
                run_seconds=usage.run_seconds,
                wait_seconds=usage.wait_seconds,
                lost_gpu_seconds=usage.lost_gpu_seconds,
            )
        rows.append(row)
    return rows


_COLUMNS = list(Row.__dataclass_fields__)
_UPSERT = (
    f"INSERT INTO {TABLE} ({', '.join(_COLUMNS)}, updated_at) "
    f"VALUES ({', '.join('%(' + c + ')s' for c in _COLUMNS)}, now()) "
    f"ON CONFLICT (id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _COLUMNS if c != "id")
    + ", updated_at = now() "
    f"WHERE {TABLE}.resource_version <= EXCLUDED.resource_version"
)


# A run's row changes only while the run is the latest; ON CONFLICT keeps it current.
# A run retention deleted (attempts_pruned) is not written again. The parameters are
# cast: in an INSERT ... SELECT the server does not take their types from the columns.
_ATTEMPT_TYPES = {
    "job_id": "uuid", "attempt": "integer", "exit_code": "integer", "reason": "text",
    "started_at": "timestamptz", "finished_at": "timestamptz",
    "resumed_from_step": "bigint", "checkpoint_step": "bigint",
    "lost_seconds": "double precision", "queued_at": "timestamptz",
    "admitted_at": "timestamptz", "running_at": "timestamptz", "gpus": "integer",
    "outcome": "text", "allocated_seconds": "double precision",
    "run_seconds": "double precision", "wait_seconds": "double precision",
    "lost_gpu_seconds": "double precision",
}  # fmt: skip
_ATTEMPT_COLUMNS = list(AttemptRow.__dataclass_fields__)
_UPSERT_ATTEMPT = (
    f"INSERT INTO training_job_attempts ({', '.join(_ATTEMPT_COLUMNS)}) "
    f"SELECT {', '.join(f'%({c})s::{_ATTEMPT_TYPES[c]}' for c in _ATTEMPT_COLUMNS)} "
    "WHERE NOT EXISTS (SELECT 1 FROM local_training_jobs"
    " WHERE id = %(job_id)s::uuid AND attempts_pruned >= %(attempt)s::integer) "
    "ON CONFLICT (job_id, attempt) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _ATTEMPT_COLUMNS if c not in ("job_id", "attempt"))
)

# Retention: the runs that ended before the cutoff, oldest first and a bounded number
# per statement (a short lock), noting on each job the highest attempt deleted.
PRUNE_BATCH = 5_000
_PRUNE = (
    "WITH gone AS (DELETE FROM training_job_attempts WHERE (job_id, attempt) IN ("
    " SELECT job_id, attempt FROM training_job_attempts WHERE finished_at < %(cutoff)s"
    " ORDER BY finished_at LIMIT %(batch)s) RETURNING job_id, attempt),"
    " most AS (SELECT job_id, max(attempt) AS attempt FROM gone GROUP BY job_id),"
    " noted AS (UPDATE local_training_jobs j SET attempts_pruned ="
    " GREATEST(j.attempts_pruned, most.attempt) FROM most WHERE j.id = most.job_id)"
    " SELECT count(*) FROM gone"
)


def migration_files() -> list[tuple[int, str, str]]:
    """(version, name, sql) of every migration, in order."""
    folder = resources.files("shunter.operator.migrations")
    found = []
    for entry in folder.iterdir():
        if entry.name.endswith(".sql"):
            version = int(entry.name.split("_", 1)[0])
            found.append((version, entry.name, entry.read_text()))
    return sorted(found)


async def migrate(conn: psycopg.AsyncConnection[Any]) -> list[str]:
    """Apply the pending migrations in one transaction, under an advisory lock so
    replicas starting together apply them once; return their names."""
    applied: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATIONS_LOCK,))
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cursor = await conn.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in await cursor.fetchall()}
        for version, name, sql in migration_files():
            if version in done:
                continue
            await conn.execute(sql.encode())
            await conn.execute(
                "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
            applied.append(name)
    return applied


# The newest row of each (namespace, name) asked for.
_LAST_STATES = (
    f"SELECT DISTINCT ON (namespace, name) namespace, name, status, checkpoint_step FROM {TABLE}"
    " WHERE (namespace, name) IN (SELECT * FROM unnest(%s::text[], %s::text[]))"
    " ORDER BY namespace, name, created_at DESC"
)
# Completed runs the estimates learn from (shunter.domain.estimates.Learned): from
# the first start to completion, the newest first.
_RUNTIMES = (
    "SELECT namespace, image, gpus * nodes,"
    " EXTRACT(EPOCH FROM completed_at - started_at)::float8"
    " FROM local_training_jobs WHERE status = 'completed' AND started_at IS NOT NULL"
    " AND completed_at > started_at AND completed_at > now() - %(window)s"
    " ORDER BY completed_at DESC LIMIT %(limit)s"
)
RUNTIME_WINDOW = timedelta(days=30)
RUNTIME_ROWS = 50_000


class Mirror:
    """Pending rows plus the task that flushes them."""

    def __init__(
        self,
        url: str | None,
        *,
        retry_max: float = 10.0,
        retention: timedelta | None = None,
        prune_every: float = PRUNE_EVERY,
    ) -> None:
        self.url = url
        self.retry_max = retry_max
        self.retention = retention
        self.prune_every = prune_every
        self._pending: dict[str, Row] = {}
        self._attempts: dict[str, list[AttemptRow]] = {}
        self._signal = asyncio.Event()
        self._pool: AsyncConnectionPool | None = None
        self._migrated = False
        self.healthy = url is None

    def offer(self, job: Job) -> None:
        if self.url is None:
            return
        self._pending[job.uid] = row_of(job)
        self._attempts[job.uid] = attempt_rows(job)
        self._signal.set()

    def offer_deleted(self, job: Job) -> None:
        if self.url is None:
            return
        self._pending[job.uid] = replace(row_of(job), deleted_at=datetime.now(UTC))
        self._signal.set()

    async def last_states(self, keys: Collection[JobKey]) -> dict[JobKey, Upstream | Absent]:
        """What the history says of jobs with no TrainingJob (their newest row's phase
        and checkpoint), for the dependencies that name them: MISSING where it has no
        row, or there is no mirror. Raises psycopg's errors while PostgreSQL is away."""
        found: dict[JobKey, Upstream | Absent] = dict.fromkeys(keys, Absent.MISSING)
        if self.url is None or not keys:
            return found
        if self._pool is None:
            raise psycopg.OperationalError("the mirror has not connected yet")
        names = sorted(keys)
        params = ([k.namespace for k in names], [k.name for k in names])
        try:
            async with self._pool.connection(timeout=5) as conn:
                cursor = await conn.execute(_LAST_STATES, params)
                rows = await cursor.fetchall()
        except psycopg.errors.UndefinedTable:
            return found
        for namespace, name, status, step in rows:
            phase = Phase(status) if status in Phase.__members__.values() else None
            found[JobKey(namespace, name)] = Upstream.gone(name, phase, step)
        return found

    async def runtimes(self) -> list[tuple[str, str, int, float]]:
        """(namespace, image, GPUs, seconds) of recent completed jobs; none while
        PostgreSQL is away (the estimates fall back to maxRuntimeSeconds)."""
        if self._pool is None or not self._migrated:
            return []
        try:
            async with self._pool.connection(timeout=5) as conn:
                cursor = await conn.execute(
                    _RUNTIMES, {"window": RUNTIME_WINDOW, "limit": RUNTIME_ROWS}
                )
                rows = await cursor.fetchall()
        except (psycopg.Error, PoolTimeout, OSError) as exc:
            log.warning("mirror: runtimes not read: %s", exc)
            return []
        return [(str(a), str(b or ""), int(c), float(d)) for a, b, c, d in rows]

    @property
    def backlog(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        if self.url is None:
            log.warning("DATABASE_URL is not set: the PostgreSQL mirror is off")
            return
        # The pool reconnects in the background while PostgreSQL is away.
        self._pool = AsyncConnectionPool(self.url, min_size=1, max_size=4, open=False)
        await self._pool.open(wait=False)
        pruner = asyncio.create_task(self._prune_forever(), name="usage-retention")
        # The tables at once, not with the first row: the planner (its own connection)
        # publishes into queue_plan before any job may have been offered.
        self._signal.set()
        try:
            await self._flush_forever()
        finally:
            pruner.cancel()
            await asyncio.gather(pruner, return_exceptions=True)

    async def _flush_forever(self) -> None:
        delay = 0.5
        while True:
            await self._signal.wait()
            self._signal.clear()
            try:
                await self.flush()
            except (psycopg.Error, PoolTimeout, OSError) as exc:
                if self.healthy:
                    log.warning("mirror: PostgreSQL unavailable, %d rows pending: %s",
                                self.backlog, exc)  # fmt: skip
                self.healthy = False
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.retry_max)
                self._signal.set()
                continue
            if not self.healthy:
                log.info("mirror: PostgreSQL is back; caught up")
            self.healthy = True
            delay = 0.5

    async def flush(self) -> None:
        if not self._pending and self._migrated:
            return
        assert self._pool is not None
        batch = dict(self._pending)
        runs = [values(r) for uid in batch for r in self._attempts.get(uid, ())]
        async with self._pool.connection(timeout=5) as conn:
            if not self._migrated:
                applied = await migrate(conn)
                if applied:
                    log.info("mirror: applied migrations %s", ", ".join(applied))
                self._migrated = True
            if not batch:
                return
            async with conn.transaction(), conn.cursor() as cursor:
                # Each row's parameters made as it is sent (a first sync of 60,000 jobs
                # held them all at once: tens of MiB for a moment).
                await cursor.executemany(_UPSERT, (values(r) for r in batch.values()))
                if runs:
                    await cursor.executemany(_UPSERT_ATTEMPT, runs)
        # Everything runs on the event loop, so nothing was offered between the check
        # and the delete: a row offered during the write is a different object.
        for uid, row in batch.items():
            if self._pending.get(uid) is row:
                del self._pending[uid]
                self._attempts.pop(uid, None)

    async def prune(self, *, now: datetime) -> int:
        """Delete the runs that ended before the retention; return how many."""
        if self.retention is None or self._pool is None:
            return 0
        cutoff, total = now - self.retention, 0
        while True:
            async with self._pool.connection(timeout=5) as conn:
                cursor = await conn.execute(_PRUNE, {"cutoff": cutoff, "batch": PRUNE_BATCH})
                found = await cursor.fetchone()
            deleted = int(found[0]) if found else 0
            total += deleted
            if deleted < PRUNE_BATCH:
                return total

    async def _prune_forever(self) -> None:
        if self.retention is None:
            return
        while True:
            if self._migrated:  # the table is there: the first flush made it
                try:
                    deleted = await self.prune(now=datetime.now(UTC))
                except (psycopg.Error, PoolTimeout, OSError) as exc:
                    log.warning("mirror: usage retention failed, will retry: %s", exc)
                else:
                    if deleted:
                        log.info("mirror: retention deleted %d runs", deleted)
                await asyncio.sleep(self.prune_every)
            else:
                await asyncio.sleep(min(self.prune_every, 5.0))

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
