"""What trainers report, visible everywhere: a running job's status patched with
progress and a checkpoint as the operator writes them (the status subresource), read
back over REST (/status, /live, /queue) and in `kubectl get trainingjobs` (the
PROGRESS and CKPT AGE columns); "work lost if stopped now" judged with the job's
TrainingQueue's bound on the grace period, as the operator would."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shunter.domain.model import Checkpoint, Progress
from tests.cluster.api.test_acceptance import wait_status
from tests.support.api import ApiProcess
from tests.support.operator import Jobs, OperatorProcess
from tests.support.policy import kubectl
from tests.support.polling import wait_for


@pytest.fixture
def http(
    start_operator: Callable[..., OperatorProcess], start_api: Callable[..., ApiProcess]
) -> Iterator[httpx.Client]:
    """The operator (two jobs may run at once) and the API, auth off."""
    operator = start_operator(SHUNTER_MAX_RUNNING="2", wait=False)
    api = start_api(wait=False)
    operator.wait_started()
    with api.wait_ready().client() as http:
        yield http


def report(jobs: Jobs, name: str, *, progress: Progress, checkpoint: Checkpoint) -> None:
    """As the operator writes a trainer's reports."""
    jobs.patch_status(name, {"progress": progress.to_raw(), "checkpoint": checkpoint.to_raw()})


def served(http: httpx.Client, name: str, step: int) -> dict[str, Any]:
    """GET /status once it shows the report of `step` (the watch cache follows)."""

    def shown() -> dict[str, Any] | None:
        body: dict[str, Any] = http.get(f"/api/training/status/{name}").json()
        return body if (body.get("progress") or {}).get("step") == step else None

    found: dict[str, Any] = wait_for(shown, timeout=20, what=f"{name}'s step {step} served")
    return found


def columns(kubeconfig: Path, namespace: str, name: str) -> dict[str, str]:
    """The job's row of `kubectl get trainingjobs`, by header (kubectl pads columns with
    three spaces; a header may hold one: CKPT AGE)."""
    header, *rows = kubectl(kubeconfig, "-n", namespace, "get", "trainingjobs").splitlines()
    starts = [
        i for i, c in enumerate(header) if c != " " and header[max(0, i - 2) : i] in ("", "  ")
    ]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    for row in rows:
        cells = {header[a:b].strip(): row[a:b].strip() for a, b in bounds}
        if cells["NAME"] == name:
            return cells
    raise AssertionError(f"{name} not listed")


def test_reports_are_served_over_rest_and_in_kubectls_columns(
    http: httpx.Client,
    jobs: Jobs,
    kubeconfig: Path,
    namespace: str,
    queues: Callable[..., str],
):
    bounded = queues(maxGracePeriodSeconds=20)
    for name, queue in (("reporter", "default"), ("bounded", bounded)):
        body = {"name": name, "gpus": 2, "queue": queue, "termination_grace_period_seconds": 30,
                "pod_annotations": {"sim.shunter.dev/run-for": "600s"}}  # fmt: skip
        assert http.post("/api/training/submit", json=body).status_code == 201
    for name in ("reporter", "bounded"):
        wait_status(http, name, "running")

    now = datetime.now(UTC).replace(microsecond=0)
    progress = Progress(step=420, reported_at=now, attempt=1, total_steps=1000, loss=0.75,
                        throughput=3.5, losses=(1.25, 1.0, 0.75))  # fmt: skip
    written = now - timedelta(seconds=90)
    quick = Checkpoint(step=400, time=written, size_bytes=2_000_000, write_seconds=4.0,
                       attempt=1, max_write_seconds=6.0, count=3, on_stop=True)  # fmt: skip
    report(jobs, "reporter", progress=progress, checkpoint=quick)

    job = served(http, "reporter", 420)
    assert job["progress"] == {
        "step": 420, "total_steps": 1000, "loss": 0.75, "throughput": 3.5,
        "reported_at": now.isoformat().replace("+00:00", "Z"), "losses": [1.25, 1.0, 0.75],
        "percent": 42, "resumed_from_step": None,
    }  # fmt: skip
    checkpoint = job["checkpoint"]
    assert (checkpoint["step"], checkpoint["size_bytes"], checkpoint["write_seconds"]) == (
        400, 2_000_000, 4.0)  # fmt: skip
    assert 90 <= checkpoint["age_seconds"] < 150
    assert (job["progress_step"], job["total_steps"], job["checkpoint_step"]) == (420, 1000, 400)
    # Checkpoints on a stop within its grace (sized from its 6 s writes): it loses nothing,
    # and the stop holds its 2 GPUs for about one write.
    assert job["work_lost_if_stopped"] == {
        "gpu_seconds": 12.0, "lost_seconds": 0.0, "stop_seconds": 6.0,
        "basis": "checkpoints on a stop in about 6s",
    }  # fmt: skip
    for items in (
        http.get("/api/training/live").json()["items"],
        http.get("/api/training/queue").json()["running"],
    ):
        [listed] = [j for j in items if j["job_id"] == "reporter"]
        assert listed["progress"] == job["progress"]
        assert listed["work_lost_if_stopped"] == job["work_lost_if_stopped"]

    # Its queue bounds the grace at 20 s: a 60 s write would be cut by the kubelet, and a
    # stop now loses everything since its checkpoint (written as it started, here).
    began = datetime.fromisoformat(jobs.status("bounded")["runningSince"])
    slow = Checkpoint(step=400, time=began, write_seconds=60.0, attempt=1,
                      max_write_seconds=60.0, count=1, on_stop=True)  # fmt: skip
    report(jobs, "bounded", progress=progress, checkpoint=slow)
    job = served(http, "bounded", 420)
    lost = job["work_lost_if_stopped"]
    assert lost["basis"] == "its checkpoint (60s) takes longer than the grace (20s)"
    assert lost["stop_seconds"] == 20.0
    assert lost["lost_seconds"] == job["checkpoint"]["age_seconds"]  # judged at one time
    assert lost["gpu_seconds"] == 2 * (lost["lost_seconds"] + 20.0)

    cells = columns(kubeconfig, namespace, "reporter")
    assert cells["PROGRESS"] == "42% (420/1000)"
    assert re.fullmatch(r"\d+s|\d+m\d*s?", cells["CKPT AGE"]), cells
    assert columns(kubeconfig, namespace, "bounded")["PROGRESS"] == "42% (420/1000)"


def test_a_job_that_reports_nothing_shows_no_progress_and_loses_its_run(
    http: httpx.Client, kubeconfig: Path, namespace: str
):
    body = {"name": "silent", "pod_annotations": {"sim.shunter.dev/run-for": "600s"}}
    assert http.post("/api/training/submit", json=body).status_code == 201
    wait_status(http, "silent", "running")
    job = http.get("/api/training/status/silent").json()
    assert (job["progress"], job["checkpoint"], job["progress_step"]) == (None, None, None)
    lost = job["work_lost_if_stopped"]
    assert lost["basis"] == "reports no checkpoints: loses everything since it started"
    assert lost["stop_seconds"] == 0.0
    assert lost["gpu_seconds"] == lost["lost_seconds"] >= 0
    assert columns(kubeconfig, namespace, "silent")["PROGRESS"] == ""
