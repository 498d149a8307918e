"""`python -m standalone_trainer.launch`: the image's entry point, one per Pod.

It reads the Pod's environment (set by the operator, like Kubeflow Trainer's PyTorch
runtime) and starts the trainer accordingly:

| variable | meaning | default |
| --- | --- | --- |
| NNODES | Pods in the job (torchrun --nnodes) | 1 |
| NODE_RANK | this Pod's index, 0..NNODES-1 (torchrun --node-rank) | 0 |
| NPROC_PER_NODE | trainer processes in this Pod (torchrun --nproc-per-node), one per GPU | 1 |
| MASTER_ADDR | a stable address of Pod 0 (torchrun --master-addr); required if NNODES > 1 | |
| MASTER_PORT | the rendezvous port on Pod 0 (torchrun --master-port) | 29500 |
| WORLD_SIZE | optional check: must equal NNODES x NPROC_PER_NODE | |

Each name may also be given with torchrun's own `PET_` prefix (PET_NNODES, ...); the
plain name wins. Inside the workers torchrun sets RANK, LOCAL_RANK and WORLD_SIZE
(= NNODES x NPROC_PER_NODE) itself.

- One process in total (the default): exec `python -m standalone_trainer ARGS`, so the
  trainer is the container's PID 1 exactly as for a single-node job.
- One Pod, several processes: `torchrun --standalone --nnodes 1 --nproc-per-node N`.
- Several Pods: `torchrun --nnodes N --node-rank R --nproc-per-node P --rdzv-backend
  static --master-addr A --master-port P` (node rank 0 hosts the rendezvous store).

The launcher stays the parent of torchrun (it does not exec it) for the exit code:
torchrun exits 1 after forwarding a SIGTERM, and on a node that was not signalled it
sees its workers' 75 as a failure; the workers record their exit codes (see
`status.py`) and the launcher exits with the code all local ranks agree on (75 after a
checkpointed stop, 0 when completed), else with torchrun's. The first SIGTERM/SIGINT
is forwarded to torchrun, which forwards it to every worker; a second one goes to the
workers directly (they exit at once) and the launcher exits 143 unless they all
reported one code. torchrun waits SHUNTER_SHUTDOWN_TIMEOUT_SECONDS (default 3600)
for its workers after a signal: the Pod's grace period, not torchrun, bounds a stop.

It never imports torch (torchrun runs as `python -m torch.distributed.run`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from shunter_trainer.events import Log
from standalone_trainer import EXIT_INTERRUPTED, EXIT_USAGE, status

DEFAULT_PORT = 29500
# How long torchrun may take to tear down once every local worker has reported its
# exit code, and how often the launcher looks.
TEARDOWN_SECONDS = 10.0
WAIT_STEP_SECONDS = 0.2
DEFAULT_SHUTDOWN_TIMEOUT = 3600


class LaunchError(Exception):
    """The Pod's environment does not describe a job torchrun can start."""


@dataclass(frozen=True)
class Plan:
    nnodes: int
    node_rank: int
    nproc_per_node: int
    master_addr: str | None
    master_port: int
    shutdown_timeout: int

    @property
    def processes(self) -> int:
        return self.nnodes * self.nproc_per_node


def _value(env: Mapping[str, str], name: str) -> str | None:
    return env.get(name) or env.get(f"PET_{name}") or None


