"""The embedded PostgreSQL server is real: it stores, stops and comes back with the data."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from shunter.devcluster.postgres import LocalPostgres
from tests.support.pgdirs import postgres_root


def test_database_url_fixture_serves_sql(database_url: str):
    with psycopg.connect(database_url) as conn:
        assert conn.execute("select 1 + 1").fetchone() == (2,)


def test_local_server_keeps_data_across_a_restart():
    with postgres_root("restart") as root:
        _keeps_data_across_a_restart(root)


def _keeps_data_across_a_restart(root: Path) -> None:
    server = LocalPostgres(root)
    url = server.up()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("create table kept (v text)")
            conn.execute("insert into kept values ('still here')")
        server.stop()
        assert not server.running()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)

        server.start()
        assert server.url == url
        with psycopg.connect(url) as conn:
            assert conn.execute("select v from kept").fetchone() == ("still here",)
    finally:
        server.down()
    assert not root.exists()
