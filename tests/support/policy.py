"""The chart's admission policies and its accounts, installed for one test.

The policies are rendered by helm from charts/shunter, exactly as an install renders
them, with a `fullnameOverride` of the test's own (objects of several tests never
collide) and a namespaceSelector that binds them to the test's labelled namespaces
only (the rest of the suite, sharing the cluster, never meets them). A team is a
ServiceAccount holding only the chart's editor role in its namespace, acting through
its own token: the API server decides everything it may do.
"""

from __future__ import annotations

import copy
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from shunter.devcluster.accounts import account_with_role, service_account_token
from shunter.devcluster.controlplane import default_bin_dir
from shunter.domain.model import GROUP, PLURAL, VERSION
from tests.support.kube import CHART, token_kubeconfig
from tests.support.polling import wait_for

POLICY_LABEL = "shunter.dev/policy-test"
# As on the API server the suite runs (Kubernetes 1.36): stamping is a mutating policy.
API_VERSIONS = ("admissionregistration.k8s.io/v1/MutatingAdmissionPolicy",)


def render(
    templates: tuple[str, ...], *, name: str, namespace: str, values: dict[str, Any]
) -> list[dict[str, Any]]:
    """helm template of the chart's `templates` with `values` (a release `name`)."""
    args = [str(default_bin_dir() / "helm"), "template", "shunter", str(CHART), "--namespace",
            namespace, "--set", f"fullnameOverride={name}", "--values", "-"]  # fmt: skip
    for version in API_VERSIONS:
        args += ["--api-versions", version]
    for template in templates:
        args += ["--show-only", template]
    rendered = subprocess.run(
        args, input=yaml.safe_dump(values), capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(rendered) if d]


class KubectlFailed(subprocess.CalledProcessError):
    """A CalledProcessError whose message says what kubectl said (a bare one leaves its
    stderr out of the test's report)."""

    def __str__(self) -> str:
        return f"{super().__str__()} kubectl said: {(self.stderr or '').strip()}"


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [str(default_bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig), *args],
        input=stdin, capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise KubectlFailed(done.returncode, done.args, output=done.stdout, stderr=done.stderr)
    return done.stdout


class Policies:
    """The chart's policies bound to the namespaces this object labels."""

    def __init__(self, kube_api: client.ApiClient, kubeconfig: Path) -> None:
        self.kube_api = kube_api
        self.kubeconfig = kubeconfig
        # A letter first: helm reads a value such as 669506e3 as a number (669506000).
        self.label = f"p{uuid.uuid4().hex[:8]}"
        self.name = f"pt-{self.label}"
        self.installed: list[dict[str, Any]] = []

    def bind(self, namespace: str, **labels: str) -> None:
        """Put `namespace` under the policies (and give it `labels`)."""
        patch = {"metadata": {"labels": {POLICY_LABEL: self.label, **labels}}}
        client.CoreV1Api(self.kube_api).patch_namespace(namespace, patch)

    def install(
        self, admission: dict[str, Any] | None = None, *, simulator: bool = True, **policy: Any
    ) -> None:
        """Render the policy and identity templates with `policy` (and `admission`)
        values and apply them (await_enforced tells when the API server enforces them)."""
        # The suite's nodes are kwok's: jobs say how long to "run" in sim.shunter.dev/*
        # (simulator=False: as the chart's defaults, which refuse those annotations).
        values = {"api": {"simulator": simulator}, "admission": admission or {},
                  "policy": {"namespaceSelector": {"matchLabels": {POLICY_LABEL: self.label}},
                             **policy}}  # fmt: skip
        docs = render(("templates/policy.yaml", "templates/identity.yaml"), name=self.name,
                      namespace="shunter-system", values=values)  # fmt: skip
        kubectl(self.kubeconfig, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
        self.installed = docs

    def remove(self) -> None:
        if self.installed:
            kubectl(self.kubeconfig, "delete", "--ignore-not-found", "-f", "-",
                    stdin=yaml.safe_dump_all(self.installed))  # fmt: skip
            self.installed = []

    @property
    def names(self) -> str:
        """SHUNTER_POLICIES for an operator that checks jobs against these policies."""
        return f"{self.name}-trainingjobs,{self.name}-queue-access"

    def await_enforced(self, namespace: str, bad_spec: dict[str, Any], *, timeout: float = 60):
        """Wait until a dry-run create of bad_spec in namespace is refused (policies
        reach the API server's admission chain a moment after they are created)."""
        custom = client.CustomObjectsApi(self.kube_api)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
                "metadata": {"generateName": "probe-"}, "spec": bad_spec}  # fmt: skip

        def refused() -> bool:
            try:
                custom.create_namespaced_custom_object(
                    GROUP, VERSION, namespace, PLURAL, body, dry_run="All"
                )
            except ApiException as exc:
                return exc.status in (403, 422) and self.name in (exc.body or "")
            return False

        wait_for(refused, timeout=timeout, what=f"policy {self.name} to be enforced")

    def await_stamping(
        self, namespace: str, good_spec: dict[str, Any], *, timeout: float = 60
    ) -> None:
        """Wait until the identity policy stamps a dry-run create of good_spec."""
        custom = client.CustomObjectsApi(self.kube_api)
        body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingJob",
                "metadata": {"generateName": "probe-"}, "spec": good_spec}  # fmt: skip

        def stamped() -> bool:
            made = custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURAL, body, dry_run="All"
            )
            return "shunter.dev/submitted-by" in (made["metadata"].get("annotations") or {})

        wait_for(stamped, timeout=timeout, what=f"identity policy {self.name} to stamp")


