"""A Shunter service (operator or API) run as a process of its own, as in production.

Each start is a new process (kill -9 kills it, a restart begins from nothing, its log
is its own file), but not a new interpreter: a fork server that has imported the
services' heavy dependencies once (kopf, the Kubernetes clients, FastAPI, uvicorn,
psycopg) forks each one. An interpreter importing them costs about 3 CPU seconds, and a
suite starts a few hundred services on two cores. Nothing the services configure is
imported early: settings, logging and the event loop are made in the child from its own
environment, exactly as `python -m MODULE` would.
"""

from __future__ import annotations

import multiprocessing
import os
import runpy
import shutil
import signal
import subprocess
import sys
from multiprocessing.context import ForkServerContext
from multiprocessing.process import BaseProcess
from pathlib import Path

from tests.support.polling import ConditionTimeout, wait_for

# Imported by the fork server once. Handler registration (kopf's registry) happens at
# import of shunter.operator.handlers, and main() imports it too: registered once.
PRELOAD = [
    "kopf",
    "kubernetes",
    "kubernetes_asyncio",
    "fastapi",
    "uvicorn",
    "psycopg",
    "shunter.operator.handlers",
    "shunter.api.app",
    "shunter.api.settings",
]

# The one setting of theirs read at import, not at use: the Kubernetes clients' default
# kubeconfig path ($KUBECONFIG). Set again in each child from its own environment.
KUBECONFIG_AT_IMPORT = [
    "kubernetes.config.kube_config",
    "kubernetes.config",
    "kubernetes_asyncio.config.kube_config",
    "kubernetes_asyncio.config",
]

_forkserver: ForkServerContext | None = None


def _context() -> ForkServerContext:
    global _forkserver
    if _forkserver is None:
        _forkserver = multiprocessing.get_context("forkserver")
        _forkserver.set_forkserver_preload(PRELOAD)
    return _forkserver


def _serve(module: str, args: tuple[str, ...], env: dict[str, str], log_path: str) -> None:
    """In the forked child: become `python -m MODULE ARGS` with this environment,
    stdout and stderr appended to the log, unbuffered (as PYTHONUNBUFFERED=1)."""
    os.environ.clear()
    os.environ.update(env)
    default_kubeconfig = env.get("KUBECONFIG", str(Path.home() / ".kube/config"))
    for name in KUBECONFIG_AT_IMPORT:
        if name in sys.modules:  # else imported in this child, from its environment
            sys.modules[name].KUBE_CONFIG_DEFAULT_LOCATION = default_kubeconfig
    log = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (the process's own)
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


# A service should end within seconds of SIGTERM (its cleanup releases the Lease and
# closes its connections). One still running after STOP_NOTICE seconds has its threads'
# stacks taken (py-spy) for the session's summary (tests/conftest.py), then is killed
# at 30 s (stop_timeout): a test passes either way, but the next run says where it hung.
STOP_NOTICE = 8.0
SLOW_STOPS: list[str] = []


def stacks(pid: int) -> str:
    """Every thread's Python stack of a running process (py-spy, from the test extras)."""
    spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if spy is None:
        return "(py-spy is not installed: no stacks)"
    try:
        found = subprocess.run([spy, "dump", "--pid", str(pid)], capture_output=True, text=True,
                               timeout=30, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return "(py-spy dump timed out)"
    return (found.stdout + found.stderr).strip() + "\n" + signal_state(pid)


def signal_state(pid: int) -> str:
    """The process's signal masks (pending, blocked, ignored, caught) and each of its
    threads' pending and blocked ones: whether a SIGTERM arrived and where it waits."""
    lines = []
    for status in (
        Path(f"/proc/{pid}/status"),
        *sorted(Path(f"/proc/{pid}/task").glob("*/status")),
    ):
        try:
            text = status.read_text()
        except OSError:
            continue
        fields = dict(line.split(":\t", 1) for line in text.splitlines() if ":\t" in line)
        keys = ("ShdPnd", "SigPnd", "SigBlk", "SigIgn", "SigCgt")
        lines.append(f"{status.parent.name} {fields.get('Name', '').strip()}: "
                     + " ".join(f"{k}={fields.get(k, '?').strip()}" for k in keys))  # fmt: skip
    return "\n".join(lines)


class ServiceProcess:
    """`python -m MODULE ARGS` with its own environment and log file."""

    module = ""
    stop_notice = STOP_NOTICE  # seconds after SIGTERM before its stacks are taken
    dumps_tasks = False  # SIGUSR1 writes its asyncio tasks' stacks to its log
    stop_timeout = 30.0  # seconds after SIGTERM before SIGKILL

    def __init__(
        self, *, kubeconfig: Path, database_url: str | None, log_path: Path,
        env: dict[str, str], args: tuple[str, ...] = (),
    ) -> None:  # fmt: skip
        self.log_path = log_path
        self.args = args
        # asyncio's debug mode turns any touch of loop state from another thread into a
        # logged RuntimeError; every test checks the log for it when it stops the service.
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONUNBUFFERED": "1",
                    "PYTHONASYNCIODEBUG": "1", **env}  # fmt: skip
        if database_url:
            self.env["DATABASE_URL"] = database_url
        else:
            self.env.pop("DATABASE_URL", None)
        self.proc: BaseProcess | None = None

    def spawn(self) -> None:
        self.proc = _context().Process(
            target=_serve,
            args=(self.module, self.args, self.env, str(self.log_path)),
            name=self.module,
            daemon=True,  # ended with the test session, whatever a test left running
        )
        self.proc.start()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.is_alive()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def thread_safety_violations(self) -> list[str]:
        """Log lines of asyncio's debug mode catching a call from the wrong thread."""
        return [line for line in self.log().splitlines() if "Non-thread-safe operation" in line]

    def _tasks(self) -> str:
        """Its asyncio tasks' stacks, written to its log on SIGUSR1 (a few seconds)."""
        if not self.dumps_tasks or self.proc is None or self.proc.pid is None:
            return ""
        before = len(self.log())
        os.kill(self.proc.pid, signal.SIGUSR1)

        def written() -> str | None:
            found = self.log()[before:]
            return found if "--- end of asyncio tasks ---" in found else None

        try:
            return "\n" + wait_for(written, timeout=5, what="its asyncio tasks after SIGUSR1")
        except ConditionTimeout as exc:
            return f"\n({exc})\n" + self.log()[before:]

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash."""
        if self.proc is not None and self.running():
            self.proc.kill()
            self.proc.join(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.running():
            self.proc.terminate()  # SIGTERM
            self.proc.join(timeout=self.stop_notice)
            if self.proc.is_alive():  # what it is doing instead goes in the summary
                where = stacks(self.proc.pid) + self._tasks()
                SLOW_STOPS.append(f"{self.module} ({self.log_path}): still running"
                                  f" {self.stop_notice:g} s after SIGTERM\n{where}")  # fmt: skip
                self.proc.join(timeout=self.stop_timeout - self.stop_notice)
            if self.proc.is_alive():
                self.proc.kill()
                self.proc.join()
