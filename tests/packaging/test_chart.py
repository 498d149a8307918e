"""The Helm chart: lint, rendering, values schema and docs, and manifests/ in sync."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from shunter.devcluster.controlplane import default_bin_dir

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts/shunter"
HELM = str(default_bin_dir() / "helm")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([HELM, *args], capture_output=True, text=True, check=check)


def render(*sets: str, release: str = "shunter") -> list[dict]:
    args = ["template", release, str(CHART), "--namespace", "shunter-system"]
    for value in sets:
        args += ["--set", value]
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def test_lint_is_clean():
    result = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in result.stdout


def test_manifests_are_the_rendered_chart(tmp_path: Path):
    subprocess.run(
        [str(REPO / "hack/render-manifests.sh"), str(tmp_path)],
        check=True,
        env={**os.environ, "HELM": HELM},
    )
    for name in ("shunter.yaml", "kustomization.yaml", "namespace.yaml"):
        committed = (REPO / "manifests" / name).read_text()
        assert committed == (tmp_path / name).read_text(), (
            f"manifests/{name} drifted from the chart: run 'make manifests'"
        )


def test_long_release_names_are_truncated_to_63_characters():
    docs = render(release="a" * 53)
    names = [d["metadata"]["name"] for d in docs]
    assert names
    assert all(len(n) <= 63 for n in names), [n for n in names if len(n) > 63]
    # Truncation keeps the names distinct per kind.
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(set(keys)) == len(keys)


def test_watch_namespace_scopes_job_permissions_to_a_role():
    docs = render("admission.watchNamespace=ml")
    kinds = {(d["kind"], d["metadata"].get("namespace")) for d in docs}
    assert ("Role", "ml") in kinds
    assert ("RoleBinding", "ml") in kinds
    cluster_roles = [d for d in docs if d["kind"] == "ClusterRole"]
    # Only the CRD/namespace observer and the token/access reviewer stay cluster-wide.
    assert sorted(r["metadata"]["name"].rsplit("-", 1)[-1] for r in cluster_roles) == [
        "observer",
        "reviewer",
    ]


def test_pods_meet_restricted_pod_security():
    for doc in render("database.url=postgresql://u@db/shunter"):
        if doc["kind"] != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for container in pod["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            env = {e["name"]: e for e in container["env"]}
            assert env["DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"] == "database-url"


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("admission.maxRunning=0", "maxRunning"),
        ("api.auth=maybe", "auth"),
        ("admission.gpuBudget=-1", "gpuBudget"),
        ("operator.replicas=5", "replicas"),
    ],
)
def test_values_schema_rejects_bad_values(value: str, complaint: str):
    result = helm("template", "x", str(CHART), "--set", value, check=False)
    assert result.returncode != 0
    assert complaint in result.stderr


def test_every_value_is_documented():
    """Each value has a `# --` comment above it, or sits in a map that has one."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    documented_at: dict[int, bool] = {}  # indentation -> is the open key there documented
    undocumented = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)([A-Za-z]+):\s*(.*)$", line)
        if not match:
            continue
        indent = len(match.group(1))
        documented_at = {k: v for k, v in documented_at.items() if k < indent}
        own = i > 0 and lines[i - 1].strip().startswith("# --")
        inherited = any(documented_at.values())
        documented_at[indent] = own
        has_value = bool(match.group(3)) and not match.group(3).startswith("#")
        if has_value and not (own or inherited):
            undocumented.append(line.strip())
    assert undocumented == []
