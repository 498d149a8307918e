"""The trainer data-parallel under torchrun on the CPU (gloo), started the way a Pod
starts it: the image's launcher reads NNODES, NPROC_PER_NODE, NODE_RANK, MASTER_ADDR,
MASTER_PORT and runs torchrun.

- one Pod x 2 processes (`torchrun --standalone --nproc-per-node 2`): SIGTERM to the
  Pod's PID 1 stops both ranks before the same step, rank 0 checkpoints once, both
  exit 75, and the resumed run follows the uninterrupted one bit for bit;
- two Pods x 1 process (static rendezvous on MASTER_ADDR:MASTER_PORT): only the Pod
  of rank 1 is signalled, rank 0 still stops at the same step and checkpoints into its
  own volume, both Pods exit 75;
- a rank blocked in a collective (its peer frozen) exits 143 on the second signal.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.polling import wait_for
from tests.trainer.runs import (
    EXIT_CHECKPOINTED,
    EXIT_COMPLETED,
    EXIT_INTERRUPTED,
    Launch,
    exited,
    free_port,
)

STEPS = "40"
ONE_POD_TWO_PROCS = {"NNODES": "1", "NPROC_PER_NODE": "2"}


@pytest.fixture
def launch(python: str) -> Iterator[Callable[..., Launch]]:
    started: list[Launch] = []

    def start(checkpoints: Path, *args: str, env: dict[str, str]) -> Launch:
        run = Launch(python, checkpoints, *args, env=env)
        started.append(run)
        return run

    yield start
    for run in started:
        run.kill()


class Baseline:
    """The uninterrupted 2-process run every other run is compared with. It starts with
    the first test that needs it and runs alongside that test's own run (the machine
    waits on torch imports and rendezvous more than it computes); `done()` joins it."""

    def __init__(self, python: str, directory: Path) -> None:
        args = ("--steps", STEPS, "--checkpoint-every", "1000")
        self.run = Launch(python, directory / "ckpt", *args, env=ONE_POD_TWO_PROCS)

    def done(self) -> Launch:
        assert self.run.wait() == EXIT_COMPLETED, self.run.output()
        assert sorted(self.run.losses()) == list(range(1, int(STEPS) + 1))
        return self.run


@pytest.fixture(scope="module")
def baseline(python: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Baseline]:
    started = Baseline(python, tmp_path_factory.mktemp("baseline"))
    yield started
    started.run.kill()


class Merged:
    """The log lines of several Pods as one job's."""

    def __init__(self, *pods: Launch) -> None:
        self.pods = pods

    def events(self, kind: str | None = None, rank: int | None = None) -> list[dict[str, Any]]:
        return [e for pod in self.pods for e in pod.events(kind, rank)]

    def output(self) -> str:
        return "\n".join(pod.output() for pod in self.pods)


def digests(run: Launch | Merged, kind: str) -> set[str]:
    return {e["params_sha256"] for e in run.events(kind)}


def the_stop(run: Launch | Merged) -> int:
    """The step every rank stopped at (they must agree)."""
    stopped = {e["rank"]: e for e in run.events("stopped")}
    assert sorted(stopped) == [0, 1], run.output()
    assert {e["exit_code"] for e in stopped.values()} == {EXIT_CHECKPOINTED}
    assert len(digests(run, "stopped")) == 1  # DDP kept the weights equal
    steps = {e["step"] for e in stopped.values()}
    assert len(steps) == 1, f"ranks stopped at different steps: {stopped}"
    return steps.pop()


def matches(run: Launch, expected: dict[int, float]) -> bool:
    got = run.losses()
    return bool(got) and got == {step: expected[step] for step in got}


