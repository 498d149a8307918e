"""Job history from the PostgreSQL mirror (read-only; the operator writes it)."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from shunter.api.errors import Unavailable

_SELECT = (
    "SELECT name AS job_id, id::text AS uid, namespace, status, error, message, gpus, priority,"
    " queue, image, exit_code, created_at, started_at, completed_at, deleted_at"
    " FROM local_training_jobs WHERE namespace = %(namespace)s"
    " AND (%(status)s::text IS NULL OR status = %(status)s)"
    " ORDER BY created_at DESC, id LIMIT %(limit)s OFFSET %(offset)s"
)
_COUNT = (
    "SELECT count(*) FROM local_training_jobs WHERE namespace = %(namespace)s"
    " AND (%(status)s::text IS NULL OR status = %(status)s)"
)


class History:
    def __init__(self, url: str | None) -> None:
        self.url = url
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

    async def page(
        self, *, namespace: str, status: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        pool = await self._connection_pool()
        params = {"namespace": namespace, "status": status, "limit": limit, "offset": offset}
        try:
            async with (
                pool.connection(timeout=5) as conn,
                conn.cursor(row_factory=dict_row) as cur,
            ):
                await cur.execute(_SELECT, params)
                rows = await cur.fetchall()
                await cur.execute(_COUNT, params)
                counted = await cur.fetchone()
        except psycopg.errors.UndefinedTable:
            return [], 0
        except (psycopg.Error, PoolTimeout) as exc:
            raise Unavailable(f"Job history is unavailable: {exc}") from exc
        return rows, int(counted["count"]) if counted else 0

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
