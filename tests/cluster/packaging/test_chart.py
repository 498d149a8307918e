"""The chart with every hardening switch on, checked by the real API server."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from kubernetes import client

from shunter.devcluster.controlplane import default_bin_dir
from tests.support.chart import CHART, helm
from tests.support.kube import temporary_namespace


def test_every_security_object_is_accepted_by_the_api_server(
    kubeconfig: Path, kube_api: client.ApiClient, unique_name: str, crd: None
):
    """The chart with every hardening switch on, in server-side dry-run: the API server
    validates each NetworkPolicy, the budget, the Roles per namespace and the TLS
    volume (it does not enforce the policies: see the README)."""
    with contextlib.ExitStack() as namespaces:
        release, ml, vision = (
            namespaces.enter_context(temporary_namespace(kube_api, f"{unique_name}-{suffix}"))
            for suffix in ("system", "ml", "vision")
        )
        args = ["template", "shunter", str(CHART), "--namespace", release]
        gateway = "networkPolicy.api.from[0].podSelector.matchLabels.role=gateway"
        for value in (f"admission.watchNamespaces={{{ml},{vision}}}", "api.replicas=2",
                      "api.tls.secretName=api-cert", "namespace.create=true",
                      "database.url=postgresql://u@db/shunter", gateway):  # fmt: skip
            args += ["--set", value]
        rendered = helm(*args).stdout
        result = subprocess.run(
            [str(default_bin_dir() / "kubectl"), "--kubeconfig", str(kubeconfig), "apply",
             "--dry-run=server", "-f", "-"],
            input=rendered, capture_output=True, text=True,
        )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for created in ("networkpolicy.networking.k8s.io/shunter-api",
                    "networkpolicy.networking.k8s.io/shunter-operator",
                    "networkpolicy.networking.k8s.io/shunter-jobs",
                    "poddisruptionbudget.policy/shunter-api",
                    "role.rbac.authorization.k8s.io/shunter-operator",
                    "deployment.apps/shunter-api"):  # fmt: skip
        assert created in result.stdout
    # One jobs policy and one Role per component in each watched namespace.
    assert result.stdout.count("networkpolicy.networking.k8s.io/shunter-jobs") == 2
    assert result.stdout.count("role.rbac.authorization.k8s.io/shunter-api ") == 2
