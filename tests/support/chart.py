"""The Helm chart as the tests render it: the chart's path and the pinned helm binary."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from shunter.devcluster.controlplane import default_bin_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/shunter"
HELM = str(default_bin_dir() / "helm")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=check)


def render(*sets: str, release: str = "shunter") -> list[dict[str, Any]]:
    args = ["template", release, str(CHART), "--namespace", "shunter-system"]
    for value in sets:
        args += ["--set", value]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]