def _number(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = _value(env, name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise LaunchError(f"{name}={raw!r} is not a number") from exc
    if value < minimum:
        raise LaunchError(f"{name}={value} must be at least {minimum}")
    return value


def plan(env: Mapping[str, str]) -> Plan:
    """What to start, from the Pod's environment; LaunchError when inconsistent."""
    nnodes = _number(env, "NNODES", 1, 1)
    nproc = _number(env, "NPROC_PER_NODE", 1, 1)
    node_rank = _number(env, "NODE_RANK", 0, 0)
    if node_rank >= nnodes:
        raise LaunchError(f"NODE_RANK={node_rank} must be below NNODES={nnodes}")
    world = env.get("WORLD_SIZE")
    if world and world != str(nnodes * nproc):
        raise LaunchError(f"WORLD_SIZE={world}, but NNODES x NPROC_PER_NODE is {nnodes} x {nproc}")
    addr = _value(env, "MASTER_ADDR")
    if nnodes > 1 and not addr:
        raise LaunchError(f"MASTER_ADDR is required with NNODES={nnodes}")
    return Plan(
        nnodes=nnodes,
        node_rank=node_rank,
        nproc_per_node=nproc,
        master_addr=addr,
        master_port=_number(env, "MASTER_PORT", DEFAULT_PORT, 1),
        shutdown_timeout=_number(
            env, "SHUNTER_SHUTDOWN_TIMEOUT_SECONDS", DEFAULT_SHUTDOWN_TIMEOUT, 1
        ),
    )


def torchrun_command(p: Plan, args: list[str]) -> list[str]:
    command = [sys.executable, "-m", "torch.distributed.run"]
    if p.nnodes == 1:
        command += ["--standalone", "--nnodes", "1"]
    else:
        assert p.master_addr is not None
        command += [
            "--nnodes", str(p.nnodes),
            "--node-rank", str(p.node_rank),
            "--rdzv-backend", "static",
            "--master-addr", p.master_addr,
            "--master-port", str(p.master_port),
        ]  # fmt: skip
    command += [
        "--nproc-per-node", str(p.nproc_per_node),
        "--max-restarts", "0",
        "--shutdown-timeout", str(p.shutdown_timeout),
        "-m", "standalone_trainer", *args,
    ]  # fmt: skip
    return command


class Supervisor:
    """Runs torchrun, relays stop signals, and turns the workers' codes into ours."""

    def __init__(self, p: Plan, log: Log) -> None:
        self.plan = p
        self.log = log
        self.signals = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.directory: Path | None = None
        try:
            self.directory = Path(tempfile.mkdtemp(prefix="shunter-status-"))
        except OSError as exc:  # a read-only /tmp and no TMPDIR: torchrun's code it is
            log("warning", message=f"no status directory, exit codes are torchrun's: {exc}")

    def run(self, command: list[str]) -> int:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._relay)
        self.log("launch", command=["torchrun", *command[3:]], processes=self.plan.processes)
        env = dict(os.environ)
        if self.directory is not None:
            env[status.ENV] = str(self.directory)
        try:
            self.proc = subprocess.Popen(command, env=env)
            if self.signals:  # a signal came before torchrun existed
                self.proc.send_signal(signal.SIGTERM)
            return self._exit_code(self._wait(self.proc))
        finally:
            if self.directory is not None:
                shutil.rmtree(self.directory, ignore_errors=True)

    def _wait(self, proc: subprocess.Popen[bytes]) -> int:
        """torchrun's exit code, waited for no longer than TEARDOWN_SECONDS once every
        local worker has reported its exit code. (A gloo worker has been seen to hang
        for minutes on its way out after reporting, completed or checkpointed, and
        torchrun waits for it: a Pod would hold its GPUs that long for nothing.)"""
        reported_at: float | None = None
        while True:
            try:
                return proc.wait(timeout=WAIT_STEP_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            if not self._all_reported():
                continue
            reported_at = reported_at or time.monotonic()
            if time.monotonic() - reported_at >= TEARDOWN_SECONDS:
                self.log("warning", message=(
                    f"torchrun still running {TEARDOWN_SECONDS:.0f}s after every worker"
                    " reported its exit code: stopped with SIGKILL"))  # fmt: skip
                proc.kill()
                return proc.wait()

    def _all_reported(self) -> bool:
        return all(
            isinstance(self._status(i).get("exit_code"), int)
            for i in range(self.plan.nproc_per_node)
        )

    def _relay(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1
        if self.signals == 1:
            if self.proc is not None:
                self.proc.send_signal(signum)  # torchrun forwards it to every worker
            return
        # torchrun would only stop waiting for its workers: signal them directly.
        for local_rank in range(self.plan.nproc_per_node):
            pid = self._status(local_rank).get("pid")
            if isinstance(pid, int):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signum)

    def _status(self, local_rank: int) -> dict[str, Any]:
        return status.read(self.directory, local_rank) if self.directory else {}

    def _exit_code(self, returncode: int) -> int:
        codes = [self._status(i).get("exit_code") for i in range(self.plan.nproc_per_node)]
        agreed = {c for c in codes if isinstance(c, int)}
        if len(agreed) == 1 and None not in codes:
            code = agreed.pop()
        elif self.signals >= 2:
            code = EXIT_INTERRUPTED
        else:
            code = returncode if returncode >= 0 else 128 - returncode
        self.log("launch_exit", exit_code=code, torchrun_exit_code=returncode, ranks=codes)
        return code


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    try:
        p = plan(os.environ)
    except LaunchError as exc:
        print(f"standalone_trainer.launch: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if p.processes == 1 or os.environ.get("LOCAL_RANK"):
        # One process, or already a torchrun worker: the trainer itself, as PID 1.
        os.execv(sys.executable, [sys.executable, "-m", "standalone_trainer", *args])
    log = Log(node_rank=p.node_rank)
    return Supervisor(p, log).run(torchrun_command(p, args))


if __name__ == "__main__":
    sys.exit(main())
