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
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from shunter.domain.model import Job
from shunter.domain.record import JobRecord, record_of

log = logging.getLogger("shunter.operator.mirror")

TABLE = "local_training_jobs"
MIGRATIONS_LOCK = 7_274_001  # pg_advisory_xact_lock key shared by every replica


@dataclass(frozen=True, kw_only=True)
class Row(JobRecord):
    """A job's row: its record (shunter.domain.record) and what only the mirror keeps."""

    resource_version: int
    cancel_requested_at: datetime | None
    termination_outcome: str | None
    deleted_at: datetime | None = None


def row_of(job: Job) -> Row:
    termination = job.status.termination
    return Row(
        **asdict(record_of(job)),
        resource_version=job.revision,
        cancel_requested_at=termination.requested_at if termination else None,
        termination_outcome=termination.outcome if termination else None,
    )


@dataclass(frozen=True, kw_only=True)
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


def attempt_rows(job: Job) -> list[AttemptRow]:
    return [
        AttemptRow(
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
        for a in job.status.history
    ]


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
_ATTEMPT_COLUMNS = list(AttemptRow.__dataclass_fields__)
_UPSERT_ATTEMPT = (
    f"INSERT INTO training_job_attempts ({', '.join(_ATTEMPT_COLUMNS)}) "
    f"VALUES ({', '.join('%(' + c + ')s' for c in _ATTEMPT_COLUMNS)}) "
    "ON CONFLICT (job_id, attempt) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in _ATTEMPT_COLUMNS if c not in ("job_id", "attempt"))
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


class Mirror:
    """Pending rows plus the task that flushes them."""

    def __init__(self, url: str | None, *, retry_max: float = 10.0) -> None:
        self.url = url
        self.retry_max = retry_max
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
        if not self._pending:
            return
        assert self._pool is not None
        batch = dict(self._pending)
        runs = [r.__dict__ for uid in batch for r in self._attempts.get(uid, ())]
        async with self._pool.connection(timeout=5) as conn:
            if not self._migrated:
                applied = await migrate(conn)
                if applied:
                    log.info("mirror: applied migrations %s", ", ".join(applied))
                self._migrated = True
            async with conn.transaction(), conn.cursor() as cursor:
                await cursor.executemany(_UPSERT, [r.__dict__ for r in batch.values()])
                if runs:
                    await cursor.executemany(_UPSERT_ATTEMPT, runs)
        # Everything runs on the event loop, so nothing was offered between the check
        # and the delete: a row offered during the write is a different object.
        for uid, row in batch.items():
            if self._pending.get(uid) is row:
                del self._pending[uid]
                self._attempts.pop(uid, None)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
