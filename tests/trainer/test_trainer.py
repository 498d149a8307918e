"""The trainer on the CPU with a tiny model: trains, stops cleanly on SIGTERM with a
checkpoint, resumes on the same loss trajectory, and survives corrupt checkpoints.

The trainer runs as a subprocess of the torch venv (`make trainer-venv`,
SHUNTER_TRAINER_PYTHON), as it runs in its Pod.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.support.polling import wait_for
from tests.trainer.runs import TRAINER_DIR

EXIT_CHECKPOINTED, EXIT_INTERRUPTED = 75, 143


class Run:
    def __init__(self, python: str, checkpoints: Path, *args: str) -> None:
        self.log_path = checkpoints.parent / f"log-{time.monotonic_ns()}.jsonl"
        self.termination = checkpoints.parent / "termination-log"
        command = [
            python,
            "-m",
            "standalone_trainer",
            "--checkpoint-dir",
            str(checkpoints),
            "--termination-log",
            str(self.termination),
            *args,
        ]
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                command, cwd=TRAINER_DIR, stdout=log, stderr=subprocess.STDOUT
            )

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        lines = self.log_path.read_text().splitlines()
        parsed = [json.loads(line) for line in lines if line.startswith("{")]
        return [e for e in parsed if kind is None or e["event"] == kind]

    def wait(self, timeout: float = 120) -> int:
        return self.proc.wait(timeout=timeout)


def losses(run: Run) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in run.events("step")}


def test_trains_logs_progress_and_writes_a_summary(python: str, tmp_path: Path):
    run = Run(python, tmp_path / "ckpt", "--steps", "100", "--checkpoint-every", "40")
    assert run.wait() == 0
    steps = run.events("step")
    assert [e["step"] for e in steps] == list(range(1, 101))
    assert all(e["total"] == 100 for e in steps)
    assert steps[-1]["loss"] < steps[0]["loss"] / 5  # it really learns
    assert [e["step"] for e in run.events("checkpoint")] == [40, 80, 100]
    summary = json.loads(run.termination.read_text())
    assert summary["status"] == "completed"
    assert summary["step"] == 100
    assert run.events("start")[0]["device"] == "cpu"


def test_sigterm_checkpoints_and_resume_continues_the_same_trajectory(python: str, tmp_path: Path):
    baseline = Run(python, tmp_path / "baseline", "--steps", "60", "--checkpoint-every", "1000")
    assert baseline.wait() == 0

    ckpt = tmp_path / "interrupted"
    first = Run(python, ckpt, "--steps", "60", "--checkpoint-every", "1000", "--step-delay", "0.05")
    wait_for(lambda: len(first.events("step")) >= 15, timeout=60, what="15 steps")
    sent = time.monotonic()
    first.proc.send_signal(signal.SIGTERM)
    assert first.wait(timeout=30) == EXIT_CHECKPOINTED
    took = time.monotonic() - sent
    stopped = first.events("stopped")[0]
    saved = stopped["step"]
    assert 15 <= saved < 60
    assert first.events("checkpoint")[-1]["step"] == saved
    assert (ckpt / f"ckpt-{saved:09d}.pt").exists()
    assert took < 10, f"took {took:.1f}s to stop: well inside a 30 s grace period"
    assert json.loads(first.termination.read_text())["status"] == "checkpointed"

    second = Run(python, ckpt, "--steps", "60", "--checkpoint-every", "1000")
    assert second.wait() == 0
    assert second.events("resumed")[0]["step"] == saved
    resumed = losses(second)
    assert min(resumed) == saved + 1
    expected = losses(baseline)
    assert resumed == {step: expected[step] for step in resumed}  # bit for bit
    assert losses(first) == {step: expected[step] for step in losses(first)}


def test_corrupt_or_partial_checkpoints_are_skipped_with_a_warning(python: str, tmp_path: Path):
    ckpt = tmp_path / "ckpt"
    assert Run(python, ckpt, "--steps", "30", "--checkpoint-every", "10").wait() == 0
    newest = ckpt / "ckpt-000000030.pt"
    newest.write_bytes(newest.read_bytes()[:-100])  # a torn write

    run = Run(python, ckpt, "--steps", "40", "--checkpoint-every", "10")
    assert run.wait() == 0
    warnings = [e["message"] for e in run.events("warning")]
    assert any("ckpt-000000030.pt" in w and "bytes" in w for w in warnings)
    assert run.events("resumed")[0]["step"] == 20
    # The torn file was rewritten whole at step 30; the two newest are kept.
    assert sorted(p.name for p in ckpt.glob("ckpt-*.pt")) == [newest.name, "ckpt-000000040.pt"]

    for path in ckpt.glob("ckpt-*.pt"):
        path.write_bytes(b"garbage")
    fresh = Run(python, ckpt, "--steps", "5")
    assert fresh.wait() == 0
    assert fresh.events("resumed") == []
    assert len(fresh.events("warning")) == 2
    assert losses(fresh)[1] > 0


def test_a_second_signal_exits_at_once_without_a_checkpoint(python: str, tmp_path: Path):
    ckpt = tmp_path / "ckpt"
    run = Run(python, ckpt, "--steps", "10", "--step-delay", "5", "--checkpoint-every", "1000")
    wait_for(lambda: run.events("start"), timeout=60, what="the trainer to start")
    run.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: run.events("stop_requested"), timeout=30, what="the first signal")
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(timeout=10) == EXIT_INTERRUPTED
    assert run.events("interrupted")
    assert not list(ckpt.glob("ckpt-*.pt"))
