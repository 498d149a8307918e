"""Reports for real: the trainer on the real node reports its progress and checkpoints
with the token the kubelet mounted, is preempted (SIGTERM, its deadline in the report
channel's answer), checkpoints and says so before it exits 75, and resumes from the
step it reported; the attempt records that step and the work lost.

The API listens on the node's address too (as in `make demo-real`): the trainer
reaches it from the Pod network; restricted Pod Security is enforced."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shunter.devcluster.realnode import NODE_IP
from shunter.domain.reports import PATH
from tests.realnode.test_guide import START_TIMEOUT, events, running_trainer, submit, wait_status
from tests.support.api import ApiProcess
from tests.support.operator import OperatorProcess
from tests.support.policy import kubectl
from tests.support.polling import wait_for
from tests.support.realnode import BuiltImages, NodeHandle, PodLog

ARGS = ["--steps", "1000000", "--step-delay", "0.02", "--checkpoint-every", "100"]
REPORTING = {"SHUNTER_REPORT_INTERVAL_SECONDS": "1"}


def status_of(kubeconfig: Path, namespace: str, name: str) -> dict[str, Any]:
    out = kubectl(kubeconfig, "get", "trainingjob", name, "-n", namespace, "-o", "json")
    status: dict[str, Any] = json.loads(out).get("status", {})
    return status


def test_the_real_trainer_reports_is_preempted_and_resumes_from_the_reported_step(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    queues: Callable[..., str],
    node: NodeHandle,
    built_images: BuiltImages,
    checkpoint_claim: Callable[[str], str],
    restricted: str,
    kubeconfig: Path,
    tmp_path: Path,
):
    api = start_api(SHUNTER_API_DEFAULT_IMAGE=built_images.trainer, SHUNTER_TEST_BIND="0.0.0.0")
    start_operator(SHUNTER_GRACE_MARGIN_SECONDS="3", SHUNTER_MAX_RUNNING="1",
                   SHUNTER_PREEMPTION_MIN_RUN_SECONDS="0",
                   SHUNTER_REPORT_URL=f"http://{NODE_IP}:{api.port}{PATH}")  # fmt: skip
    queue = queues(preemption="lowerPriority")
    with api.client() as http:
        submit(http, "low", args=ARGS, queue=queue, priority=0, env=REPORTING,
               checkpoint_claim=checkpoint_claim("low"))  # fmt: skip
        _pod, first_log, process = running_trainer(http, node, "low", restricted, kubeconfig,
                                                   tmp_path)  # fmt: skip

        # Progress and a checkpoint reach status through the API's channel.
        def checkpointed() -> dict[str, Any] | None:
            status = status_of(kubeconfig, restricted, "low")
            return status if status.get("checkpoint", {}).get("step", 0) >= 100 else None

        reported = wait_for(checkpointed, timeout=START_TIMEOUT, what="a reported checkpoint")
        assert reported["progress"]["attempt"] == 1
        assert reported["progress"]["step"] >= reported["checkpoint"]["step"]
        assert reported["checkpoint"]["onStop"] is True
        assert reported["checkpoint"]["sizeBytes"] > 0
        saved = {e["step"] for e in events(first_log) if e["event"] == "checkpoint"}
        assert reported["checkpoint"]["step"] in saved

        # A higher priority job of the same queue takes the only slot: "low" is preempted.
        submit(http, "high", args=["--steps", "20"], queue=queue, priority=10)
        wait_status(http, "low", "queued", timeout=START_TIMEOUT)
        first_log.close()
        seen = events(first_log)
        assert next(e for e in seen if e["event"] == "stop_requested")["signal"] == "SIGTERM"
        stopped = next(e for e in seen if e["event"] == "stopped")["step"]
        wait_for(lambda: not node.alive(process), timeout=30, what="the old trainer gone")
        after = status_of(kubeconfig, restricted, "low")
        assert after["preemptions"] == 1
        # The stop's own checkpoint was reported before the process ended, so the
        # attempt lost (almost) nothing and says where it stopped.
        assert after["checkpoint"]["step"] == stopped
        run = after["history"][-1]
        assert (run["attempt"], run["reason"], run["exitCode"]) == (1, "Preempted", 75)
        assert run["checkpointStep"] == stopped
        assert run["lostSeconds"] < 10

        # "high" runs and completes; "low" resumes from the step it reported.
        wait_status(http, "high", "completed", timeout=START_TIMEOUT)
        pod = wait_status(http, "low", "running", timeout=START_TIMEOUT)["pod_name"]
        second_log = PodLog(kubeconfig, restricted, pod, tmp_path / "resumed.log")

        def resumed_reported() -> dict[str, Any] | None:
            status = status_of(kubeconfig, restricted, "low")
            progress = status.get("progress", {})
            return progress if progress.get("attempt") == 2 else None

        progress = wait_for(resumed_reported, timeout=START_TIMEOUT,
                            what="the resumed run's first report")  # fmt: skip
        assert progress["resumedFromStep"] == stopped
        assert progress["step"] > stopped
        resumed = next(e for e in events(second_log) if e["event"] == "resumed")
        assert resumed["step"] == stopped
        http.post("/api/training/cancel/low")
        wait_status(http, "low", "cancelled", timeout=START_TIMEOUT)
        second_log.close()