def test_sigterm_checkpoints_once_from_rank_0_and_the_resumed_run_is_bit_for_bit_the_same(
    launch: Callable[..., Launch], baseline: Baseline, tmp_path: Path
):
    ckpt = tmp_path / "ckpt"
    args = ("--steps", STEPS, "--checkpoint-every", "1000")
    first = launch(ckpt, *args, "--step-delay", "0.05", env=ONE_POD_TWO_PROCS)
    wait_for(lambda: len(first.events("step")) >= 10, timeout=90, what="10 steps")
    assert "--standalone" in first.events("launch")[0]["command"]
    sent = time.monotonic()
    first.signal(signal.SIGTERM)  # the kubelet signals PID 1; torchrun forwards it
    assert first.wait(timeout=60) == EXIT_CHECKPOINTED, first.output()
    took = time.monotonic() - sent

    saved = the_stop(first)
    assert 10 <= saved < int(STEPS)
    assert {e["rank"] for e in first.events("stop_requested")} == {0, 1}
    assert [(e["rank"], e["step"]) for e in first.events("checkpoint")] == [(0, saved)]
    assert sorted(p.name for p in ckpt.iterdir()) == [f"ckpt-{saved:09d}.pt"]
    assert first.events("launch_exit")[0]["ranks"] == [EXIT_CHECKPOINTED] * 2
    assert first.termination.read_text().startswith('{"status": "checkpointed"')
    assert took < 20, f"took {took:.1f}s to stop"
    expected = baseline.done().losses()
    assert matches(first, expected)

    second = launch(ckpt, *args, env=ONE_POD_TWO_PROCS)
    assert second.wait() == EXIT_COMPLETED, second.output()
    assert {(e["rank"], e["step"]) for e in second.events("resumed")} == {(0, saved), (1, saved)}
    assert min(second.losses()) == saved + 1
    assert matches(second, expected)  # bit for bit
    assert digests(second, "completed") == digests(baseline.done(), "completed")


def test_a_pod_never_signalled_stops_at_the_same_step_as_the_signalled_one(
    launch: Callable[..., Launch], baseline: Baseline, tmp_path: Path
):
    port = str(free_port())
    pods = []
    for node_rank in (0, 1):
        env = {
            "NNODES": "2",
            "NODE_RANK": str(node_rank),
            "NPROC_PER_NODE": "1",
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": port,
        }
        ckpt = tmp_path / f"pod-{node_rank}" / "ckpt"  # each Pod its own volume
        pods.append(launch(ckpt, "--steps", STEPS, "--step-delay", "0.05", env=env))
    pod0, pod1 = pods
    wait_for(lambda: len(pod0.events("step")) >= 10, timeout=90, what="10 steps")
    pod1.signal(signal.SIGTERM)  # only the Pod of rank 1 is told to stop

    assert pod1.wait(timeout=60) == EXIT_CHECKPOINTED, pod1.output()
    assert pod0.wait(timeout=60) == EXIT_CHECKPOINTED, pod0.output()
    merged = Merged(pod0, pod1)
    saved = the_stop(merged)
    assert [e["rank"] for e in merged.events("stop_requested")] == [1]
    assert [(e["rank"], e["step"]) for e in merged.events("checkpoint")] == [(0, saved)]
    assert (tmp_path / "pod-0" / "ckpt" / f"ckpt-{saved:09d}.pt").exists()
    assert not (tmp_path / "pod-1" / "ckpt").exists()
    # torchrun on the unsignalled node saw its worker's 75 as a failure (exit 1);
    # the launcher turns the agreed code back into the Pod's exit code.
    assert pod0.events("launch_exit")[0]["torchrun_exit_code"] != EXIT_CHECKPOINTED
    # 2 Pods x 1 process and 1 Pod x 2 processes are the same computation.
    assert matches(pod0, baseline.done().losses())


def test_a_rank_hanging_in_a_collective_exits_143_at_once_on_the_second_signal(
    launch: Callable[..., Launch], tmp_path: Path
):
    ckpt = tmp_path / "ckpt"
    run = launch(ckpt, "--steps", "100000", "--step-delay", "0.05", env=ONE_POD_TWO_PROCS)
    wait_for(lambda: run.events("step"), timeout=90, what="the first step")
    rank0, rank1 = run.pid_of(0), run.pid_of(1)
    os.kill(rank0, signal.SIGSTOP)  # a peer that hangs: rank 1 blocks in the next collective
    run.signal(signal.SIGTERM)
    wait_for(lambda: run.events("stop_requested", rank=1), timeout=30, what="rank 1's first signal")
    assert not run.events("stopped")  # it cannot agree with a frozen peer: it hangs

    sent = time.monotonic()
    run.signal(signal.SIGTERM)  # the second signal: the launcher relays it to every rank
    wait_for(lambda: exited(rank1), timeout=10, what="rank 1 to exit")
    took = time.monotonic() - sent
    assert took < 3, f"rank 1 took {took:.1f}s to exit on the second signal"
    assert run.events("interrupted", rank=1)[0]["exit_code"] == EXIT_INTERRUPTED
    assert not exited(rank0)
    os.kill(rank0, signal.SIGKILL)  # the kubelet's force kill after the grace period
    assert run.wait(timeout=60) == EXIT_INTERRUPTED, run.output()
    assert run.events("launch_exit")[0]["ranks"] == [None, EXIT_INTERRUPTED]
    assert not list(ckpt.glob("ckpt-*.pt"))
