"""Phase names have one owner, shunter.domain.model.Phase: the API's filters use the
enum itself; the CRD's enum and CEL rules and the mirror's CHECK constraint are
written out in YAML and SQL, so these tests prove they say the same."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from shunter.domain.model import TERMINAL_PHASES, Phase

CRD = Path(__file__).parents[3] / "charts/shunter/crds/trainingjobs.shunter.dev.yaml"
NAMES = [p.value for p in Phase]


def _version() -> dict[str, Any]:
    [version] = yaml.safe_load(CRD.read_text())["spec"]["versions"]
    return version  # type: ignore[no-any-return]


def test_the_crds_phase_enum_is_the_models():
    schema = _version()["schema"]["openAPIV3Schema"]
    assert schema["properties"]["status"]["properties"]["phase"]["enum"] == NAMES


def test_the_crds_cel_rules_name_only_phases_and_the_terminal_ones_are_the_models():
    rules = [r["rule"] for r in _version()["schema"]["openAPIV3Schema"]["x-kubernetes-validations"]]
    lists = [
        [n.strip().strip("'") for n in found.split(",")]
        for rule in rules
        if "status.phase" in rule
        for found in re.findall(r"status\.phase in \[([^\]]*)\]", rule)
    ]
    assert lists, "no CEL rule names phases: the test no longer reads what it should"
    for names in lists:
        assert set(names) <= set(NAMES), names
    terminal = {p.value for p in TERMINAL_PHASES}
    assert any(set(names) == terminal for names in lists)
