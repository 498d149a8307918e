"""The image's entry point reads the Pod's environment (the operator's contract) and
starts one trainer process, or torchrun with the right arguments, or refuses.

The command and the contract checks are pure (the launcher never imports torch), so
they are tested in-process; one subprocess shows that a single-process Pod still runs
the trainer itself as the launcher's process (exec: the kubelet's SIGTERM reaches it).
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from types import ModuleType

import pytest

from tests.trainer.runs import EXIT_CHECKPOINTED, EXIT_COMPLETED, EXIT_USAGE, TRAINER_DIR, Launch


@pytest.fixture
def launch(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(TRAINER_DIR))
    import standalone_trainer.launch as module

    return module


def test_several_pods_get_a_static_rendezvous_on_pod_0(launch: ModuleType):
    env = {
        "NNODES": "4",
        "NODE_RANK": "2",
        "NPROC_PER_NODE": "8",
        "WORLD_SIZE": "32",
        "MASTER_ADDR": "job-trainer-0.job",
        "MASTER_PORT": "23456",
    }
    command = launch.torchrun_command(launch.plan(env), ["--steps", "5"])
    assert command[1:3] == ["-m", "torch.distributed.run"]
    flags = " ".join(command[3:])
    assert flags.startswith(
        "--nnodes 4 --node-rank 2 --rdzv-backend static "
        "--master-addr job-trainer-0.job --master-port 23456 --nproc-per-node 8 "
        "--max-restarts 0 --shutdown-timeout 3600 -m standalone_trainer --steps 5"
    )


def test_one_pod_with_several_processes_is_standalone(launch: ModuleType):
    p = launch.plan({"NPROC_PER_NODE": "2", "MASTER_ADDR": "ignored", "WORLD_SIZE": "2"})
    flags = launch.torchrun_command(p, [])[3:]
    assert flags[:5] == ["--standalone", "--nnodes", "1", "--nproc-per-node", "2"]
    assert p.processes == 2


def test_torchruns_own_pet_names_are_read_too(launch: ModuleType):
    p = launch.plan({"PET_NNODES": "2", "PET_NPROC_PER_NODE": "1", "PET_MASTER_ADDR": "a"})
    assert (p.nnodes, p.nproc_per_node, p.master_addr, p.master_port) == (2, 1, "a", 29500)
    assert launch.plan({"NNODES": "3", "PET_NNODES": "2", "MASTER_ADDR": "a"}).nnodes == 3


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"NNODES": "2", "NPROC_PER_NODE": "2", "WORLD_SIZE": "2", "MASTER_ADDR": "a"},
            "WORLD_SIZE=2",
        ),
        ({"NNODES": "2"}, "MASTER_ADDR is required"),
        ({"NNODES": "2", "NODE_RANK": "2", "MASTER_ADDR": "a"}, "NODE_RANK=2 must be below"),
        ({"NPROC_PER_NODE": "0"}, "NPROC_PER_NODE=0 must be at least 1"),
        ({"NNODES": "two"}, "NNODES='two' is not a number"),
    ],
)
def test_an_inconsistent_environment_is_refused(
    launch: ModuleType, env: dict[str, str], message: str
):
    with pytest.raises(launch.LaunchError, match=message):
        launch.plan(env)


def test_a_refused_environment_exits_2_with_the_reason(python: str, tmp_path: Path):
    env = {"NNODES": "2", "NPROC_PER_NODE": "1", "WORLD_SIZE": "4", "MASTER_ADDR": "a"}
    run = Launch(python, tmp_path / "ckpt", "--steps", "1", env=env)
    assert run.wait(timeout=30) == EXIT_USAGE
    assert "WORLD_SIZE=4, but NNODES x NPROC_PER_NODE is 2 x 1" in run.output()


def test_a_single_process_pod_runs_the_trainer_itself(python: str, tmp_path: Path):
    # The operator's variables for a 1 x 1 job: no torchrun, no process group.
    env = {"NNODES": "1", "NPROC_PER_NODE": "1", "WORLD_SIZE": "1", "MASTER_ADDR": "x"}
    run = Launch(python, tmp_path / "ckpt", "--steps", "3", env=env)
    try:
        assert run.wait() == EXIT_COMPLETED, run.output()
    finally:
        run.kill()
    start = run.events("start")[0]
    assert start["pid"] == run.proc.pid  # exec'd: the Pod's PID 1 is the trainer
    assert "rank" not in start
    assert "backend" not in start
    assert not run.events("launch")
    assert [e["step"] for e in run.events("step")] == [1, 2, 3]


def test_the_launcher_never_imports_torch(python: str):
    code = "import sys, standalone_trainer.launch; sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([python, "-c", code], cwd=TRAINER_DIR, check=False).returncode == 0


# Stands in for torchrun at its worst (a fault the real one shows only now and then):
# on SIGTERM its two workers report 75 and stop, and it stays, ignoring further signals.
LINGERING_TORCHRUN = """
import os, signal, sys, time
sys.path.insert(0, sys.argv[1])
from standalone_trainer import status
from pathlib import Path

def stop(*_):
    for rank in (0, 1):
        status.write(Path(os.environ[status.ENV]), rank, pid=os.getpid(), exit_code=75)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

signal.signal(signal.SIGTERM, stop)
print("ready", flush=True)
time.sleep(600)
"""

SUPERVISE = """
import sys
sys.path.insert(0, sys.argv[1])
from standalone_trainer import launch
from shunter_trainer.events import Log
launch.TEARDOWN_SECONDS = 1.0
p = launch.plan({"NPROC_PER_NODE": "2"})
sys.exit(launch.Supervisor(p, Log()).run([sys.executable, "-c", sys.argv[2], sys.argv[1]]))
"""


def test_torchrun_lingering_after_its_workers_reported_is_stopped(python: str):
    proc = subprocess.Popen(
        [python, "-c", SUPERVISE, str(TRAINER_DIR), LINGERING_TORCHRUN],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the launcher's own "launch" line
        assert json.loads(first)["event"] == "launch"
        assert proc.stdout.readline().strip() == "ready"
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == EXIT_CHECKPOINTED
        took = time.monotonic() - sent
        lines = [json.loads(line) for line in proc.stdout.read().splitlines()]
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert 1.0 <= took < 10, f"stopped {took:.1f}s after the signal"
    warning = next(e for e in lines if e["event"] == "warning")
    assert "after every worker reported its exit code" in warning["message"]
    ended = next(e for e in lines if e["event"] == "launch_exit")
    assert (ended["exit_code"], ended["torchrun_exit_code"], ended["ranks"]) == (75, -9, [75, 75])


# A completed run whose torchrun lingers (a worker hanging on its way out): no signal.
COMPLETED_LINGERING_TORCHRUN = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from standalone_trainer import status
from pathlib import Path
for rank in (0, 1):
    status.write(Path(os.environ[status.ENV]), rank, pid=os.getpid(), exit_code=0)
time.sleep(600)
"""


def test_torchrun_lingering_after_its_workers_completed_is_stopped(python: str):
    start = time.monotonic()
    done = subprocess.run(
        [python, "-c", SUPERVISE, str(TRAINER_DIR), COMPLETED_LINGERING_TORCHRUN],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == EXIT_COMPLETED, done.stderr
    assert time.monotonic() - start < 10
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    ended = next(e for e in lines if e["event"] == "launch_exit")
    assert (ended["exit_code"], ended["torchrun_exit_code"], ended["ranks"]) == (0, -9, [0, 0])
