"""shunter_trainer in the loops that adopt it (trainer-image/examples), on the CPU:
SIGTERM and a preemption notice each end in a checkpoint and exit 75, a restart
resumes from it, reports follow the protocol and its rate limit, old checkpoints go,
torn ones are skipped, and a missing server costs nothing. The report endpoint is a
real HTTP server on localhost (tests/trainer/programs.py)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import socket
import subprocess
from datetime import datetime
from pathlib import Path

from tests.support.polling import wait_for
from tests.trainer.programs import Program, report_server
from tests.trainer.runs import TRAINER_DIR

EXIT_CHECKPOINTED = 75


def trained(program: Program) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in program.events("train")}


def test_sigterm_checkpoints_reports_exits_75_and_resumes_bit_for_bit(python: str, tmp_path: Path):
    baseline = Program(python, tmp_path / "baseline", "plain_loop.py", "--steps", "40")
    token = tmp_path / "token"
    token.write_text("t1")
    with report_server() as server:
        env = server.env(token)
        first = Program(
            python, tmp_path / "run", "plain_loop.py", "--steps", "40", "--step-delay", "0.05",
            env=env,
        )  # fmt: skip
        wait_for(lambda: len(first.events("train")) >= 10, timeout=90, what="10 steps")
        first.signal()
        assert first.wait(timeout=30) == EXIT_CHECKPOINTED
        stopped = first.events("stopped")[0]["step"]
        assert 10 <= stopped < 40
        assert (tmp_path / "run/checkpoints" / f"ckpt-{stopped:09d}.pt").exists()
        # The stop's checkpoint was reported before the process ended.
        assert server.bodies()[-1]["checkpoint"]["step"] == stopped

        second = Program(python, tmp_path / "run", "plain_loop.py", "--steps", "40", env=env)
        assert second.wait() == 0
        # The resumed run says which checkpoint it resumed from (per-attempt rows).
        assert server.bodies()[-1]["resumed_from_step"] == stopped
    assert baseline.wait() == 0
    assert second.events("resumed")[0]["step"] == stopped
    expected = trained(baseline)
    assert min(trained(second)) == stopped + 1
    assert {**trained(first), **trained(second)} == expected  # model, optimizer, RNG restored


def test_a_notice_in_the_answer_checkpoints_reports_and_exits_75(python: str, tmp_path: Path):
    """standalone_trainer, the library's first user, told to stop by Shunter's answer."""
    token = tmp_path / "token"
    token.write_text("t1")
    notice = {"reason": "preempt", "checkpoint_by": "2026-12-04T01:00:00Z"}

    def answer(body: dict[str, object]) -> dict[str, object]:
        late = isinstance(body["step"], int) and body["step"] >= 5
        return {"accepted": True, "notice": notice if late else None}

    with report_server() as server:
        server.answer = answer
        env = {**server.env(token, SHUNTER_REPORT_INTERVAL_SECONDS="0"), "SHUNTER_SEED": "0"}
        ckpt = tmp_path / "ckpt"
        command = [
            python, "-m", "standalone_trainer", "--steps", "400", "--step-delay", "0.05",
            "--checkpoint-dir", str(ckpt), "--termination-log", str(tmp_path / "term"),
        ]  # fmt: skip
        log = tmp_path / "log.jsonl"
        with log.open("wb") as out:
            proc = subprocess.run(
                command, cwd=TRAINER_DIR, stdout=out, stderr=subprocess.STDOUT,
                env={**_env(), **env}, timeout=120, check=False,
            )  # fmt: skip
        events = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        assert proc.returncode == EXIT_CHECKPOINTED
        requested = [e for e in events if e["event"] == "stop_requested"]
        assert requested[0]["reason"] == "preempt"
        assert requested[0]["checkpoint_by"] == notice["checkpoint_by"]
        stopped = next(e for e in events if e["event"] == "stopped")["step"]
        assert 5 <= stopped < 400
        assert (ckpt / f"ckpt-{stopped:09d}.pt").exists()
        assert server.bodies()[-1]["checkpoint"]["step"] == stopped
        assert json.loads((tmp_path / "term").read_text())["status"] == "checkpointed"


def test_reports_carry_the_fields_keep_the_rate_limit_and_reread_the_token(
    python: str, tmp_path: Path
):
    token = tmp_path / "token"
    token.write_text("first-token\n")
    interval = 0.5
    with report_server() as server:
        env = server.env(token, SHUNTER_REPORT_INTERVAL_SECONDS=str(interval))
        run = Program(
            python, tmp_path / "run", "plain_loop.py", "--steps", "60", "--step-delay", "0.05",
            "--every", "20", "--keep", "5", env=env,
        )  # fmt: skip
        wait_for(lambda: server.received, timeout=90, what="a first report")
        token.write_text("rotated-token\n")  # the kubelet rotates the projected token
        assert run.wait() == 0
        received = list(server.received)

    assert received[0].token == "first-token"
    assert received[-1].token == "rotated-token"
    for r in received:
        assert r.body["job_uid"] == "uid-1"
        assert r.body["attempt"] == 2
        assert r.body["rank"] == 0
        assert r.body["total_steps"] == 60
        assert r.body["checkpoint_on_stop"] is True
        assert "resumed_from_step" not in r.body  # a first run resumed from nothing
        assert isinstance(r.body["loss"], float)
    assert any("throughput" in r.body and r.body["throughput"] > 0 for r in received)
    steps = [r.body["step"] for r in received]
    assert steps == sorted(steps)
    assert steps[-1] == 60
    # 60 steps of >= 50 ms: far fewer reports than steps, none closer than the interval
    # unless it carries a checkpoint (those go at once).
    assert len(received) < 30
    for before, after in itertools.pairwise(received):
        if "checkpoint" not in after.body:
            assert after.at - before.at >= interval * 0.9
    checkpoints = [r.body["checkpoint"] for r in received if "checkpoint" in r.body]
    assert [c["step"] for c in checkpoints] == [20, 40, 60]
    for c in checkpoints:
        path = tmp_path / "run/checkpoints" / f"ckpt-{c['step']:09d}.pt"
        assert c["size_bytes"] == path.stat().st_size
        assert c["write_seconds"] >= 0
        assert datetime.fromisoformat(c["time"]).tzinfo is not None


def test_keeps_the_last_n_and_skips_a_torn_checkpoint(python: str, tmp_path: Path):
    ckpt = tmp_path / "run/checkpoints"
    first = Program(python, tmp_path / "run", "plain_loop.py", "--steps", "30", "--every", "5",
                    "--keep", "3")  # fmt: skip
    assert first.wait() == 0
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "ckpt-000000020.pt", "ckpt-000000025.pt", "ckpt-000000030.pt",
    ]  # fmt: skip
    newest = ckpt / "ckpt-000000030.pt"
    newest.write_bytes(newest.read_bytes()[:-50])  # a torn write

    second = Program(python, tmp_path / "run", "plain_loop.py", "--steps", "35", "--every", "5",
                     "--keep", "3")  # fmt: skip
    assert second.wait() == 0
    warnings = [e["message"] for e in second.events("warning")]
    assert any("ckpt-000000030.pt" in w for w in warnings)
    assert second.events("resumed")[0]["step"] == 25


def test_an_absent_server_is_logged_once_and_never_fatal(python: str, tmp_path: Path):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    token = tmp_path / "token"
    token.write_text("t")
    env = {
        "SHUNTER_REPORT_URL": f"http://127.0.0.1:{port}/api/trainer/v1/report",
        "SHUNTER_REPORT_TOKEN_FILE": str(token),
        "SHUNTER_JOB_UID": "uid-1",
        "SHUNTER_REPORT_INTERVAL_SECONDS": "0",
    }
    run = Program(python, tmp_path / "run", "plain_loop.py", "--steps", "30", "--every", "10",
                  env=env)  # fmt: skip
    assert run.wait() == 0
    failures = [e for e in run.events("warning") if "report to Shunter failed" in e["message"]]
    assert len(failures) == 1
    assert len(run.events("train")) == 30


def test_the_library_installs_with_pip_without_the_trainer_program(python: str, tmp_path: Path):
    target = tmp_path / "site"
    source = tmp_path / "source"  # setuptools leaves build/ next to the sources
    shutil.copytree(TRAINER_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--target", str(target), str(source)],
        check=True, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert (target / "shunter_trainer/run.py").exists()
    assert not (target / "standalone_trainer").exists()
    code = "import shunter_trainer.run, shunter_trainer.report; print(shunter_trainer.run.__file__)"
    out = subprocess.run(
        [python, "-c", code], cwd=tmp_path, env={**_env(), "PYTHONPATH": str(target)},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.strip().startswith(str(target))


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("SHUNTER_")}
