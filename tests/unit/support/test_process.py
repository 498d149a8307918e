"""Services forked from the fork server start as `python -m MODULE` would: their own
environment (the Kubernetes clients' default kubeconfig included), arguments and log."""

from __future__ import annotations

from pathlib import Path

from tests.support.polling import wait_for
from tests.support.process import SLOW_STOPS, ServiceProcess


class Echo(ServiceProcess):
    module = "tests.unit.support.echo_service"


def echo(tmp_path: Path, *args: str, kind: type[Echo] = Echo) -> Echo:
    return kind(
        kubeconfig=tmp_path / "kubeconfig", database_url=None, log_path=tmp_path / "echo.log",
        env={"SHUNTER_ECHO": "mine"}, args=args,
    )  # fmt: skip


def test_a_forked_service_has_its_own_environment_arguments_and_log(tmp_path: Path):
    service = echo(tmp_path, "--flag")
    service.spawn()
    wait_for(lambda: not service.running(), timeout=60, what="the service to end")
    kubeconfig = str(tmp_path / "kubeconfig")
    assert service.log().splitlines() == [
        *[f"kubeconfig {kubeconfig}"] * 4,
        "env mine 1",
        "argv ['--flag'] __main__",
        "to stderr",
    ]


def test_kill_ends_a_service_at_once(tmp_path: Path):
    service = echo(tmp_path, "--hang")
    service.spawn()
    wait_for(lambda: "hanging" in service.log(), timeout=60, what="the service to hang")
    service.kill()
    assert not service.running()


def slow_stop(service: ServiceProcess) -> str:
    """Start the service (one that hangs and ignores SIGTERM), stop it, and take the
    one slow-stop report it made (reported here, not in the session's summary)."""
    service.stop_notice, service.stop_timeout = 0.5, 2.0
    service.spawn()
    wait_for(lambda: "hanging" in service.log(), timeout=60, what="the service to hang")
    before = len(SLOW_STOPS)
    service.stop()
    assert not service.running()
    [entry] = SLOW_STOPS[before:]
    del SLOW_STOPS[before:]
    return entry


def test_a_service_still_running_after_sigterm_is_reported_with_its_stacks_then_killed(
    tmp_path: Path,
):
    entry = slow_stop(echo(tmp_path, "--hang", "--ignore-term"))
    assert entry.startswith(f"{Echo.module} ({tmp_path / 'echo.log'}): still running 0.5 s")
    assert "echo_service.py" in entry  # where it waits: its own line, signal.pause()


class DumpingEcho(Echo):
    dumps_tasks = True


def test_a_slow_stop_of_a_service_that_dumps_its_tasks_adds_them_to_the_report(
    tmp_path: Path,
):
    entry = slow_stop(echo(tmp_path, "--hang", "--ignore-term", "--dump-tasks", kind=DumpingEcho))
    # No event loop runs in it: the dump says so, and the report carries it whole.
    assert "--- asyncio tasks (0) on SIGUSR1 ---\n--- end of asyncio tasks ---" in entry
