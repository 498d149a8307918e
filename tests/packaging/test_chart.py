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
    # Only the CRD/namespace observer, the token/access reviewer and the users' roles
    # (granted per namespace by RoleBindings) stay cluster-wide.
    assert sorted(r["metadata"]["name"].split("-", 1)[1] for r in cluster_roles) == [
        "api-reviewer",
        "operator-observer",
        "trainingjob-editor",
        "trainingjob-viewer",
    ]


def rules_of(role: dict) -> dict[str, set[str]]:
    """resource -> verbs of a ClusterRole's shunter.dev rules."""
    found: dict[str, set[str]] = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == ["shunter.dev"]
        for resource in rule["resources"]:
            found.setdefault(resource, set()).update(rule["verbs"])
    return found


def test_user_roles_are_aggregated_into_the_built_in_roles():
    roles = {d["metadata"]["name"]: d for d in render() if d["kind"] == "ClusterRole"}
    editor, viewer = roles["shunter-trainingjob-editor"], roles["shunter-trainingjob-viewer"]
    aggregate = "rbac.authorization.k8s.io/aggregate-to-"
    assert {k for k, v in editor["metadata"]["labels"].items() if k.startswith(aggregate)
            and v == "true"} == {aggregate + "admin", aggregate + "edit"}  # fmt: skip
    assert {k for k in viewer["metadata"]["labels"] if k.startswith(aggregate)} == {
        aggregate + "view"
    }
    # The verbs the API's SubjectAccessReview asks for: create/patch to submit and
    # cancel, get/list to read; the viewer can change nothing.
    assert rules_of(editor)["trainingjobs"] >= {"create", "get", "list", "watch", "patch"}
    assert rules_of(viewer)["trainingjobs"] == {"get", "list", "watch"}
    for role in (editor, viewer):
        assert rules_of(role)["trainingqueues"] == {"get", "list", "watch"}
        assert "trainingjobs/status" in rules_of(role)
        assert not rules_of(role)["trainingjobs/status"] - {"get", "list", "watch"}


def test_user_roles_can_be_turned_off_or_left_out_of_aggregation():
    assert not [
        d for d in render("userRoles.create=false") if "trainingjob-" in d["metadata"]["name"]
    ]
    plain = [d for d in render("userRoles.aggregate=false") if d["kind"] == "ClusterRole"]
    assert all(
        not k.startswith("rbac.authorization.k8s.io/aggregate-to")
        for d in plain
        for k in d["metadata"]["labels"]
    )
    assert len([d for d in plain if "trainingjob-" in d["metadata"]["name"]]) == 2


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
        ("api.simulator=maybe", "simulator"),
        ("userRoles.create=sometimes", "create"),
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
