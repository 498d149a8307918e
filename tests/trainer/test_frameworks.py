"""The Transformers Trainer and Lightning callbacks (shunter_trainer.hf, .pl) in the
examples that use them, on the CPU with tiny models built in code (nothing is
downloaded): SIGTERM mid-run ends in a checkpoint, its report and exit 75, and the
next start resumes from that checkpoint and finishes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.polling import wait_for
from tests.trainer.programs import Program, report_server

EXIT_CHECKPOINTED = 75
STEPS = 40

FRAMEWORKS = {
    "transformers": ("hf_trainer.py", "--output-dir"),
    "lightning": ("lightning_trainer.py", "--checkpoint-dir"),
}


@pytest.mark.parametrize("framework", sorted(FRAMEWORKS))
def test_sigterm_checkpoints_exits_75_and_resumes(python: str, tmp_path: Path, framework: str):
    script, dir_flag = FRAMEWORKS[framework]
    ckpt = tmp_path / "ckpt"
    args = (dir_flag, str(ckpt), "--steps", str(STEPS))
    token = tmp_path / "token"
    token.write_text("t")
    with report_server() as server:
        env = server.env(token, SHUNTER_REPORT_INTERVAL_SECONDS="0")
        first = Program(python, tmp_path, script, *args, "--step-delay", "0.1", env=env)
        wait_for(
            lambda: any(b["step"] >= 5 for b in server.bodies()) or first.proc.poll() is not None,
            timeout=150,
            what="5 steps reported",
        )
        first.signal()
        assert first.wait(timeout=60) == EXIT_CHECKPOINTED, first.output()[-3000:]
        stopped = first.events("stopped")[0]["step"]
        assert 5 <= stopped < STEPS
        assert [e["step"] for e in first.events("checkpoint")] == [stopped]
        assert server.bodies()[-1]["checkpoint"]["step"] == stopped
        assert server.bodies()[-1]["checkpoint"]["size_bytes"] > 0

    second = Program(python, tmp_path, script, *args)
    assert second.wait() == 0, second.output()[-3000:]
    assert second.events("resumed")[0]["step"] == stopped
    assert second.events("completed")[0]["step"] == STEPS
