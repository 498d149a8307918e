"""The Helm chart: lint, rendering, values schema and docs, and manifests/ in sync.

Needs the pinned helm of `make controlplane`, no cluster; the server-side check of the
rendered objects is in tests/cluster/packaging/test_chart.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.support.chart import CHART, HELM, REPO, helm, render


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
    # Only the operator's observer (Nodes, bound Pods, queues), the token/access reviewer
    # and the users' roles (granted per namespace by RoleBindings) stay cluster-wide.
    assert sorted(r["metadata"]["name"].split("-", 1)[1] for r in cluster_roles) == [
        "api-reviewer",
        "operator-observer",
        "trainingjob-editor",
        "trainingjob-viewer",
    ]


@pytest.mark.parametrize("scope", ["", "admission.watchNamespaces={ml}"])
def test_no_component_may_read_crds_or_namespaces(scope: str):
    """kopf's scanning is off (shunter.operator.main) and nothing else reads them."""
    docs = render(*filter(None, [scope]))
    granted = {(group, resource) for d in docs if d["kind"] in ("Role", "ClusterRole")
               for rule in d["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"]}  # fmt: skip
    assert ("shunter.dev", "trainingjobs") in granted  # the roles were found
    assert ("apiextensions.k8s.io", "customresourcedefinitions") not in granted
    assert ("", "namespaces") not in granted


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
        ("admission.watchNamespaces={Not_A_Namespace}", "watchNamespaces"),
        ("api.tls.secretName=Bad_Name", "secretName"),
        ("api.podDisruptionBudget.minAvailable=0", "minAvailable"),
        ("networkPolicy.enabled=maybe", "enabled"),
        ("networkPolicy.databasePort=0", "databasePort"),
        ("namespace.create=yes", "create"),
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


def env_of(docs: list[dict], component: str) -> dict[str, str]:
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"
                     and d["metadata"]["name"].endswith(f"-{component}")]  # fmt: skip
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_watch_namespaces_give_a_role_in_each_and_no_cluster_wide_job_rights():
    docs = render("admission.watchNamespaces={ml,vision}")
    roles = {(d["kind"], d["metadata"]["name"], d["metadata"].get("namespace")) for d in docs
             if d["kind"] in ("Role", "RoleBinding")}  # fmt: skip
    for namespace in ("ml", "vision"):
        for kind in ("Role", "RoleBinding"):
            for component in ("operator", "api"):
                assert (kind, f"shunter-{component}", namespace) in roles
    cluster_roles = {d["metadata"]["name"] for d in docs if d["kind"] == "ClusterRole"}
    assert "shunter-operator" not in cluster_roles
    assert "shunter-api" not in cluster_roles
    assert env_of(docs, "operator")["SHUNTER_NAMESPACE"] == "ml,vision"
    api = env_of(docs, "api")
    assert api["SHUNTER_API_WATCH_NAMESPACE"] == "ml,vision"
    assert api["SHUNTER_API_NAMESPACE"] == "ml"  # requests naming none go to the first


def test_system_namespaces_and_the_release_namespace_are_excluded_by_default():
    docs = render()
    excluded = "kube-system,kube-public,kube-node-lease,shunter-system"
    for component in ("operator", "api"):
        assert env_of(docs, component)["SHUNTER_EXCLUDE_NAMESPACES"] == excluded
    # The policy refuses TrainingJobs there at the API server, from the same list.
    policy = next(d for d in docs if d["kind"] == "ValidatingAdmissionPolicy"
                  and d["metadata"]["name"].endswith("-trainingjobs"))  # fmt: skip
    rule = policy["spec"]["validations"][0]["expression"]
    listed = json.dumps(excluded.split(","), separators=(",", ":"))
    assert rule == f"!(namespaceObject.metadata.name in {listed})"
    # Requests naming no namespace go to one that is served.
    assert env_of(docs, "api")["SHUNTER_API_NAMESPACE"] == "default"
    kept = render("admission.excludeReleaseNamespace=false", "admission.excludeNamespaces={legacy}")
    assert env_of(kept, "operator")["SHUNTER_EXCLUDE_NAMESPACES"] == "legacy"


