"""The trainers' report channel against the real API server: tokens bound to real Pods
(TokenRequest, audience shunter), verified by TokenReview; what is refused and why.

kwok runs no process, so the test stands in for the trainer: it asks the API server
for the token the kubelet would mount (bound to the job's Pod) and posts as the
trainer library does. The real trainer does it on the real node
(tests/realnode/test_reports.py)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from shunter.domain.model import format_time
from shunter.domain.reports import PATH
from tests.support.api import ApiProcess
from tests.support.nodes import NodePool
from tests.support.operator import OperatorProcess
from tests.support.policy import kubectl
from tests.support.polling import wait_for


def job_of(kubeconfig: Path, namespace: str, name: str) -> dict[str, Any]:
    out = kubectl(kubeconfig, "get", "trainingjob", name, "-n", namespace, "-o", "json")
    return json.loads(out)


def pod_token(kubeconfig: Path, namespace: str, pod: str, *, audience: str = "shunter") -> str:
    """The token the kubelet would mount for the Pod (bound to it, for the audience)."""
    body = json.loads(kubectl(kubeconfig, "get", "pod", pod, "-n", namespace, "-o", "json"))

    def made() -> str | None:
        try:
            return kubectl(kubeconfig, "create", "token", "default", "-n", namespace,
                           "--audience", audience, "--bound-object-kind", "Pod",
                           "--bound-object-name", pod, "--bound-object-uid",
                           body["metadata"]["uid"], "--duration", "10m").strip()  # fmt: skip
        except subprocess.CalledProcessError:
            return None  # the namespace's default ServiceAccount is not made yet

    return wait_for(made, timeout=30, what=f"a token bound to {pod}")


def post(http: httpx.Client, token: str, **report: Any) -> httpx.Response:
    return http.post(PATH, json=report, headers={"Authorization": f"Bearer {token}"})


def test_a_trainer_reports_and_every_other_caller_is_refused(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    node_pool: NodePool,
    kubeconfig: Path,
    namespace: str,
):
    node_pool.add(2, gpus=8)
    api = start_api()
    start_operator(SHUNTER_MAX_RUNNING="4", SHUNTER_REPORT_URL=f"{api.base_url}{PATH}")
    with api.client() as http:
        for name, run_for in (("a", "600s"), ("b", "600s"), ("done", "1s")):
            response = http.post("/api/training/submit", json={
                "name": name, "gpus": 1, "node_selector": node_pool.selector,
                "pod_annotations": {"sim.shunter.dev/run-for": run_for}})  # fmt: skip
            assert response.status_code == 201, response.text
        for name, phase in (("a", "running"), ("b", "running"), ("done", "completed")):
            wait_for(lambda n=name, p=phase: http.get(f"/api/training/status/{n}").json()
                     ["status"] == p, timeout=60, what=f"{name} {phase}")  # fmt: skip

        a = job_of(kubeconfig, namespace, "a")
        pod = json.loads(kubectl(kubeconfig, "get", "pod", "a-trainer", "-n", namespace, "-o",
                                 "json"))  # fmt: skip
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["SHUNTER_REPORT_URL"] == f"{api.base_url}{PATH}"
        token = pod_token(kubeconfig, namespace, "a-trainer")
        uid = a["metadata"]["uid"]
        at = format_time(datetime.now(UTC))
        checkpoint = {"step": 40, "time": at, "size_bytes": 2048, "write_seconds": 4.0}
        answer = post(http, token, job_uid=uid, attempt=1, rank=0, step=40, total_steps=100,
                      loss=0.75, checkpoint=checkpoint, checkpoint_on_stop=True)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": True, "next_report_seconds": 10, "notice": None}

        def reported() -> dict[str, Any] | None:
            status = job_of(kubeconfig, namespace, "a").get("status", {})
            return status if status.get("checkpoint", {}).get("step") == 40 else None

        status = wait_for(reported, timeout=30, what="the checkpoint in status")
        assert status["progress"]["display"] == "40% (40/100)"
        assert status["checkpoint"]["maxWriteSeconds"] == 4.0

        # The operator posts one Checkpointed Event for it (rate-limited per job).
        def checkpoint_events() -> list[str]:
            out = kubectl(kubeconfig, "get", "events", "-n", namespace, "--field-selector",
                          "involvedObject.name=a,reason=Checkpointed", "-o",
                          "jsonpath={.items[*].message}")  # fmt: skip
            return [m for m in out.split("Checkpoint at") if m.strip()]

        seen = wait_for(checkpoint_events, timeout=30, what="a Checkpointed Event")
        assert "step 40 (attempt 1)" in seen[0]
        columns = kubectl(kubeconfig, "get", "trainingjobs", "a", "-n", namespace)
        assert "PROGRESS" in columns
        assert "CKPT AGE" in columns
        assert "40% (40/100)" in columns

        # Refused, each with a reason, and nothing written:
        stale = post(http, token, job_uid=uid, step=39)
        assert stale.status_code == 409
        assert "stale report" in stale.json()["message"]
        spoofed = post(http, pod_token(kubeconfig, namespace, "b-trainer"), job_uid=uid, step=99)
        assert spoofed.status_code == 403, spoofed.text  # another job's Pod
        wrong_audience = post(http, pod_token(kubeconfig, namespace, "a-trainer",
                                              audience="https://kubernetes.default.svc"),
                              job_uid=uid, step=99)  # fmt: skip
        assert wrong_audience.status_code == 401
        no_token = http.post(PATH, json={"job_uid": uid, "step": 99})
        assert no_token.status_code == 401
        bad = post(http, token, job_uid=uid, step="many")
        assert bad.status_code == 422
        assert "step must be a whole number" in bad.json()["message"]
        done = job_of(kubeconfig, namespace, "done")
        finished = post(http, pod_token(kubeconfig, namespace, "done-trainer"),
                        job_uid=done["metadata"]["uid"], step=5)  # fmt: skip
        assert finished.status_code == 409
        assert "is completed" in finished.json()["message"]
        assert job_of(kubeconfig, namespace, "a")["status"]["progress"]["step"] == 40
        assert "progress" not in job_of(kubeconfig, namespace, "done").get("status", {})
