"""Job history from the PostgreSQL mirror (read-only; the operator writes it).

GET /jobs filters by phase, queue, part of the name, the submitting user, creation
time and whether the TrainingJob still exists, newest first. Every filter is a bound
parameter of one fixed statement (a NULL parameter switches its condition off), so no
SQL is ever assembled from input.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from shunter.api.errors import NotFound, Unavailable
from shunter.api.schemas import HISTORY_COLUMNS, AttemptRow

_WHERE = (
    " FROM local_training_jobs WHERE namespace = %(namespace)s"
    " AND (%(status)s::text IS NULL OR status = %(status)s)"
    " AND (%(queue)s::text IS NULL OR queue = %(queue)s)"
    " AND (%(name_like)s::text IS NULL OR name LIKE %(name_like)s ESCAPE '\\')"
    " AND (%(submitted_by)s::text IS NULL OR submitted_by = %(submitted_by)s)"
    " AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)"
    " AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)"
    " AND (%(deleted)s::boolean IS NULL OR (deleted_at IS NOT NULL) = %(deleted)s)"
)
_SELECT = (
    f"SELECT {', '.join(HISTORY_COLUMNS)}" + _WHERE + " ORDER BY created_at DESC, id"
    " LIMIT %(limit)s OFFSET %(offset)s"
)
_COUNT = "SELECT count(*)" + _WHERE
_ONE_SNAPSHOT = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"


@dataclass(frozen=True)
class HistoryFilter:
    """None leaves a condition out."""

    namespace: str
    status: str | None = None
    queue: str | None = None
    name_contains: str | None = None
    submitted_by: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    deleted: bool | None = None

    def params(self) -> dict[str, Any]:
        params = asdict(self)
        name = params.pop("name_contains")
        # LIKE with the user's text taken literally: its own % and _ are escaped.
        params["name_like"] = (
            None
            if not name
            else "%" + name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        )
        return params


_LATEST = (
    "SELECT id FROM local_training_jobs WHERE namespace = %(namespace)s AND name = %(name)s"
    " ORDER BY created_at DESC LIMIT 1"
)
_LAST_STATE = (
    "SELECT status, checkpoint_step FROM local_training_jobs"
    " WHERE namespace = %(namespace)s AND name = %(name)s ORDER BY created_at DESC LIMIT 1"
)
_ATTEMPTS = (
    f"SELECT {', '.join(AttemptRow.model_fields)} FROM training_job_attempts"
    " WHERE job_id = %(id)s ORDER BY attempt"
)


# Accounting (GET /usage, shunter.api.usage): the finished runs overlapping a window,
# with what the API needs to place them in it. Runs mirrored before 0006 lack the
# accounting columns: their GPUs are the job's, their times their start.
_RUNS = (
    "SELECT j.namespace, j.queue, j.submitted_by AS user,"
    " coalesce(a.gpus, j.gpus * j.nodes) AS gpus, a.queued_at, a.admitted_at,"
    " a.running_at, a.started_at, a.finished_at, a.lost_seconds, a.reason"
    " FROM training_job_attempts a JOIN local_training_jobs j ON j.id = a.job_id"
    " WHERE a.finished_at IS NOT NULL AND a.finished_at >= %(since)s"
    " AND coalesce(a.admitted_at, a.started_at, a.finished_at) < %(until)s"
    " AND (%(namespace)s::text IS NULL OR j.namespace = %(namespace)s)"
)
# Runs the mirror never wrote: a job's finished runs (its count, less the one going
# on) beyond those retention deleted and those in the table. A run leaves
# status.history after HISTORY newer ones; one that did while PostgreSQL was away is
# lost, and counted here for every job alive in the window.
_GAPS = (
    "SELECT count(*) FILTER (WHERE missing > 0) AS jobs,"
    " coalesce(sum(missing), 0) AS missing FROM (SELECT GREATEST(0, j.attempts"
    " - CASE WHEN j.status IN ('starting', 'running', 'stopping', 'cancelling')"
    " AND coalesce(j.reason, '') <> 'Retrying' THEN 1 ELSE 0 END - j.attempts_pruned"
    " - (SELECT count(*) FROM training_job_attempts a WHERE a.job_id = j.id"
    " AND a.finished_at IS NOT NULL AND a.attempt > j.attempts_pruned)) AS missing"
    " FROM local_training_jobs j"
    " WHERE (%(namespace)s::text IS NULL OR j.namespace = %(namespace)s)"
    " AND j.created_at < %(until)s AND coalesce(j.completed_at, 'infinity') >= %(since)s) g"
)


_PLAN = (
    "SELECT computed_at, body FROM queue_plan WHERE scope = %(scope)s"
    " AND computed_at > coalesce(%(after)s::timestamptz, '-infinity')"
)
_TIMELINE = "SELECT computed_at, body, timeline FROM queue_plan WHERE scope = %(scope)s"


class History:
    def __init__(self, url: str | None, *, scope: str = "*") -> None:
        self.url = url
        self.scope = scope  # whose plan it reads (Scope.key: the operator's own)
        self._pool: AsyncConnectionPool | None = None
        self._opening = asyncio.Lock()

    async def _connection_pool(self) -> AsyncConnectionPool:
        if self.url is None:
            raise Unavailable("Job history is unavailable: DATABASE_URL is not set")
        async with self._opening:
            if self._pool is None:
                pool = AsyncConnectionPool(self.url, min_size=1, max_size=4, open=False)
                await pool.open(wait=False)
                self._pool = pool
            return self._pool

    @contextlib.asynccontextmanager
    async def _cursor(self, what: str) -> AsyncIterator[psycopg.AsyncCursor[dict[str, Any]]]:
        """A cursor on a pooled connection. A missing table (no migration yet) is left
        to the caller; any other database failure is a 503 naming `what`."""
        pool = await self._connection_pool()
        try:
            async with (
                pool.connection(timeout=5) as conn,
                conn.cursor(row_factory=dict_row) as cur,
            ):
                yield cur
        except psycopg.errors.UndefinedTable:
            raise
        except (psycopg.Error, PoolTimeout) as exc:
            raise Unavailable(f"{what} is unavailable: {exc}") from exc

    async def page(
        self, where: HistoryFilter, *, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        params = {**where.params(), "limit": limit, "offset": offset}
        try:
            async with self._cursor("Job history") as cur:
                # The page and its total from one snapshot: under READ COMMITTED each
                # statement sees the mirror's latest writes, so a job marked deleted in
                # between was counted and not listed (seen in CI: total 1, no item).
                await cur.execute(_ONE_SNAPSHOT)
                await cur.execute(_SELECT, params)
                rows = await cur.fetchall()
                await cur.execute(_COUNT, params)
                counted = await cur.fetchone()
        except psycopg.errors.UndefinedTable:
            return [], 0
        return rows, int(counted["count"]) if counted else 0

    async def attempts(self, *, namespace: str, name: str) -> list[dict[str, Any]]:
        """The runs of the newest job of that name; NotFound when there is none."""
        try:
            async with self._cursor("Job history") as cur:
                await cur.execute(_LATEST, {"namespace": namespace, "name": name})
                job = await cur.fetchone()
                if job is None:
                    raise NotFound("No history of this job")
                await cur.execute(_ATTEMPTS, {"id": job["id"]})
                return await cur.fetchall()
        except psycopg.errors.UndefinedTable as exc:
            raise NotFound("No history of this job") from exc

    async def last_state(self, *, namespace: str, name: str) -> tuple[str, int | None] | None:
        """The newest job of that name's last phase and checkpoint step (a dependency on
        a job whose TrainingJob is gone); None when there is none. Unavailable when
        there is no history or it cannot be read."""
        pool = await self._connection_pool()
        try:
            async with (
                pool.connection(timeout=5) as conn,
                conn.cursor(row_factory=dict_row) as cur,
            ):
                await cur.execute(_LAST_STATE, {"namespace": namespace, "name": name})
                row = await cur.fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        except (psycopg.Error, PoolTimeout) as exc:
            raise Unavailable(f"Job history is unavailable: {exc}") from exc
        return (str(row["status"]), row["checkpoint_step"]) if row is not None else None

    async def plan(self, *, after: datetime | None) -> tuple[datetime, Any] | None:
        """The operator's kept plan (queue_plan), if newer than `after`; None if not
        (or not there yet: the operator writes it with estimates on)."""
        if self.url is None:
            return None
        pool = await self._connection_pool()
        try:
            async with pool.connection(timeout=5) as conn:
                cursor = await conn.execute(_PLAN, {"after": after, "scope": self.scope})
                row = await cursor.fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        except (psycopg.Error, PoolTimeout) as exc:
            raise Unavailable(f"The queue's plan is unavailable: {exc}") from exc
        return (row[0], row[1]) if row else None

    async def timeline(self) -> tuple[datetime, Any, Any] | None:
        """The newest plan with its timeline (what a what-if reads besides estimates)."""
        if self.url is None:
            return None
        pool = await self._connection_pool()
        try:
            async with pool.connection(timeout=5) as conn:
                cursor = await conn.execute(_TIMELINE, {"scope": self.scope})
                row = await cursor.fetchone()
        except psycopg.errors.UndefinedTable:
            return None
        except (psycopg.Error, PoolTimeout) as exc:
            raise Unavailable(f"The queue's plan is unavailable: {exc}") from exc
        return (row[0], row[1], row[2]) if row else None

    async def runs(
        self, *, namespace: str | None, since: datetime, until: datetime
    ) -> tuple[list[dict[str, Any]], dict[str, int]]:
        """The finished runs overlapping [since, until) in the namespace (None: every
        one), and the gap: {"missing": runs never mirrored, "jobs": jobs missing some}."""
        params = {"namespace": namespace, "since": since, "until": until}
        try:
            async with self._cursor("Usage history") as cur:
                await cur.execute(_RUNS, params)
                rows = await cur.fetchall()
                await cur.execute(_GAPS, params)
                gap = await cur.fetchone()
        except psycopg.errors.UndefinedTable:
            return [], {"missing": 0, "jobs": 0}
        return rows, {k: int(gap[k]) for k in ("missing", "jobs")} if gap else {}

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
