"""Session fixtures: a real Kubernetes control plane and a real PostgreSQL.

`KUBECONFIG` set: the suite runs against that cluster (kind, or any other) and starts
nothing. Unset: a local control plane is started for the session (see
shunter.devcluster) and stopped at the end. `DATABASE_URL` works the same way for
PostgreSQL, with the embedded server as the local default.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shunter.devcluster.controlplane import ControlPlane, default_state_dir
from shunter.devcluster.postgres import LocalPostgres


@pytest.fixture(scope="session")
def kubeconfig() -> Iterator[Path]:
    given = os.environ.get("KUBECONFIG")
    if given:
        yield Path(given)
        return
    plane = ControlPlane(default_state_dir(f"pytest-{os.getpid()}"))
    try:
        yield plane.up()
    finally:
        plane.down()


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    server = LocalPostgres(tmp_path_factory.mktemp("postgres") / "server")
    try:
        yield server.up()
    finally:
        server.down()


@pytest.fixture
def unique_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"
