"""`cluster down` (RealNode.down) leaves nothing of the real node on this machine.

A snapshot of the host before the node starts, the node running real Pods (a
network, volumes, a Service through kube-proxy), the node removed, a snapshot after:
they must be equal. Local only: on kind the node is not this machine.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kubernetes import client

from shunter.devcluster.controlplane import ControlPlane
from shunter.devcluster.realnode import NODE_NAME, pool_selector, toleration
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
    lazy_node.down()  # a node left by an earlier test would hide what this one creates
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
    wait_for(
        lambda: "200" in core.read_namespaced_pod_log("server", namespace),
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
