"""Resume for real: a cancelled job's checkpoint stays on its claim, and a new job
with the same claim continues from the saved step on exactly the loss trajectory of
a run that was never interrupted."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.realnode.test_guide import START_TIMEOUT, events, running_trainer, submit, wait_status
from tests.support.api import ApiProcess
from tests.support.operator import OperatorProcess
from tests.support.polling import wait_for
from tests.support.realnode import NodeHandle, PodLog

ARGS = ["--steps", "300", "--checkpoint-every", "40", "--step-delay", "0.02", "--seed", "7"]


def losses(log: PodLog) -> dict[int, float]:
    return {e["step"]: e["loss"] for e in events(log) if e["event"] == "step"}


def test_resubmitted_job_resumes_from_the_claim_bit_for_bit(
    real_system: tuple[OperatorProcess, ApiProcess],
    node: NodeHandle,
    checkpoint_claim: Callable[[str], str],
    restricted: str,
    kubeconfig: Path,
    tmp_path: Path,
):
    _operator, api = real_system
    shared = checkpoint_claim("shared")
    with api.client() as http:
        submit(http, "first", args=ARGS, checkpoint_claim=shared)
        _pod, first_log, _process = running_trainer(
            http, node, "first", restricted, kubeconfig, tmp_path
        )
        wait_for(lambda: max(losses(first_log), default=0) >= 60, timeout=START_TIMEOUT,
                 what="the first run to pass step 60")  # fmt: skip
        http.post("/api/training/cancel/first")
        assert wait_status(http, "first", "cancelled")["exit_code"] == 75
        first_log.close()
        saved = next(e for e in events(first_log) if e["event"] == "stopped")["step"]

        # The same claim, a new job: it starts where the first one stopped.
        submit(http, "second", args=ARGS, checkpoint_claim=shared)
        pod = wait_status(http, "second", "running", timeout=START_TIMEOUT)["pod_name"]
        second_log = PodLog(kubeconfig, restricted, pod, tmp_path / "second.log")
        wait_status(http, "second", "completed", timeout=START_TIMEOUT)
        second_log.close()
        resumed = next(e for e in events(second_log) if e["event"] == "resumed")
        assert resumed["step"] == saved

        # A run never interrupted, on a claim of its own, for reference.
        submit(http, "reference", args=ARGS, checkpoint_claim=checkpoint_claim("reference"))
        pod = wait_status(http, "reference", "running", timeout=START_TIMEOUT)["pod_name"]
        reference_log = PodLog(kubeconfig, restricted, pod, tmp_path / "reference.log")
        wait_status(http, "reference", "completed", timeout=START_TIMEOUT)
        reference_log.close()

    reference, first, second = losses(reference_log), losses(first_log), losses(second_log)
    assert sorted(second) == list(range(saved + 1, 301))
    assert {s: reference[s] for s in first} == first
    assert {s: reference[s] for s in second} == second  # bit for bit, after the resume


def test_suspended_job_resumes_from_its_checkpoint(
    real_system: tuple[OperatorProcess, ApiProcess],
    node: NodeHandle,
    checkpoint_claim: Callable[[str], str],
    restricted: str,
    kubeconfig: Path,
    tmp_path: Path,
):
    """Suspend (issue 14) for real: SIGTERM, a checkpoint on the job's claim, the slot
    released; resume runs the same job again from the saved step to the end."""
    _operator, api = real_system
    with api.client() as http:
        submit(http, "pausing", args=ARGS, checkpoint_claim=checkpoint_claim("pausing"))
        _pod, first_log, process = running_trainer(
            http, node, "pausing", restricted, kubeconfig, tmp_path
        )
        wait_for(lambda: max(losses(first_log), default=0) >= 60, timeout=START_TIMEOUT,
                 what="the run to pass step 60")  # fmt: skip
        response = http.post("/api/training/suspend/pausing")
        assert response.status_code == 200, response.text
        assert response.json()["previous_status"] == "running"
        wait_status(http, "pausing", "suspended")
        first_log.close()
        seen = events(first_log)
        signal = next(e for e in seen if e["event"] == "stop_requested")
        assert signal["signal"] == "SIGTERM"
        assert [e["event"] for e in seen[-2:]] == ["checkpoint", "stopped"]
        saved = seen[-1]["step"]
        wait_for(lambda: not node.alive(process), timeout=30,
                 what="the suspended trainer's process to be gone")  # fmt: skip

        response = http.post("/api/training/resume/pausing")
        assert response.status_code == 200, response.text
        pod = wait_status(http, "pausing", "running", timeout=START_TIMEOUT)["pod_name"]
        second_log = PodLog(kubeconfig, restricted, pod, tmp_path / "resumed.log")
        wait_status(http, "pausing", "completed", timeout=START_TIMEOUT)
        second_log.close()

    resumed = next(e for e in events(second_log) if e["event"] == "resumed")
    assert resumed["step"] == saved
    assert sorted(losses(second_log)) == list(range(saved + 1, 301))
