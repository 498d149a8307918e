"""Services forked from the fork server start as `python -m MODULE` would: their own
environment (the Kubernetes clients' default kubeconfig included), arguments and log."""

from __future__ import annotations

from pathlib import Path

from tests.support.polling import wait_for
from tests.support.process import ServiceProcess


class Echo(ServiceProcess):
    module = "tests.unit.support.echo_service"


def echo(tmp_path: Path, *args: str) -> Echo:
    return Echo(
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
