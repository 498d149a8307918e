"""A Shunter service (operator or API) run as a subprocess, as in production."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path


class ServiceProcess:
    """`python -m MODULE ARGS` with its own environment and log file."""

    module = ""

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
        self.proc: subprocess.Popen[bytes] | None = None

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", self.module, *self.args],
                env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )  # fmt: skip

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def thread_safety_violations(self) -> list[str]:
        """Log lines of asyncio's debug mode catching a call from the wrong thread."""
        return [line for line in self.log().splitlines() if "Non-thread-safe operation" in line]

    def kill(self) -> None:
        """SIGKILL: no cleanup at all, as a crash."""
        if self.proc is not None and self.running():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.running():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
