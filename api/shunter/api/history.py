"""Job history from the PostgreSQL mirror (read-only; the operator writes it)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool, PoolTimeout

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
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()  # first requests may come from several threads

    def _connection_pool(self) -> ConnectionPool:
        if self.url is None:
            raise Unavailable("Job history is unavailable: DATABASE_URL is not set")
        with self._lock:
            if self._pool is None:
                self._pool = ConnectionPool(self.url, min_size=1, max_size=4, open=False)
                self._pool.open(wait=False)
            return self._pool

    def page(
        self, *, namespace: str, status: str | None, limit: int, offset: int
    ) -> tuple[list[dict[str, Any]], int]:
        pool = self._connection_pool()
        try:
            with pool.connection(timeout=5) as conn, conn.cursor(row_factory=dict_row) as cur:
                params = {"namespace": namespace, "status": status, "limit": limit,
                          "offset": offset}  # fmt: skip
                cur.execute(_SELECT, params)
                rows = cur.fetchall()
                cur.execute(_COUNT, params)
                counted = cur.fetchone()
        except psycopg.errors.UndefinedTable:
            return [], 0
        except (psycopg.Error, PoolTimeout) as exc:
            raise Unavailable(f"Job history is unavailable: {exc}") from exc
        return rows, int(counted["count"]) if counted else 0

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
