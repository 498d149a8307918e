"""Detached child processes with pid files, so a later command can stop them.

Each process runs in its own session (it outlives the command that started it) and
writes to its own log. Stopping checks that the pid still runs the recorded binary
before signalling, so a recycled pid is never killed by mistake.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

# Popen objects of the processes this interpreter started: kept so they are not
# garbage-collected while running (a ResourceWarning) and can be reaped on stop.
_children: dict[int, subprocess.Popen[bytes]] = {}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    name: str, argv: Sequence[str], *, state_dir: Path, env: Mapping[str, str] | None = None
) -> int:
    """Start argv detached, logging to state_dir/logs/NAME.log; return its pid."""
    logs = state_dir / "logs"
    pids = state_dir / "pids"
    logs.mkdir(parents=True, exist_ok=True)
    pids.mkdir(parents=True, exist_ok=True)
    with (logs / f"{name}.log").open("ab") as log:
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            env=dict(env) if env is not None else None,
        )
    _children[proc.pid] = proc
    (pids / f"{name}.pid").write_text(f"{proc.pid}\n{argv[0]}\n")
    (pids / f"{name}.argv").write_text(json.dumps({"argv": list(argv), "env": env}))
    return proc.pid


def _recorded(pid_file: Path) -> tuple[int, str] | None:
    try:
        pid_text, binary = pid_file.read_text().splitlines()[:2]
        return int(pid_text), binary
    except (OSError, ValueError):
        return None


def _runs(pid: int, binary: str) -> bool:
    """Whether pid is alive and still runs the recorded program.

    The program is matched against the command line, not /proc/PID/exe: a Python
    entry point runs as the interpreter with the script as its first argument. A
    child of this interpreter is asked directly: right after fork, before exec, its
    command line is still ours.
    """
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    if state == "Z":
        return False  # exited, not yet reaped
    return binary.encode() in argv[:2]


def alive(name: str, *, state_dir: Path) -> bool:
    recorded = _recorded(state_dir / "pids" / f"{name}.pid")
    return recorded is not None and _runs(*recorded)


def log_tail(name: str, *, state_dir: Path, lines: int = 30) -> str:
    try:
        text = (state_dir / "logs" / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def stop(name: str, *, state_dir: Path, timeout: float = 15.0) -> None:
    """SIGTERM the process group, then SIGKILL it if it outlives timeout."""
    pid_file = state_dir / "pids" / f"{name}.pid"
    recorded = _recorded(pid_file)
    if recorded is not None and _runs(*recorded):
        pid, binary = recorded
        _signal_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _runs(pid, binary) and time.monotonic() < deadline:
            _reap(pid)
            time.sleep(0.1)
        if _runs(pid, binary):
            _signal_group(pid, signal.SIGKILL)
            while _runs(pid, binary):
                _reap(pid)
                time.sleep(0.05)
    pid_file.unlink(missing_ok=True)
    if recorded is not None and recorded[0] in _children:
        _children.pop(recorded[0]).wait()


def recorded_argv(name: str, *, state_dir: Path) -> list[str]:
    argv: list[str] = json.loads((state_dir / "pids" / f"{name}.argv").read_text())["argv"]
    return argv


def restart(name: str, *, state_dir: Path, flags: Mapping[str, str] | None = None) -> int:
    """Stop a process and start it again with the same command line and environment;
    `--name=value` flags in `flags` replace the recorded ones or are added."""
    recorded = json.loads((state_dir / "pids" / f"{name}.argv").read_text())
    argv = list(recorded["argv"])
    for flag, value in (flags or {}).items():
        argv = [a for a in argv if a.split("=", 1)[0] != flag] + [f"{flag}={value}"]
    stop(name, state_dir=state_dir)
    return start(name, argv, state_dir=state_dir, env=recorded["env"])


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


def _reap(pid: int) -> None:
    """Collect the exit status when the process is our own child (else a zombie lingers)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
