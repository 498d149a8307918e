"""Kubernetes helpers for tests: clients from a kubeconfig, throw-away namespaces, and
users holding the chart's roles."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from shunter.devcluster.controlplane import default_bin_dir
from tests.support.polling import wait_for

CHART = Path(__file__).resolve().parents[2] / "charts/shunter"


def api_client(kubeconfig: Path) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(kubeconfig))


@contextmanager
def temporary_namespace(api: client.ApiClient, name: str) -> Iterator[str]:
    """Create a namespace, wait for its default ServiceAccount, delete it afterwards."""
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    try:
        wait_for(
            lambda: _has_default_account(core, name),
            timeout=60,
            what=f"default ServiceAccount in {name}",
        )
        yield name
    finally:
        core.delete_namespace(name, propagation_policy="Background", grace_period_seconds=0)


def _has_default_account(core: client.CoreV1Api, namespace: str) -> bool:
    try:
        core.read_namespaced_service_account("default", namespace)
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def read_pod_or_none(core: client.CoreV1Api, name: str, namespace: str) -> client.V1Pod | None:
    try:
        return core.read_namespaced_pod(name, namespace)
    except ApiException as exc:
        if exc.status == 404:
            return None
        raise


# The user roles the chart ships (charts/shunter/templates/user-roles.yaml), as a
# release named "shunter" names them.
EDITOR = "shunter-trainingjob-editor"
VIEWER = "shunter-trainingjob-viewer"


def user_roles() -> list[dict[str, Any]]:
    """The chart's user ClusterRoles, rendered by helm with the default values."""
    rendered = subprocess.run(
        [str(default_bin_dir() / "helm"), "template", "shunter", str(CHART),
         "--show-only", "templates/user-roles.yaml"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return [d for d in yaml.safe_load_all(rendered) if d]


def install_user_roles(api: client.ApiClient) -> list[str]:
    """Create (or update) the chart's user ClusterRoles in the cluster; their names."""
    rbac = client.RbacAuthorizationV1Api(api)
    names = []
    for role in user_roles():
        name = role["metadata"]["name"]
        try:
            rbac.create_cluster_role(role)
        except ApiException as exc:
            if exc.status != 409:
                raise
            rbac.replace_cluster_role(name, role)
        names.append(name)
    return names


def token_kubeconfig(admin: Path, token: str, path: Path) -> Path:
    """A kubeconfig for the same cluster that authenticates with a bearer token."""
    config = yaml.safe_load(admin.read_text())
    context = next(c for c in config["contexts"] if c["name"] == config["current-context"])
    cluster = next(c for c in config["clusters"] if c["name"] == context["context"]["cluster"])
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [cluster],
                "users": [{"name": "sa", "user": {"token": token}}],
                "contexts": [{"name": "sa", "context": {"cluster": cluster["name"], "user": "sa"}}],
                "current-context": "sa",
            }
        )
    )
    return path
