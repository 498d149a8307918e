"""Operator replicas for the leader-election fault tests: each with its own identity,
log file and (optionally) its own kubeconfig, all on the test namespace's one Lease,
with short lease timings so that a takeover takes seconds."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.support.operator import LEASE_ENV, OperatorProcess

_ACQUIRED = re.compile(r"^(\S+ \S+) INFO shunter\.operator\.leadership: acquired leadership", re.M)


def acquired_times(replica: OperatorProcess) -> list[float]:
    """When the replica's log says it acquired leadership (epoch seconds)."""
    return [
        datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
        for stamp in _ACQUIRED.findall(replica.log())
    ]


@pytest.fixture
def start_replica(
    kubeconfig: Path, namespace: str, database_url: str, tmp_path: Path, crd: None
) -> Iterator[Callable[..., OperatorProcess]]:
    """start_replica("pytest-a", lead=True, kubeconfig=..., SHUNTER_MAX_RUNNING="3")."""
    started: list[OperatorProcess] = []

    def start(
        identity: str, *, lead: bool = True, kubeconfig: Path = kubeconfig,
        database: str = database_url, **env: str,
    ) -> OperatorProcess:  # fmt: skip
        replica = OperatorProcess(
            kubeconfig=kubeconfig,
            namespace=namespace,
            database_url=database,
            log_path=tmp_path / f"operator-{identity}.log",
            env={"SHUNTER_IDENTITY": identity, **LEASE_ENV, **env},
        )
        started.append(replica)
        return replica.start(lead=lead)

    yield start
    for replica in started:
        replica.stop()
    for replica in started:
        assert replica.thread_safety_violations() == [], f"{replica.identity}: loop state touched"
