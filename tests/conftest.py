"""Session fixtures: a real Kubernetes control plane and a real PostgreSQL; and each
test's tier markers, from its directory (tests/support/tiers.py).

`KUBECONFIG` set: the suite runs against that cluster (kind, or any other) and starts
nothing. Unset: a local control plane is started for the session (see
shunter.devcluster) and stopped at the end. `DATABASE_URL` works the same way for
PostgreSQL, with the embedded server as the local default.
"""

from __future__ import annotations

import functools
import json
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from shunter.devcluster.controlplane import ControlPlane, default_state_dir
from shunter.devcluster.postgres import LocalPostgres
from shunter.domain.model import GROUP, VERSION
from tests.support.api import ApiProcess
from tests.support.kube import api_client, install_user_roles, temporary_namespace
from tests.support.nodes import NodePool
from tests.support.operator import Jobs, OperatorProcess, install_crd
from tests.support.pgdirs import postgres_root
from tests.support.process import SLOW_STOPS
from tests.support.tiers import (
    TierError,
    defines_module_fixtures,
    group_of,
    longest_first,
    markers_for,
)

TESTS = Path(__file__).resolve().parent
# Each test's seconds in the last runs on this machine (the scheduler's order), and
# what this run took.
DURATIONS = Path.home() / ".cache/shunter/test-seconds.json"
TOOK: dict[str, float] = {}
SERVICE_LOGS = pytest.StashKey[list[Path]]()
LOG_LINES_ON_FAILURE = 80


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test that started the operator or the API shows the end of their logs:
    a failure seen only in CI can then be read from CI's output."""
    report = yield
    if report.failed:
        for path in item.stash.get(SERVICE_LOGS, []):
            if path.exists():
                lines = path.read_text(errors="replace").splitlines()[-LOG_LINES_ON_FAILURE:]
                report.sections.append((f"{path.name} (last lines)", "\n".join(lines)))
    return report


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Each test's seconds (all phases), for the next run's scheduling; and with
    SHUNTER_TEST_TIMELINE=FILE each phase as a line `worker phase start end nodeid`
    (epoch seconds), to see what ran beside what and where a run's time went (CPU
    use from vmstat over the same seconds)."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        return  # the controller records (it sees every worker's reports)
    TOOK[report.nodeid] = TOOK.get(report.nodeid, 0.0) + report.duration
    path = os.environ.get("SHUNTER_TEST_TIMELINE")
    if path:
        node = getattr(report, "node", None)  # the xdist worker the report came from
        worker = node.gateway.id if node is not None else "main"
        with open(path, "a") as out:
            out.write(f"{worker} {report.when} {report.start:.3f} {report.stop:.3f}"
                      f" {report.nodeid}\n")  # fmt: skip


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Services that did not end soon after SIGTERM, with where they were
    (tests/support/process.py)."""
    if SLOW_STOPS:
        terminalreporter.section("services still running after SIGTERM")
        for entry in SLOW_STOPS:
            terminalreporter.write_line(entry)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test gets its tier's markers here, the one place tiers are declared."""
    errors: set[str] = set()
    for item in items:
        try:
            given = markers_for(
                item.path,
                root=TESTS,
                fixtures=getattr(item, "fixturenames", ()),
                marked=(m.name for m in item.iter_markers()),
            )
        except TierError as error:
            errors.add(str(error))
            continue
        for name in given:
            item.add_marker(name)
    if errors:
        raise pytest.UsageError("tests out of their tier:\n  " + "\n  ".join(sorted(errors)))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """make test's pytest-xdist scheduling (`--dist loadgroup`): one group of tests at a
    time per worker, the groups of tests/support/tiers.py, the longest first."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ByTier(LoadScopeScheduling):  # type: ignore[misc]
        ordered = False

        def _split_scope(self, nodeid: str) -> str:
            path = Path(config.rootpath, nodeid.split("::", 1)[0])
            return _group(path) or nodeid

        def _assign_work_unit(self, node: Any) -> None:
            # The queue is complete when the first unit is handed out: order it then.
            if not self.ordered:
                self.ordered = True
                groups = {name: list(tests) for name, tests in self.workqueue.items()}
                order = longest_first(groups, _recorded_seconds())
                queue = [(name, self.workqueue[name]) for name in order]
                self.workqueue.clear()
                self.workqueue.update(queue)
            super()._assign_work_unit(node)

    return ByTier(config, log)


def _recorded_seconds() -> dict[str, float]:
    try:
        found = json.loads(DURATIONS.read_text())
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in found.items()} if isinstance(found, dict) else {}


@functools.cache
def _group(path: Path) -> str | None:
    try:
        scoped = defines_module_fixtures(path.read_text())
        return group_of(path, root=TESTS, module_scoped=scoped)
    except (OSError, SyntaxError, TierError):
        return None


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """A pytest-xdist worker's slow stops, for the summary of the whole run."""
    SLOW_STOPS.extend(getattr(node, "workeroutput", {}).get("slow_stops", ()))


