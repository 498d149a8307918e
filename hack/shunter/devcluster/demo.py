"""`make demo`: the whole system on this machine, with a few sample jobs.

`make demo-real` (demo up --real-node) adds the real worker node and one real
trainer job on it, checkpointing to a PersistentVolumeClaim, to watch being cancelled.

Local control plane + embedded PostgreSQL + the CRD + the operator + the API on
127.0.0.1:8000 (auth off: a trusted local demo, so it listens on loopback only),
all detached so the command returns, and `make demo-down` stops every process
again. The benchmarks start the same services through `start_services`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from shunter.devcluster import hostcleanup, images, processes, volumes
from shunter.devcluster.controlplane import ControlPlane, ControlPlaneError, default_state_dir
from shunter.devcluster.postgres import LocalPostgres
from shunter.devcluster.realnode import NODE_IP, NODE_NAME, RealNode, pool_selector, toleration
from shunter.devcluster.runtime import cache_dir
from shunter.domain.reports import PATH as REPORT_PATH

NAME = "demo"
REPO = Path(__file__).resolve().parents[3]
CHART = REPO / "charts/shunter"
# Every CRD of the chart (TrainingJob, TrainingQueue): the directory, not a list of
# files, so a CRD added to the chart is in the demo too.
CRDS = CHART / "crds"
SERVICES = ("shunter-operator", "shunter-api")

SAMPLES = [
    {"name": "demo-resnet", "gpus": 2, "pod_annotations": {"sim.shunter.dev/run-for": "90s"}},
    {"name": "demo-bert", "gpus": 4, "pod_annotations": {"sim.shunter.dev/run-for": "120s"}},
    {"name": "demo-llama", "gpus": 8, "priority": 10,
     "pod_annotations": {"sim.shunter.dev/run-for": "300s"}},
    {"name": "demo-hangs", "gpus": 1, "termination_grace_period_seconds": 5,
     "pod_labels": {"sim.shunter.dev/hang-on-delete": "true"}},
]  # fmt: skip


def _paths() -> tuple[ControlPlane, LocalPostgres, Path]:
    state = default_state_dir(NAME)
    return ControlPlane(state), LocalPostgres(state.with_name(NAME + "-postgres")), state


def _http(method: str, url: str, body: dict[str, object] | None = None) -> dict[str, object]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method,
                                     headers={"Content-Type": "application/json"})  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        result: dict[str, object] = json.loads(response.read())
        return result


def wait_ready(url: str, what: str, *, timeout: float = 90) -> None:
    """Poll url until it answers 200, or fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{what} not ready after {timeout:.0f}s")


def install_crd(plane: ControlPlane) -> None:
    """The chart's CRDs, established."""
    plane.kubectl("apply", "-f", str(CRDS))
    plane.kubectl("wait", "--for=condition=Established", "-f", str(CRDS))


