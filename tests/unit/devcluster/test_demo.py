"""`make demo` installs every CRD the README documents: it applies the chart's CRD
directory (shunter.devcluster.demo.install_crd; tests/cluster/devcluster/test_demo.py
checks that they are served)."""

from __future__ import annotations

import re

import yaml

from shunter.devcluster import demo

DOCUMENTED = set(re.findall(r"`(Training[A-Z][a-z]+)`", (demo.REPO / "README.md").read_text()))


def test_the_demo_applies_every_crd_the_readme_documents():
    assert "TrainingJob" in DOCUMENTED  # the pattern finds them
    applied = {yaml.safe_load(p.read_text())["spec"]["names"]["kind"]
               for p in demo.CRDS.glob("*.yaml")}  # fmt: skip
    assert applied >= DOCUMENTED