def pytest_sessionfinish(session: pytest.Session) -> None:
    output = getattr(session.config, "workeroutput", None)
    if output is not None:  # a pytest-xdist worker: its controller prints the summary
        output["slow_stops"] = list(SLOW_STOPS)
        return
    if TOOK:  # this run's seconds replace the recorded ones of the same tests
        recorded = _recorded_seconds()
        recorded.update({k: round(v, 3) for k, v in TOOK.items()})
        DURATIONS.parent.mkdir(parents=True, exist_ok=True)
        written = DURATIONS.with_suffix(f".{os.getpid()}.tmp")
        written.write_text(json.dumps(recorded, sort_keys=True))
        written.replace(DURATIONS)


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane | None]:
    """The local control plane this session started; None when KUBECONFIG names one."""
    if os.environ.get("KUBECONFIG"):
        yield None
        return
    plane = ControlPlane(default_state_dir(f"pytest-{os.getpid()}"))
    try:
        plane.up()
        yield plane
    finally:
        plane.down()


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane | None) -> Path:
    return control_plane.kubeconfig if control_plane else Path(os.environ["KUBECONFIG"])


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    given = os.environ.get("DATABASE_URL")
    if given:
        yield given
        return
    with postgres_root("postgres") as root:
        server = LocalPostgres(root)
        try:
            yield server.up()
        finally:
            server.down()


@pytest.fixture
def own_postgres() -> Iterator[LocalPostgres]:
    """An embedded server of the test's own, free to stop and start (deleted afterwards)."""
    with postgres_root("own-postgres") as root:
        server = LocalPostgres(root)
        try:
            server.up()
            yield server
        finally:
            server.down()


@pytest.fixture
def unique_name() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def kube_api(kubeconfig: Path) -> client.ApiClient:
    return api_client(kubeconfig)


@pytest.fixture(scope="session")
def crd(kube_api: client.ApiClient) -> None:
    install_crd(kube_api)


@pytest.fixture(scope="session")
def user_roles(kube_api: client.ApiClient) -> list[str]:
    """The chart's user ClusterRoles (trainingjob editor and viewer), in the cluster."""
    return install_user_roles(kube_api)


@pytest.fixture
def queues(kube_api: client.ApiClient, crd: None) -> Iterator[Callable[..., str]]:
    """make(**spec) creates a TrainingQueue (cluster-scoped) with a unique name; all are
    deleted afterwards."""
    custom = client.CustomObjectsApi(kube_api)
    made: list[str] = []

    def make(**spec: Any) -> str:
        name = f"q-{uuid.uuid4().hex[:6]}"
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingQueue",
                "metadata": {"name": name}, "spec": spec}  # fmt: skip
        custom.create_cluster_custom_object(GROUP, VERSION, "trainingqueues", body)
        made.append(name)
        return name

    yield make
    for name in made:
        custom.delete_cluster_custom_object(GROUP, VERSION, "trainingqueues", name)


@pytest.fixture
def namespace(kube_api: client.ApiClient, unique_name: str) -> Iterator[str]:
    with temporary_namespace(kube_api, unique_name) as name:
        yield name


@pytest.fixture
def jobs(kube_api: client.ApiClient, namespace: str, crd: None) -> Jobs:
    return Jobs(kube_api, namespace)


def _starter(
    cls: type[OperatorProcess] | type[ApiProcess],
    *,
    kubeconfig: Path,
    namespace: str,
    database_url: str,
    log_path: Path,
    item: pytest.Item,
) -> Iterator[Callable[..., Any]]:
    """A fixture body: start(**env) starts a service and waits until it is ready
    (wait=False: the caller waits, starting another meanwhile); all are stopped
    afterwards."""
    started: list[OperatorProcess | ApiProcess] = []
    item.stash.setdefault(SERVICE_LOGS, []).append(log_path)

    def start(*, database: str | None = database_url, wait: bool = True, **env: str) -> Any:
        process = cls(
            kubeconfig=kubeconfig,
            namespace=namespace,
            database_url=database,
            log_path=log_path,
            env=env,
        )
        started.append(process)
        return process.start(wait=wait)

    yield start
    for process in started:
        process.stop()
    for process in started:
        assert process.thread_safety_violations() == [], f"{process.module}: loop state touched"


@pytest.fixture
def start_operator(
    kubeconfig: Path,
    namespace: str,
    database_url: str,
    tmp_path: Path,
    crd: None,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., OperatorProcess]]:
    """Start the operator for the test's namespace: start_operator(SHUNTER_MAX_RUNNING="2")."""
    yield from _starter(
        OperatorProcess,
        kubeconfig=kubeconfig,
        namespace=namespace,
        database_url=database_url,
        log_path=tmp_path / "operator.log",
        item=request.node,
    )


@pytest.fixture
def start_api(
    kubeconfig: Path,
    namespace: str,
    database_url: str,
    tmp_path: Path,
    crd: None,
    request: pytest.FixtureRequest,
) -> Iterator[Callable[..., ApiProcess]]:
    """Start the API for the test's namespace (auth off unless SHUNTER_API_AUTH is given)."""
    yield from _starter(
        ApiProcess,
        kubeconfig=kubeconfig,
        namespace=namespace,
        database_url=database_url,
        log_path=tmp_path / "api.log",
        item=request.node,
    )


@pytest.fixture
def node_pool(kube_api: client.ApiClient) -> Iterator[NodePool]:
    """kwok GPU nodes of the test's own pool (empty until it adds some)."""
    pool = NodePool(kube_api)
    try:
        yield pool
    finally:
        pool.remove()