def install_policies(plane: ControlPlane) -> None:
    """The chart's admission policies with its default values, as an install on this
    Kubernetes (1.36: identity stamped by a mutating policy) renders them; the nodes
    are kwok's, so jobs may carry the simulator's sim.shunter.dev/* metadata."""
    rendered = subprocess.run(
        [plane.binary("helm"), "template", "shunter", str(CHART), "--namespace", "shunter-system",
         "--set", "api.simulator=true", "--show-only", "templates/policy.yaml",
         "--show-only", "templates/identity.yaml",
         "--api-versions", "admissionregistration.k8s.io/v1/MutatingAdmissionPolicy"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    plane.kubectl("apply", "-f", "-", stdin=rendered)
    # The API server takes the policies up a moment later; a fresh cluster may answer
    # 5xx meanwhile (failurePolicy: Fail). Wait until a job that breaks a rule is
    # refused by it and one that keeps them is accepted (dry runs: nothing is stored).
    probe = {"apiVersion": "shunter.dev/v1alpha1", "kind": "TrainingJob",
             "metadata": {"generateName": "policy-probe-", "namespace": "default"},
             "spec": {"image": "probe"}}  # fmt: skip
    bad = {**probe, "spec": {"image": "probe", "tolerations": [{"operator": "Exists"}]}}

    def answer(body: Mapping[str, object]) -> str:
        try:
            plane.kubectl("create", "--dry-run=server", "-f", "-", stdin=json.dumps(body))
        except ControlPlaneError as exc:
            return str(exc)
        return "accepted"

    deadline = time.monotonic() + 60
    while not ("shunter-trainingjobs" in answer(bad) and answer(probe) == "accepted"):
        if time.monotonic() > deadline:
            raise RuntimeError("the chart's admission policies were not enforced within 60 s")
        time.sleep(0.5)


def start_services(
    kubeconfig: Path,
    database_url: str,
    *,
    state_dir: Path,
    port: int,
    env: Mapping[str, str] | None = None,
    operator_env: Mapping[str, str] | None = None,
    api_env: Mapping[str, str] | None = None,
    with_operator: bool = True,
    host: str = "127.0.0.1",
) -> str:
    """Start the operator and the API (auth off, on host:port, 127.0.0.1 unless the
    real node's Pods must reach it) detached, with pids and logs under state_dir;
    return the API's base URL once /readyz answers."""
    common = {**os.environ, "KUBECONFIG": str(kubeconfig), "DATABASE_URL": database_url,
              "SHUNTER_API_AUTH": "none", "PYTHONUNBUFFERED": "1", **(env or {})}  # fmt: skip
    bin_dir = Path(sys.executable).parent
    if with_operator:
        processes.start("shunter-operator", [str(bin_dir / "shunter-operator")],
                        state_dir=state_dir, env={**common, **(operator_env or {})})  # fmt: skip
    processes.start("shunter-api",
                    [str(bin_dir / "shunter-api"), "--host", host, "--port", str(port)],
                    state_dir=state_dir, env={**common, **(api_env or {})})  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_ready(f"{base}/readyz", "the API")
    return base


def stop_services(state_dir: Path) -> None:
    for name in SERVICES:
        processes.stop(name, state_dir=state_dir)


REAL_JOB = "demo-real"
REAL_CLAIM = "demo-real-checkpoints"
TRAINER_UID = 10001  # the trainer image's user (operator podspec.TRAINER_UID)


def _real_job(image: str) -> dict[str, object]:
    return {
        "name": REAL_JOB, "image": image, "gpus": 0, "priority": 100,
        "args": ["--steps", "1000000", "--step-delay", "0.05", "--checkpoint-every", "200"],
        "termination_grace_period_seconds": 30, "checkpoint_claim": REAL_CLAIM,
        "node_selector": pool_selector(), "tolerations": [toleration()],
    }  # fmt: skip


def _checkpoint_dir(state: Path) -> Path:
    return state.with_name(NAME + "-checkpoints")


def _start_real_node(plane: ControlPlane, state: Path) -> str:
    """The real node, the images on it and the checkpoint claim; the trainer image."""
    node = RealNode(plane)
    node.up()
    built = images.ensure(node.runtime, cache_dir() / "images")
    directory = _checkpoint_dir(state)
    directory.mkdir(parents=True, exist_ok=True)
    os.chown(directory, TRAINER_UID, TRAINER_UID)
    plane.apply(volumes.checkpoint_volume(REAL_CLAIM, "default", path=str(directory),
                                          node=NODE_NAME))  # fmt: skip
    return built.trainer


def up(port: int = 8000, *, real_node: bool = False) -> int:
    plane, postgres, services_dir = _paths()
    kubeconfig = plane.up()
    trainer = _start_real_node(plane, services_dir) if real_node else None
    database_url = postgres.up()
    install_crd(plane)
    install_policies(plane)
    # With the real node, its trainer and one simulated job run side by side, and the
    # trainer reports to the API at the node's address (the pod bridge's gateway):
    # the API listens there too, serving everything but the reports (which a Pod's
    # own token authenticates) to this machine only (shunter.api.gate).
    operator_env: dict[str, str] = {}
    if real_node:
        operator_env = {"SHUNTER_MAX_RUNNING": "2",
                        "SHUNTER_REPORT_URL": f"http://{NODE_IP}:{port}{REPORT_PATH}"}  # fmt: skip
    # The demo's kwok nodes are simulated: the UI may offer the simulator's fields.
    base = start_services(kubeconfig, database_url, state_dir=services_dir, port=port,
                          env={"SHUNTER_IDENTITY": "demo-operator"},
                          operator_env=operator_env, host="0.0.0.0" if real_node else "127.0.0.1",
                          api_env={"SHUNTER_API_SIMULATOR": "true"})  # fmt: skip
    for sample in ([_real_job(trainer)] if trainer else []) + SAMPLES:
        try:
            _http("POST", f"{base}/api/training/submit", sample)
        except urllib.error.HTTPError as exc:
            if exc.code != 409:  # already submitted by an earlier `make demo`
                raise
    print(_instructions(kubeconfig, database_url, base, services_dir))
    if real_node:
        print(_real_instructions(base, _checkpoint_dir(services_dir)))
    return 0


def _real_instructions(base: str, checkpoints: Path) -> str:
    socket = "unix:///run/shunter-realnode/containerd/containerd.sock"
    return f"""
A real trainer runs on node {NODE_NAME} (job {REAL_JOB}, Pod {REAL_JOB}-trainer):
  kubectl logs -f {REAL_JOB}-trainer        # JSON lines: start, step, checkpoint ...
  crictl --runtime-endpoint {socket} ps     # its container
  ps -ef | grep [s]tandalone_trainer        # its process on this machine
Cancel it (with the logs still following): the trainer logs stop_requested (SIGTERM),
checkpoint and stopped, and exits 75:
  curl -X POST {base}/api/training/cancel/{REAL_JOB}
  kubectl get tj {REAL_JOB} -o jsonpath='{{.status.exitCode}}'   # 75
  ls {checkpoints}                          # the checkpoint, on the claim
Resubmit with the same claim and it resumes from that step (see README, "A real node").
"""


def _instructions(kubeconfig: Path, database_url: str, base: str, state: Path) -> str:
    return f"""
Shunter demo is up.
  API        {base}   (docs: {base}/docs)
  kubeconfig {kubeconfig}
  database   {database_url}
  logs       {state}/logs/shunter-operator.log, {state}/logs/shunter-api.log

Try the acceptance guide:
  curl {base}/api/training/queue
  curl -X POST {base}/api/training/submit -H 'Content-Type: application/json' \\
       -d '{{"gpus": 1, "pod_annotations": {{"sim.shunter.dev/run-for": "60s"}}}}'
  curl {base}/api/training/status/demo-resnet
  curl -X POST {base}/api/training/cancel/demo-bert      # queued: removed from queue
  curl -X POST {base}/api/training/cancel/demo-resnet    # running: graceful termination
  curl -X POST {base}/api/training/cancel/invalid-job-id # 404 Job not found
  curl '{base}/api/training/jobs?status=cancelled'
  grep Terminate {state}/logs/shunter-operator.log

With kubectl:
  export KUBECONFIG={kubeconfig} PATH=$HOME/.cache/shunter/bin:$PATH
  kubectl get tj
  kubectl patch tj demo-hangs --type merge -p '{{"spec":{{"cancelled":true}}}}'
  More in examples/README.md: queues in a cohort, a multi-node job, suspend and resume.

Stop everything: make demo-down
"""


def down() -> int:
    plane, postgres, services_dir = _paths()
    stop_services(services_dir)
    RealNode(plane).down(restore_apiserver=False)
    hostcleanup.remove_tree(_checkpoint_dir(services_dir))
    plane.down()
    postgres.down()
    print("demo stopped", file=sys.stderr)
    return 0
