"""The soak, short: 50 REST clients submitting, cancelling and polling for 30 s while
operator replicas and the API are killed -9, PostgreSQL is stopped and kube-apiserver
restarts; then every job is final as its history says, the mirror equals the CRs row
for row, no Pod is orphaned, and no 5xx came but while kube-apiserver restarted.
The long run: `python -m bench.soak --minutes 30` (bench/RESULTS.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shunter.devcluster.controlplane import ControlPlane
from shunter.devcluster.postgres import LocalPostgres
from tests.support.api import ApiProcess
from tests.support.operator import Jobs, OperatorProcess
from tests.support.soak import Soak, SoakConfig, assert_soak

pytestmark = pytest.mark.timeout(400)


def test_a_short_soak_with_every_fault(
    control_plane: ControlPlane | None,
    jobs: Jobs,
    own_postgres: LocalPostgres,
    start_replica: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
):
    if control_plane is None:
        pytest.skip("restarts the local control plane's kube-apiserver")
    url = own_postgres.url
    env = {"SHUNTER_MAX_RUNNING": "20", "SHUNTER_GRACE_MARGIN_SECONDS": "1"}
    operators = [
        start_replica("pytest-a", database=url, **env),
        start_replica("pytest-b", lead=False, database=url, **env),
    ]
    api = start_api(database=url, SHUNTER_API_CANCEL_WAIT_SECONDS="2")
    soak = Soak(SoakConfig(seconds=30), jobs=jobs, operators=operators, api=api,
                postgres=own_postgres, control_plane=control_plane)  # fmt: skip
    report = soak.run()
    figures = assert_soak(report, jobs, url)
    print(f"soak: {figures}; faults: {[kind for _, kind in report.events]}")
    kinds = [kind.split()[0] for _, kind in report.events]
    assert {"operator", "api", "postgres", "apiserver"} <= set(kinds)
    assert figures.jobs >= 60
    # Cancels were exercised: answered (a job cancelled, or a finished one refused: how
    # many land on live jobs of 1-3 s depends on how fast the machine runs them), each
    # final state checked above against what its answer said.
    assert figures.endpoints["cancel"]["answered"] >= 10
    assert figures.cancelled >= 1
