"""Kubernetes helpers for tests: clients from a kubeconfig and throw-away namespaces."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.support.polling import wait_for


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


def account_with_role(api: client.ApiClient, namespace: str, name: str, verbs: list[str]) -> str:
    """A ServiceAccount bound to a Role with these verbs on trainingjobs; its token."""
    core, rbac = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
    if verbs:
        rbac.create_namespaced_role(
            namespace,
            {
                "metadata": {"name": name},
                "rules": [
                    {"apiGroups": ["shunter.dev"], "resources": ["trainingjobs"], "verbs": verbs}
                ],
            },
        )
        rbac.create_namespaced_role_binding(
            namespace,
            {
                "metadata": {"name": name},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
                "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": namespace}],
            },
        )
    return service_account_token(api, namespace, name)


def service_account_token(api: client.ApiClient, namespace: str, name: str) -> str:
    """A one-hour token of an existing ServiceAccount (TokenRequest)."""
    request = client.CoreV1Api(api).create_namespaced_service_account_token(
        name, namespace, {"spec": {"expirationSeconds": 3600}}
    )
    return str(request.status.token)
