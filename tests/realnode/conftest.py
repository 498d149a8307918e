"""Fixtures of the real-node tests: the node, the images, and the system around them.

Locally the node is added to the session's control plane the first time a test here
needs it (so a run without these tests never starts a kubelet) and removed at the end
of the session. With KUBECONFIG set (kind: hack/e2e-kind.sh), the node is the one
labelled shunter.dev/node-pool=real, and the images are named by SHUNTER_IMAGE and
SHUNTER_TRAINER_IMAGE.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import pytest
from kubernetes import client

from shunter.devcluster import images, volumes
from shunter.devcluster.controlplane import ControlPlane, default_bin_dir
from shunter.devcluster.runtime import Runtime, cache_dir
from shunter.domain.podspec import TRAINER_UID
from tests.support.api import ApiProcess
from tests.support.operator import OperatorProcess
from tests.support.realnode import BuiltImages, LazyNode, NodeHandle, find_node


@pytest.fixture(scope="session")
def lazy_node(control_plane: ControlPlane | None) -> Iterator[LazyNode]:
    lazy = LazyNode(control_plane)
    try:
        yield lazy
    finally:
        lazy.down()


@pytest.fixture(scope="session")
def built_images(control_plane: ControlPlane | None) -> BuiltImages:
    if control_plane is None:
        given = [os.environ.get(v, "") for v in ("SHUNTER_IMAGE", "SHUNTER_TRAINER_IMAGE")]
        assert all(given), (
            "with KUBECONFIG, SHUNTER_IMAGE and SHUNTER_TRAINER_IMAGE name the images"
        )
        return BuiltImages(*given)
    # A no-op when `make images` ran (make test does): only checks the names exist.
    built = images.ensure(Runtime(default_bin_dir()), cache_dir() / "images")
    return BuiltImages(built.operator, built.trainer)


@pytest.fixture
def node(lazy_node: LazyNode, kube_api: client.ApiClient, built_images: BuiltImages) -> NodeHandle:
    return find_node(kube_api, lazy_node.ensure_up())


@pytest.fixture
def restricted(kube_api: client.ApiClient, namespace: str) -> str:
    """The test namespace, enforcing the restricted Pod Security Standard."""
    client.CoreV1Api(kube_api).patch_namespace(
        namespace,
        {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}},
    )
    return namespace


@pytest.fixture
def checkpoint_claim(
    node: NodeHandle, kube_api: client.ApiClient, restricted: str, unique_name: str
) -> Iterator[Callable[[str], str]]:
    """claim(name): a PersistentVolumeClaim on a directory of the real node."""
    made: list[tuple[str, str]] = []
    core = client.CoreV1Api(kube_api)

    def claim(name: str) -> str:
        path = f"/var/tmp/shunter-checkpoints/{unique_name}-{name}"
        node.make_dir(path, uid=TRAINER_UID)
        pv, pvc = volumes.checkpoint_volume(name, restricted, path=path, node=node.name)
        core.create_persistent_volume(pv)
        core.create_namespaced_persistent_volume_claim(restricted, pvc)
        made.append((pv["metadata"]["name"], path))
        return name

    yield claim
    for volume, path in made:
        core.delete_persistent_volume(volume)
        node.remove_dir(path)
    node.sh("rmdir /var/tmp/shunter-checkpoints 2>/dev/null || true", check=False)


@pytest.fixture
def real_system(
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    restricted: str,
    node: NodeHandle,
    built_images: BuiltImages,
) -> tuple[OperatorProcess, ApiProcess]:
    """The operator and the API for the test namespace, trainer image by default;
    started at once, as neither needs the other to become ready."""
    # The margin lets the kubelet's own SIGKILL at the end of a grace be reported before
    # the operator would force the Pod (3 s was passed over on a loaded machine).
    operator = start_operator(SHUNTER_GRACE_MARGIN_SECONDS="5", wait=False)
    api = start_api(SHUNTER_API_DEFAULT_IMAGE=built_images.trainer, wait=False)
    return operator.wait_started(), api.wait_ready()
