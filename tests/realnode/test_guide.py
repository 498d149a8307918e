"""The acceptance guide's Test 2 and Test 7 with a real trainer process on a real node.

The trainer image runs under the kubelet; what the guide asks to check by hand
("check process list - training process should be terminated") is checked through
the container runtime (crictl) and the node's process table.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.support.api import ApiProcess
from tests.support.operator import OperatorProcess
from tests.support.polling import wait_for
from tests.support.realnode import NodeHandle, PodLog, ProcessRef, placement

# Long enough to be cancelled mid-run; --step-delay keeps one CPU mostly free.
TRAIN = ["--steps", "1000000", "--step-delay", "0.02", "--checkpoint-every", "500"]
# A trainer that ignores SIGTERM (a hung one): only SIGKILL stops it.
STUBBORN = """
import json, signal, time
def ignore(signum, frame):
    print(json.dumps({"event": "ignored", "signal": signal.Signals(signum).name}), flush=True)
signal.signal(signal.SIGTERM, ignore)
print(json.dumps({"event": "start"}), flush=True)
while True:
    time.sleep(0.1)
"""
START_TIMEOUT = 180  # image already on the node; torch's import on a busy 2-core machine


def submit(http: httpx.Client, name: str, **fields: Any) -> str:
    body = {"name": name, "gpus": 0, "args": TRAIN, **placement(), **fields}
    response = http.post("/api/training/submit", json=body)
    assert response.status_code == 201, response.text
    return name


def job(http: httpx.Client, name: str) -> dict[str, Any]:
    body: dict[str, Any] = http.get(f"/api/training/status/{name}").json()
    return body


def wait_status(http: httpx.Client, name: str, status: str, timeout: float = 60) -> dict[str, Any]:
    return wait_for(
        lambda: (j := job(http, name))["status"] == status and j,
        timeout=timeout,
        what=f"{name} to be {status}",
    )


def events(log: PodLog) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.text().splitlines() if line.startswith("{")]


def running_trainer(
    http: httpx.Client, node: NodeHandle, name: str, namespace: str, kubeconfig: Path,
    tmp_path: Path, first_event: str = "step",
) -> tuple[str, PodLog, ProcessRef]:  # fmt: skip
    """Wait until the job's trainer runs (its log shows first_event); its Pod name, log
    stream and host process."""
    pod = wait_status(http, name, "running", timeout=START_TIMEOUT)["pod_name"]
    log = PodLog(kubeconfig, namespace, pod, tmp_path / f"{pod}.log")
    wait_for(
        lambda: any(e["event"] == first_event for e in events(log)),
        timeout=START_TIMEOUT,
        what=f"{name}'s trainer to log {first_event}",
    )
    [container] = [c for c in node.containers(pod, namespace) if c["state"] == "CONTAINER_RUNNING"]
    process = node.process_of(container["id"])
    assert node.alive(process)
    return pod, log, process


def verify_checkpoint(node: NodeHandle, directory: str, name: str) -> dict[str, Any]:
    """The trainer's checkpoint format: a JSON header line (size, SHA-256), then the
    payload; the file must be whole and match."""
    data = base64.b64decode(node.sh(f"base64 -w0 {directory}/{name}").stdout)
    header_line, payload = data.split(b"\n", 1)
    header: dict[str, Any] = json.loads(header_line)
    assert header["size"] == len(payload)
    assert header["sha256"] == hashlib.sha256(payload).hexdigest()
    return header


def claim_path(node: NodeHandle, claim: str, namespace: str) -> str:
    """The host directory behind a claim made by the checkpoint_claim fixture."""
    listing = node.sh(f"ls -d /var/tmp/shunter-checkpoints/*-{claim}").stdout.split()
    assert len(listing) == 1, listing
    return listing[0]


def terminate_lines(operator: OperatorProcess, pod: str) -> list[str]:
    return [
        line.split("INFO shunter.operator: ", 1)[-1]
        for line in operator.log().splitlines()
        if "[Terminate]" in line and f"/{pod} " in line + " "
    ]


def test_2_cancel_running_job_for_real(
    real_system: tuple[OperatorProcess, ApiProcess],
    node: NodeHandle,
    checkpoint_claim: Callable[[str], str],
    restricted: str,
    kubeconfig: Path,
    tmp_path: Path,
):
    operator, api = real_system
    with api.client() as http:
        submit(http, "train", checkpoint_claim=checkpoint_claim("ckpt"))
        submit(http, "next", checkpoint_claim=checkpoint_claim("ckpt-next"))
        pod, log, process = running_trainer(http, node, "train", restricted, kubeconfig, tmp_path)
        assert "standalone_trainer" in node.command_line(process)

        response = http.post("/api/training/cancel/train")

        assert response.status_code == 200
        assert response.json() == {
            "success": True,
            "job_id": "train",
            "previous_status": "running",
            "message": "Job cancelled (was running)",
        }
        final = wait_status(http, "train", "cancelled")
        log.close()
        seen = events(log)
        kinds = [e["event"] for e in seen]
        # SIGTERM arrived, the step in progress finished, a checkpoint was written, exit 75.
        assert {"event": "stop_requested", "signal": "SIGTERM"}.items() <= next(
            e for e in seen if e["event"] == "stop_requested"
        ).items()
        assert kinds[-2:] == ["checkpoint", "stopped"]
        stopped = seen[-1]
        assert final["exit_code"] == 75
        assert final["termination"]["outcome"] == "graceful"
        header = verify_checkpoint(node, claim_path(node, "ckpt", restricted), seen[-2]["path"])
        assert header["step"] == stopped["step"] > 0
        # The process is gone: from the host's process table and from the runtime.
        assert not node.alive(process)
        wait_for(
            lambda: node.containers(pod, restricted) == [],
            timeout=60,
            what="the runtime to forget the trainer's container",
        )
        assert f"[Terminate] Pod {restricted}/{pod} terminated gracefully" in terminate_lines(
            operator, pod
        )
        # The next job starts by itself, on the real node too.
        assert wait_status(http, "next", "running", timeout=START_TIMEOUT)["node_name"] == node.name
        http.post("/api/training/cancel/next")
        wait_status(http, "next", "cancelled")


def test_7_force_delete_when_the_node_is_lost(
    real_system: tuple[OperatorProcess, ApiProcess],
    node: NodeHandle,
    restricted: str,
    kubeconfig: Path,
    tmp_path: Path,
):
    """The kubelet stops (a node failure) and the job is cancelled: the Pod cannot stop
    within its grace period, so the operator force-deletes it. The object goes; the
    process keeps running until the kubelet returns and kills the orphan."""
    operator, api = real_system
    with api.client() as http:
        submit(http, "lost", termination_grace_period_seconds=3)
        pod, log, process = running_trainer(http, node, "lost", restricted, kubeconfig, tmp_path)
        node.stop_kubelet()
        try:
            response = http.post("/api/training/cancel/lost")
            assert response.json()["message"] == "Job cancelled (was running)"
            wait_status(http, "lost", "cancelled", timeout=60)
            ref = f"{restricted}/{pod}"
            assert terminate_lines(operator, pod) == [
                f"[Terminate] Attempting graceful termination of pod {ref}",
                f"[Terminate] Pod {ref} did not terminate gracefully, forcing deletion",
                f"[Terminate] Pod {ref} force deleted",
            ]
            assert job(http, "lost")["termination"]["outcome"] == "forced"
            # Only the API object went: the node never heard of the cancel.
            assert node.alive(process)
        finally:
            node.start_kubelet()
        # Back, the kubelet finds a container of a Pod that no longer exists and kills it.
        wait_for(lambda: not node.alive(process), timeout=120, what="the orphan to be killed")
        wait_for(
            lambda: node.containers(pod, restricted) == [] and not node.sandboxes(pod, restricted),
            timeout=180,
            what="nothing of the orphan left in the runtime",
        )
        log.close()


def test_trainer_ignoring_sigterm_is_killed_at_the_end_of_its_grace(
    real_system: tuple[OperatorProcess, ApiProcess],
    node: NodeHandle,
    restricted: str,
    kubeconfig: Path,
    tmp_path: Path,
):
    operator, api = real_system
    with api.client() as http:
        submit(http, "stubborn", command=["python", "-c", STUBBORN], args=[],
               termination_grace_period_seconds=3)  # fmt: skip
        pod, log, process = running_trainer(
            http, node, "stubborn", restricted, kubeconfig, tmp_path, first_event="start"
        )
        cancelled_at = time.monotonic()
        assert http.post("/api/training/cancel/stubborn").status_code == 200
        final = wait_status(http, "stubborn", "cancelled", timeout=60)
        log.close()
        assert {"event": "ignored", "signal": "SIGTERM"} in events(log)
        # The kubelet, not the operator, ended it: SIGKILL when the 3 s grace ran out
        # (well before the operator's grace + margin), exit code 137.
        assert final["exit_code"] == 137
        assert final["termination"]["outcome"] == "graceful"
        assert not node.alive(process)
        assert time.monotonic() - cancelled_at >= 3
        lines = terminate_lines(operator, pod)
        assert lines[-1] == f"[Terminate] Pod {restricted}/{pod} terminated gracefully"
