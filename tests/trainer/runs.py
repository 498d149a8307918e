"""Trainer processes for the tests: the image's launcher started as in a Pod, with the
Pod's environment, its JSON log lines read back from a file.

A `Launch` is one Pod: `python -m standalone_trainer.launch` with NNODES,
NPROC_PER_NODE, ... in its environment, which starts torchrun (or execs the single
trainer). Each rank's pid comes from its `start` line, so a test can signal or freeze
one rank the way a node would. Everything left running is killed at cleanup.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

TRAINER_DIR = Path(__file__).resolve().parents[2] / "trainer-image"
EXIT_COMPLETED, EXIT_CHECKPOINTED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 75, 2, 143


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def exited(pid: int) -> bool:
    """Gone, or a zombie its parent has not reaped yet (torchrun reaps in rank order)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


class Launch:
    def __init__(
        self, python: str, checkpoints: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        checkpoints.parent.mkdir(parents=True, exist_ok=True)
        self.log_path = checkpoints.parent / f"log-{time.monotonic_ns()}.jsonl"
        self.termination = checkpoints.parent / f"termination-{time.monotonic_ns()}"
        command = [
            python,
            "-m",
            "standalone_trainer.launch",
            "--checkpoint-dir",
            str(checkpoints),
            "--termination-log",
            str(self.termination),
            *args,
        ]
        pod_env = {k: v for k, v in os.environ.items() if not _torchrun_variable(k)}
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command,
                cwd=TRAINER_DIR,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**pod_env, **(env or {})},
            )

    def output(self) -> str:
        return self.log_path.read_text()

    def events(self, kind: str | None = None, rank: int | None = None) -> list[dict[str, Any]]:
        lines = self.output().splitlines()
        parsed = [json.loads(line) for line in lines if line.startswith('{"event"')]
        return [
            e
            for e in parsed
            if (kind is None or e["event"] == kind) and (rank is None or e.get("rank") == rank)
        ]

    def losses(self) -> dict[int, float]:
        return {e["step"]: e["loss"] for e in self.events("step")}

    def pid_of(self, rank: int) -> int:
        return int(self.events("start", rank=rank)[0]["pid"])

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """What the kubelet does to the container's PID 1."""
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        """Cleanup: the launcher, torchrun and every rank that logged its pid."""
        pids = [int(e["pid"]) for e in self.events("start") if "pid" in e]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _torchrun_variable(name: str) -> bool:
    """The test process's own environment must not make the trainer distributed."""
    return name in {
        "RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT",
        "NNODES", "NODE_RANK", "NPROC_PER_NODE",
    } or name.startswith("PET_")  # fmt: skip