def test_watching_an_excluded_namespace_is_refused():
    for value in (
        "admission.watchNamespaces={kube-system}",
        "admission.watchNamespace=shunter-system",
    ):
        result = helm("template", "x", str(CHART), "-n", "shunter-system", "--set", value,
                      check=False)  # fmt: skip
        assert result.returncode != 0
        assert "which is excluded" in result.stderr


def policies(docs: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["metadata"]["namespace"], d["metadata"]["name"]): d["spec"] for d in docs
            if d["kind"] == "NetworkPolicy"}  # fmt: skip


JOB_PODS = {"matchExpressions": [{"key": "shunter.dev/job-name", "operator": "Exists"}]}


def test_network_policies_for_the_api_the_operator_and_each_watched_namespaces_jobs():
    found = policies(render("admission.watchNamespaces={ml}", "database.url=postgresql://db/x"))
    assert set(found) == {("shunter-system", "shunter-api"), ("shunter-system", "shunter-operator"),
                          ("ml", "shunter-jobs")}  # fmt: skip
    api = found["shunter-system", "shunter-api"]
    assert api["policyTypes"] == ["Ingress"]
    assert api["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"
    assert api["ingress"] == [{"ports": [{"port": 8000, "protocol": "TCP"}]}]

    operator = found["shunter-system", "shunter-operator"]
    assert operator["policyTypes"] == ["Ingress", "Egress"]
    assert operator["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    egress_ports = [sorted(p["port"] for p in rule["ports"]) for rule in operator["egress"]]
    assert egress_ports == [[53, 53], [443, 6443], [5432]]

    jobs = found["ml", "shunter-jobs"]
    assert jobs["podSelector"] == JOB_PODS
    assert jobs["policyTypes"] == ["Ingress", "Egress"]
    assert jobs["ingress"] == [{"from": [{"podSelector": JOB_PODS}]}]
    to_jobs, dns, to_api = jobs["egress"]
    assert to_jobs == {"to": [{"podSelector": JOB_PODS}]}  # every port: ranks talk freely
    assert {p["port"] for p in dns["ports"]} == {53}
    assert dns["to"][0]["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "kube-system"
    }
    assert to_api["ports"] == [{"port": 8000, "protocol": "TCP"}]
    (peer,) = to_api["to"]
    assert peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "shunter-system"
    }
    assert peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "api"


def test_network_policies_follow_their_switches():
    assert ("shunter-system", "shunter-operator") in policies(render())
    # Serving every namespace, the chart cannot know where job Pods run.
    assert not [k for k in policies(render()) if k[1] == "shunter-jobs"]
    # Without a database, no PostgreSQL egress.
    egress = policies(render())["shunter-system", "shunter-operator"]["egress"]
    assert all(5432 not in {p["port"] for p in rule["ports"]} for rule in egress)
    assert policies(render("networkPolicy.enabled=false", "admission.watchNamespaces={ml}")) == {}
    only_jobs = render("networkPolicy.api.enabled=false", "networkPolicy.operator.enabled=false",
                       "admission.watchNamespaces={ml}")  # fmt: skip
    assert set(policies(only_jobs)) == {("ml", "shunter-jobs")}
    extra = render(
        "admission.watchNamespaces={ml}", "networkPolicy.jobs.extraEgress[0].ports[0].port=9000"
    )
    assert policies(extra)["ml", "shunter-jobs"]["egress"][-1] == {"ports": [{"port": 9000}]}


def test_a_restricted_api_ingress_still_lets_the_job_pods_in():
    gateway = "networkPolicy.api.from[0].podSelector.matchLabels.role=gateway"
    found = policies(render("admission.watchNamespaces={ml}", gateway))
    peers = found["shunter-system", "shunter-api"]["ingress"][0]["from"]
    assert peers[0] == {"podSelector": {"matchLabels": {"role": "gateway"}}}
    assert peers[1]["podSelector"] == JOB_PODS
    assert peers[1]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "ml"}


