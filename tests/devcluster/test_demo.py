"""`make demo` installs every CRD the README documents: it applies the chart's CRD
directory (shunter.devcluster.demo.install_crd) and waits until each is served."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import yaml

from shunter.devcluster import demo
from shunter.devcluster.controlplane import ControlPlane

DOCUMENTED = set(re.findall(r"`(Training[A-Z][a-z]+)`", (demo.REPO / "README.md").read_text()))


def test_the_demo_applies_every_crd_the_readme_documents():
    assert "TrainingJob" in DOCUMENTED  # the pattern finds them
    applied = {yaml.safe_load(p.read_text())["spec"]["names"]["kind"]
               for p in demo.CRDS.glob("*.yaml")}  # fmt: skip
    assert applied >= DOCUMENTED


def is_established(crd: dict[str, Any]) -> bool:
    conditions = crd["status"].get("conditions") or []
    return any(c["type"] == "Established" and c["status"] == "True" for c in conditions)


@pytest.mark.cluster
def test_the_demo_installs_them_on_a_real_control_plane(control_plane: ControlPlane | None):
    if control_plane is None:
        pytest.skip("KUBECONFIG names a cluster: the demo runs on its own control plane")
    demo.install_crd(control_plane)  # an apply: the session may have some already
    crds = json.loads(control_plane.kubectl("get", "crd", "-o", "json"))["items"]
    established = {crd["spec"]["names"]["kind"] for crd in crds if is_established(crd)}
    assert established >= DOCUMENTED
