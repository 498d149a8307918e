"""The real node as the tests see it: found by its label, reached by a shell.

Locally the node is this machine (shunter.devcluster.realnode); on kind it is a node
container, reached with `docker exec` (SHUNTER_REAL_NODE_EXEC="docker exec NAME",
set by hack/e2e-kind.sh). Either way the tests only select the node by its label
and look at it through the container runtime (crictl) and the process table, so the
same tests run on both.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client

from shunter.devcluster.controlplane import ControlPlane, default_bin_dir
from shunter.devcluster.nodes import POOL_LABEL
from shunter.devcluster.realnode import POOL, RealNode, toleration


@dataclass(frozen=True)
class ProcessRef:
    """A host process, identified beyond its pid (which may be reused)."""

    pid: int
    start_ticks: str


class NodeHandle:
    def __init__(self, name: str, *, local: RealNode | None, exec_prefix: list[str]) -> None:
        self.name = name
        self.local = local
        self.exec_prefix = exec_prefix

    # -- shell and runtime ---------------------------------------------------------

    def sh(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([*self.exec_prefix, "bash", "-c", script],
                                capture_output=True, text=True, timeout=120)  # fmt: skip
        if check and result.returncode:
            raise AssertionError(f"{script!r} on {self.name}: {result.stderr.strip()}")
        return result

    def crictl(self, *args: str) -> str:
        if self.local is not None:
            return self.local.runtime.crictl(*args).stdout
        return self.sh(shlex.join(["crictl", *args])).stdout

    def containers(self, pod_name: str, namespace: str) -> list[dict[str, Any]]:
        """The pod's containers the runtime still knows (any state)."""
        pods = json.loads(self.crictl("pods", "--name", f"^{pod_name}$", "--namespace",
                                      f"^{namespace}$", "-o", "json"))  # fmt: skip
        found = []
        for pod in pods.get("items") or []:
            listed = json.loads(self.crictl("ps", "-a", "--pod", pod["id"], "-o", "json"))
            found += listed.get("containers") or []
        return found

    def sandboxes(self, pod_name: str, namespace: str) -> list[dict[str, Any]]:
        pods = json.loads(self.crictl("pods", "--name", f"^{pod_name}$", "--namespace",
                                      f"^{namespace}$", "-o", "json"))  # fmt: skip
        items: list[dict[str, Any]] = pods.get("items") or []
        return items

    def process_of(self, container_id: str) -> ProcessRef:
        info = json.loads(self.crictl("inspect", container_id))
        pid = int(info["info"]["pid"])
        return ProcessRef(pid, self._start_ticks(pid) or "")

    def _start_ticks(self, pid: int) -> str | None:
        result = self.sh(f"cat /proc/{pid}/stat", check=False)
        if result.returncode:
            return None
        fields = result.stdout.rsplit(")", 1)[1].split()
        return None if fields[0] == "Z" else fields[19]  # field 22 of stat: start time

    def alive(self, process: ProcessRef) -> bool:
        return self._start_ticks(process.pid) == process.start_ticks

    def command_line(self, process: ProcessRef) -> str:
        out = self.sh(f"tr '\\0' ' ' < /proc/{process.pid}/cmdline", check=False).stdout
        return out.strip()

    # -- faults ----------------------------------------------------------------------

    def stop_kubelet(self) -> None:
        if self.local is not None:
            self.local.stop_kubelet()
        else:
            self.sh("systemctl stop kubelet")

    def start_kubelet(self) -> None:
        if self.local is not None:
            self.local.start_kubelet()
        else:
            self.sh("systemctl start kubelet")

    def make_dir(self, path: str, *, uid: int) -> None:
        self.sh(f"mkdir -p {shlex.quote(path)} && chown {uid}:{uid} {shlex.quote(path)}")

    def remove_dir(self, path: str) -> None:
        self.sh(f"rm -rf {shlex.quote(path)}", check=False)


def placement() -> dict[str, Any]:
    """What a TrainingJob (REST spelling) needs to run on the real node."""
    return {"node_selector": {POOL_LABEL: POOL}, "tolerations": [toleration()]}


def find_node(api: client.ApiClient, local: RealNode | None) -> NodeHandle:
    nodes = client.CoreV1Api(api).list_node(label_selector=f"{POOL_LABEL}={POOL}").items
    assert nodes, f"no node labelled {POOL_LABEL}={POOL}"
    exec_prefix = shlex.split(os.environ.get("SHUNTER_REAL_NODE_EXEC", ""))
    return NodeHandle(nodes[0].metadata.name, local=local, exec_prefix=exec_prefix)


class LazyNode:
    """The session's real node, started on first use (again after a test stopped it)."""

    def __init__(self, plane: ControlPlane | None) -> None:
        self.plane = plane
        self.node = RealNode(plane) if plane is not None else None

    def ensure_up(self) -> RealNode | None:
        if self.node is not None and not self.node.running():
            self.node.up()
        return self.node

    def down(self) -> None:
        if self.node is not None:
            self.node.clear_dead_owner()
            if self.node.state.exists():
                self.node.down(restore_apiserver=False)


@dataclass(frozen=True)
class BuiltImages:
    operator: str
    trainer: str


class PodLog:
    """`kubectl logs -f` of a Pod, kept after the Pod is gone."""

    def __init__(self, kubeconfig: Path, namespace: str, pod: str, path: Path) -> None:
        self.path = path
        with path.open("wb") as out:
            self.proc = subprocess.Popen(
                [str(default_bin_dir() / "kubectl"), f"--kubeconfig={kubeconfig}", "logs",
                 "-f", "-n", namespace, pod],
                stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip

    def text(self) -> str:
        return self.path.read_text(errors="replace")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
        self.proc.wait(timeout=30)
