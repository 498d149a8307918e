"""`cluster down` (RealNode.down) leaves nothing of the real node on this machine.

A snapshot of the host before the node starts, the node running real Pods (a
network, volumes, a Service through kube-proxy), the node removed, a snapshot after:
they must be equal. Local only: on kind the node is not this machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from shunter.devcluster.controlplane import ControlPlane
from shunter.devcluster.realnode import (
    NODE_NAME,
    RealNode,
    RealNodeError,
    pool_selector,
    toleration,
)
from shunter.devcluster.runtime import RUN_DIR
from shunter.domain.podspec import CONTAINER_SECURITY_CONTEXT
from tests.support.hoststate import snapshot
from tests.support.polling import wait_for
from tests.support.realnode import BuiltImages, LazyNode


def a_pod(name: str, image: str, script: str) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": pool_selector(),
            "tolerations": [toleration()],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 65532,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "main", "image": image, "imagePullPolicy": "Never",
                "command": ["python", "-c", script],
                "securityContext": CONTAINER_SECURITY_CONTEXT,
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                "ports": [{"containerPort": 8080}],
            }],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }  # fmt: skip


SERVE = """
import http.server, os, ssl, urllib.request
token = open("/var/run/secrets/kubernetes.io/serviceaccount/token").read()
ca = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt"
url = "https://" + os.environ["KUBERNETES_SERVICE_HOST"] + "/version"
request = urllib.request.Request(url, headers={"Authorization": "Bearer " + token})
print(urllib.request.urlopen(request, context=ssl.create_default_context(cafile=ca)).status)
http.server.HTTPServer(("", 8080), http.server.SimpleHTTPRequestHandler).serve_forever()
"""
# Until the server listens and kube-proxy has the Service's rules, a call is refused.
CALL = """
import time, urllib.request
deadline = time.monotonic() + 90
while True:
    try:
        print(urllib.request.urlopen("http://server:8080/", timeout=5).status)
        break
    except OSError as error:
        if time.monotonic() > deadline:
            raise
        print("retrying:", error, flush=True)
        time.sleep(0.5)
"""


def test_node_down_leaves_nothing_on_the_host(
    control_plane: ControlPlane | None,
    lazy_node: LazyNode,
    kube_api: client.ApiClient,
    namespace: str,
    built_images: BuiltImages,
):
    if control_plane is None or os.environ.get("SHUNTER_REAL_NODE_EXEC"):
        pytest.skip("checks this machine's own real node")
    # A node left by an earlier test, or by a killed session, would hide what this
    # one creates.
    lazy_node.down()
    bin_dir = Path(control_plane.bin_dir)
    before = snapshot(bin_dir)

    node = lazy_node.ensure_up()
    assert node is not None
    core = client.CoreV1Api(kube_api)
    core.create_namespaced_pod(namespace, a_pod("server", built_images.operator, SERVE))
    core.create_namespaced_service(namespace, {
        "metadata": {"name": "server"},
        "spec": {"selector": {"app": "server"}, "ports": [{"port": 8080}]},
    })  # fmt: skip

    def phase(name: str) -> str:
        return str(core.read_namespaced_pod(name, namespace).status.phase)

    wait_for(lambda: phase("server") == "Running", timeout=120, what="the server Pod")

    # The pod reached the API server through the `kubernetes` Service (its first line).
    def server_log() -> str:
        # The API server may still hold a connection to the kubelet this test replaced
        # (a 500 "use of closed network connection" on its first reuse): ask again.
        try:
            return str(core.read_namespaced_pod_log("server", namespace))
        except ApiException as exc:
            if exc.status is not None and exc.status >= 500:
                return ""
            raise

    wait_for(
        lambda: "200" in server_log(),
        timeout=60,
        what="the Pod's call to the API server",
    )
    # A second Pod reaches the first through its Service: kube-proxy's rules, DNS-free.
    address = str(core.read_namespaced_service("server", namespace).spec.cluster_ip)
    core.create_namespaced_pod(
        namespace, a_pod("client", built_images.operator, CALL.replace("server", address))
    )
    wait_for(lambda: phase("client") in ("Succeeded", "Failed"), timeout=150,
             what="the client Pod to finish")  # fmt: skip
    log = core.read_namespaced_pod_log("client", namespace)
    assert phase("client") == "Succeeded", log
    assert log.splitlines()[-1] == "200"
    assert core.read_node(NODE_NAME).spec.taints[0].key == "shunter.dev/real-node"

    lazy_node.down()
    after = snapshot(bin_dir)
    assert before.differences(after) == []


def test_a_node_left_by_a_killed_session_is_taken_over(
    control_plane: ControlPlane | None, lazy_node: LazyNode, tmp_path: Path
):
    """A session killed before it took its node down leaves the host's owner record
    pointing at its cluster, whose daemons are dead: the next node cleans up after it
    and starts, where it used to refuse until someone removed the record by hand."""
    if control_plane is None or os.environ.get("SHUNTER_REAL_NODE_EXEC"):
        pytest.skip("checks this machine's own real node")
    lazy_node.down()
    left = control_plane.state_dir.parent / f"{control_plane.state_dir.name}-killed" / "realnode"
    (left / "pids").mkdir(parents=True)
    # What a killed session leaves: pid records of daemons that are gone.
    dead = subprocess.Popen(["true"])
    dead.wait()
    for daemon in ("kubelet", "kube-proxy"):
        (left / "pids" / f"{daemon}.pid").write_text(
            f"{dead.pid}\n{Path(control_plane.bin_dir) / daemon}\n"
        )
    RUN_DIR.mkdir(exist_ok=True)
    (RUN_DIR / "owner").write_text(str(left))
    try:
        node = lazy_node.ensure_up()
        assert node is not None
        assert node.running()
        assert (RUN_DIR / "owner").read_text() == str(node.state)
        assert not left.exists()
    finally:
        shutil.rmtree(left.parent, ignore_errors=True)


def test_a_live_node_of_another_cluster_is_not_taken_over(
    control_plane: ControlPlane | None, lazy_node: LazyNode
):
    if control_plane is None or os.environ.get("SHUNTER_REAL_NODE_EXEC"):
        pytest.skip("checks this machine's own real node")
    node = lazy_node.ensure_up()
    assert node is not None
    other = RealNode(control_plane)
    other.state = control_plane.state_dir.parent / "another-cluster" / "realnode"
    with pytest.raises(RealNodeError, match="already runs on this machine"):
        other.clear_dead_owner()
    assert node.running()