def test_a_disruption_budget_only_with_two_api_replicas_or_more():
    assert not [d for d in render() if d["kind"] == "PodDisruptionBudget"]
    docs = render("api.replicas=3")
    (budget,) = [d for d in docs if d["kind"] == "PodDisruptionBudget"]
    assert budget["spec"]["minAvailable"] == 1
    (api,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "shunter-api"
    ]
    pod_labels = api["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    result = helm("template", "x", str(CHART), "--set", "api.replicas=2",
                  "--set", "api.podDisruptionBudget.minAvailable=2", check=False)  # fmt: skip
    assert result.returncode != 0
    assert "minAvailable must be below api.replicas" in result.stderr


def test_api_tls_mounts_the_secret_and_probes_over_https():
    docs = render("api.tls.secretName=api-cert")
    (api,) = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "shunter-api"
    ]
    pod = api["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SHUNTER_API_TLS_CERTFILE"] == "/etc/shunter/tls/tls.crt"
    assert env["SHUNTER_API_TLS_KEYFILE"] == "/etc/shunter/tls/tls.key"
    (mount,) = [m for m in container["volumeMounts"] if m["name"] == "tls"]
    assert mount["mountPath"] == "/etc/shunter/tls"
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == "tls"]
    assert volume["secret"]["secretName"] == "api-cert"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["scheme"] == "HTTPS"
    (service,) = [d for d in docs if d["kind"] == "Service"]
    assert service["spec"]["ports"][0]["appProtocol"] == "https"
    # Plain HTTP without it.
    (plain,) = [
        d for d in render() if d["kind"] == "Deployment" and d["metadata"]["name"] == "shunter-api"
    ]
    (container,) = plain["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["scheme"] == "HTTP"
    assert "SHUNTER_API_TLS_CERTFILE" not in {e["name"] for e in container["env"]}


def test_the_release_namespace_is_rendered_restricted_only_when_asked():
    assert not [d for d in render() if d["kind"] == "Namespace"]
    (namespace,) = [d for d in render("namespace.create=true") if d["kind"] == "Namespace"]
    assert namespace["metadata"]["name"] == "shunter-system"
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_the_policy_reaches_both_sides_and_the_default_queue_takes_its_access_from_values():
    docs = render("queues[0].name=default", "queues[0].maxPriority=100",
                  "queues[0].namespaceSelector.matchLabels.team=ml")  # fmt: skip
    (queue,) = [d for d in docs if d["kind"] == "TrainingQueue"]
    assert queue["spec"] == {
        "maxPriority": 100,
        "namespaceSelector": {"matchLabels": {"team": "ml"}},
    }
    # The operator checks leaving jobs against the very policies the chart installs.
    names = {d["metadata"]["name"] for d in docs if d["kind"] == "ValidatingAdmissionPolicy"}
    policies = set(env_of(docs, "operator")["SHUNTER_POLICIES"].split(","))
    assert policies <= names
    assert len(policies) == 2
    # Writes act as the caller: the API has no create/patch of its own on TrainingJobs.
    api_rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role")
                 and d["metadata"]["name"].endswith("-api") for r in d["rules"]]  # fmt: skip
    job_verbs = {v for r in api_rules if "trainingjobs" in r["resources"] for v in r["verbs"]}
    assert not job_verbs & {"create", "patch", "update"}
    assert {"impersonate-on:user-info:create", "impersonate-on:serviceaccount:patch"} <= job_verbs
    off = render("policy.enabled=false")
    assert not [d for d in off if d["kind"] == "ValidatingAdmissionPolicy"
                and d["metadata"]["name"].endswith(("-trainingjobs", "-queue-access"))]  # fmt: skip
    assert "SHUNTER_POLICIES" not in env_of(off, "operator")
