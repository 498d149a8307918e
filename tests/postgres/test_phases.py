"""The mirror's CHECK constraint names exactly the model's phases (the one owner:
shunter.domain.model.Phase; tests/unit/packaging/test_phases.py checks the CRD)."""

from __future__ import annotations

import re

import psycopg

from shunter.devcluster.postgres import LocalPostgres
from shunter.domain.model import Phase
from shunter.operator.mirror import migrate

NAMES = [p.value for p in Phase]


async def test_the_mirrors_check_constraint_allows_exactly_the_models_phases(
    own_postgres: LocalPostgres,
):
    async with await psycopg.AsyncConnection.connect(own_postgres.url) as conn:
        await migrate(conn)
        cursor = await conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conname = 'local_training_jobs_status_check'"
        )
        row = await cursor.fetchone()
    assert row is not None
    assert sorted(re.findall(r"'([a-z]+)'::text", row[0])) == sorted(NAMES)
