"""ServiceAccounts with a role and their tokens: how the tests and the benches act as
a user of the API with auth on (TokenReview + SubjectAccessReview decide, as in a
real install)."""

from __future__ import annotations

from kubernetes import client


def account_with_role(
    api: client.ApiClient, namespace: str, name: str, cluster_role: str | None
) -> str:
    """A ServiceAccount granted cluster_role in the namespace (a RoleBinding, the way a
    platform team grants the chart's roles); None grants nothing. Its token."""
    meta = client.V1ObjectMeta(name=name)
    client.CoreV1Api(api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=meta)
    )
    if cluster_role:
        client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(
            namespace,
            client.V1RoleBinding(
                metadata=meta,
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=cluster_role
                ),
                subjects=[
                    client.RbacV1Subject(kind="ServiceAccount", name=name, namespace=namespace)
                ],
            ),
        )
    return service_account_token(api, namespace, name)


def service_account_token(
    api: client.ApiClient, namespace: str, name: str, *, seconds: int = 3600
) -> str:
    """A token of an existing ServiceAccount (TokenRequest), one hour by default."""
    request = client.CoreV1Api(api).create_namespaced_service_account_token(
        name,
        namespace,
        client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
        ),
    )
    status = request.status
    assert status is not None, "the API server answered a TokenRequest without a token"
    return str(status.token)
