"""`make demo` installs every CRD the README documents, and each is served."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shunter.devcluster import demo
from shunter.devcluster.controlplane import ControlPlane
from tests.unit.devcluster.test_demo import DOCUMENTED


def is_established(crd: dict[str, Any]) -> bool:
    conditions = crd["status"].get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


def test_the_demo_installs_them_on_a_real_control_plane(control_plane: ControlPlane | None):
    if control_plane is None:
        pytest.skip("KUBECONFIG names a cluster: the demo runs on its own control plane")
    demo.install_crd(control_plane)  # an apply: the session may have some already
    crds = json.loads(control_plane.kubectl("get", "crd", "-o", "json"))["items"]
    established = {crd["spec"]["names"]["kind"] for crd in crds if is_established(crd)}
    assert established >= DOCUMENTED