@contextmanager
def policies(kube_api: client.ApiClient, kubeconfig: Path) -> Iterator[Policies]:
    found = Policies(kube_api, kubeconfig)
    try:
        yield found
    finally:
        found.remove()


def token_client(kube_api: client.ApiClient, token: str) -> client.ApiClient:
    """A client of the same API server that authenticates with `token` only."""
    config = copy.copy(kube_api.configuration)
    config.cert_file = None
    config.key_file = None
    config.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(config)


def team(kube_api: client.ApiClient, namespace: str, role: str, name: str = "team") -> str:
    """A ServiceAccount of `namespace` holding only `role` there; its token."""
    return account_with_role(kube_api, namespace, name, role)


def account_kubeconfig(
    kube_api: client.ApiClient, kubeconfig: Path, *, namespace: str, name: str, out: Path
) -> Path:
    """A kubeconfig acting as ServiceAccount namespace/name (a token), for a service the
    test runs with the chart's own RBAC instead of the admin's credentials."""
    return token_kubeconfig(kubeconfig, service_account_token(kube_api, namespace, name), out)


@contextmanager
def chart_account(
    kube_api: client.ApiClient, kubeconfig: Path, *, component: str, namespace: str, out: Path,
    values: dict[str, Any] | None = None,
) -> Iterator[Path]:  # fmt: skip
    """A component's ServiceAccount ("api" or "operator") and the chart's RBAC, rendered
    for a release in `namespace` (every namespace when `values` names none to watch),
    in the cluster while the context lasts; a kubeconfig acting as that account."""
    name = f"{component[:3]}-{uuid.uuid4().hex[:6]}"
    docs = render(("templates/rbac.yaml", "templates/serviceaccounts.yaml"), name=name,
                  namespace=namespace, values=values or {})  # fmt: skip
    manifest = yaml.safe_dump_all(docs)
    kubectl(kubeconfig, "apply", "-n", namespace, "-f", "-", stdin=manifest)
    try:
        yield account_kubeconfig(kube_api, kubeconfig, namespace=namespace,
                                 name=f"{name}-{component}", out=out)  # fmt: skip
    finally:
        kubectl(kubeconfig, "delete", "--ignore-not-found", "-n", namespace, "-f", "-",
                stdin=manifest)  # fmt: skip
