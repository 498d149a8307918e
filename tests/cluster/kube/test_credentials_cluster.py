"""Credentials against the real API server: tokens rotated and revoked, an exec plugin's
token expiring, a client certificate replaced on disk.

Tokens are bound ServiceAccount tokens (TokenRequest) bound to a Secret: deleting the
Secret revokes the token at once (after the API server's 10 s authentication cache),
a real revocation without waiting out an expiry (TokenRequest's minimum is 10 minutes).
Who the server took us for is read back with a SelfSubjectReview.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from shunter.devcluster.accounts import account_with_role
from shunter.devcluster.controlplane import ControlPlane
from shunter.devcluster.pki import client_extensions, issue
from shunter.kube import Informer, Kube, Unauthorized, connect
from shunter.kube.client import Body
from shunter.kube.resources import Resource
from tests.support.kubeconfigs import (
    exec_plugin,
    exec_user,
    kube_as,
    plugin_runs,
    write_atomically,
)
from tests.support.polling import eventually

CONFIG_MAPS = Resource("", "v1", "configmaps")
SELF_REVIEWS = Resource("authentication.k8s.io", "v1", "selfsubjectreviews", namespaced=False)


async def who(kube: Kube) -> str:
    review = await kube.create(
        SELF_REVIEWS, {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    return str(review["status"]["userInfo"]["username"])


def bound_token(api: client.ApiClient, namespace: str, account: str, secret: str) -> str:
    """A token of account that lives as long as the Secret named secret (created here)."""
    core = client.CoreV1Api(api)
    made = core.create_namespaced_secret(
        namespace, client.V1Secret(metadata=client.V1ObjectMeta(name=secret))
    )
    request = core.create_namespaced_service_account_token(
        account, namespace,
        client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
            audiences=[], expiration_seconds=3600,
            bound_object_ref=client.V1BoundObjectReference(
                api_version="v1", kind="Secret", name=secret, uid=made.metadata.uid),
        )),
    )  # fmt: skip
    return str(request.status.token)


def config_map(name: str) -> Body:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}}


async def test_an_informer_goes_on_after_its_token_is_rotated_and_the_old_one_revoked(
    kubeconfig: Path, kube_api: client.ApiClient, namespace: str, tmp_path: Path
):
    account_with_role(kube_api, namespace, "watcher", "view")
    token_file = tmp_path / "token"
    token_file.write_text(bound_token(kube_api, namespace, "watcher", "key-a"))
    kube = kube_as(kubeconfig, tmp_path / "config", user={"tokenFile": str(token_file)})
    admin = Kube(connect(kubeconfig))
    # Short watches: each ends in two seconds and the next opens with what we hold then.
    informer: Informer[str, str] = Informer(
        kube, CONFIG_MAPS, namespace=namespace, parse=lambda b: str(b["metadata"]["name"]),
        key=lambda name: name, watch_seconds=2,
    )  # fmt: skip
    informer.start()
    try:
        await admin.create(CONFIG_MAPS, config_map("before"), namespace=namespace)
        assert await informer.wait_until("before", lambda found: found is not None, within=30)
        old = kube_as(kubeconfig, tmp_path / "old", user={"token": token_file.read_text()})
        write_atomically(token_file, bound_token(kube_api, namespace, "watcher", "key-b").encode())
        client.CoreV1Api(kube_api).delete_namespaced_secret("key-a", namespace)

        async def old_token_refused() -> bool:
            try:
                await old.list(CONFIG_MAPS, namespace=namespace)
            except Unauthorized:
                return True
            return False

        await eventually(old_token_refused, within=40, what="the old token revoked")
        await old.close()
        # The file is re-read only every minute; the informer's next watch is refused,
        # and that 401 makes the client read the file again.
        await admin.create(CONFIG_MAPS, config_map("after"), namespace=namespace)
        assert await informer.wait_until("after", lambda found: found is not None, within=30)
        assert await who(kube) == f"system:serviceaccount:{namespace}:watcher"
    finally:
        await informer.stop()
        await kube.close()
        await admin.close()


async def test_an_exec_plugins_token_is_kept_until_it_expires(
    kubeconfig: Path, kube_api: client.ApiClient, namespace: str, tmp_path: Path
):
    token_file = tmp_path / "token"
    token_file.write_text(account_with_role(kube_api, namespace, "plugged", "view"))
    log = tmp_path / "runs.log"
    user = exec_user(exec_plugin(tmp_path), PLUGIN_LOG=str(log),
                     PLUGIN_TOKEN_FILE=str(token_file), PLUGIN_EXPIRES_IN="6")  # fmt: skip
    kube = kube_as(kubeconfig, tmp_path / "config", user=user)
    try:
        assert await who(kube) == f"system:serviceaccount:{namespace}:plugged"
        await kube.list(CONFIG_MAPS, namespace=namespace)
        assert plugin_runs(log) == 1  # kept: not expired yet

        async def ran_again() -> bool:
            await kube.list(CONFIG_MAPS, namespace=namespace)
            return plugin_runs(log) >= 2

        await eventually(
            ran_again, within=30, what="the plugin run again once expired", interval=0.5
        )
    finally:
        await kube.close()


@pytest.fixture
def plane(control_plane: ControlPlane | None) -> ControlPlane:
    """The session's own control plane: its CA signs the tests' client certificates."""
    if control_plane is None:
        pytest.skip("needs the session's own control plane (its CA signs certificates)")
    return control_plane


async def test_an_exec_plugin_may_give_a_client_certificate(
    kubeconfig: Path, plane: ControlPlane, tmp_path: Path
):
    log = tmp_path / "runs.log"
    user = exec_user(exec_plugin(tmp_path), PLUGIN_LOG=str(log),
                     PLUGIN_CERT=str(plane.pki.admin_cert),
                     PLUGIN_KEY=str(plane.pki.admin_key))  # fmt: skip
    kube = kube_as(kubeconfig, tmp_path / "config", user=user)
    try:
        assert await who(kube) == "shunter-admin"
    finally:
        await kube.close()


async def test_a_client_certificate_replaced_on_disk_is_presented_on_new_connections(
    kubeconfig: Path, plane: ControlPlane, tmp_path: Path
):
    alice = issue(plane.pki, f"alice-{tmp_path.name}", subject="/CN=alice",
                  extensions=client_extensions())  # fmt: skip
    bob = issue(plane.pki, f"bob-{tmp_path.name}", subject="/CN=bob",
                extensions=client_extensions())  # fmt: skip
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(alice[0].read_bytes())
    key.write_bytes(alice[1].read_bytes())
    kube = kube_as(
        kubeconfig,
        tmp_path / "config",
        user={"client-certificate": str(cert), "client-key": str(key)},
    )
    kube.connection.credentials.recheck_seconds = 0.5
    try:
        assert await who(kube) == "alice"
        # The pair is replaced as cert-manager does (key, then certificate); a load in
        # between finds them mismatched and reads both again.
        write_atomically(key, bob[1].read_bytes())
        write_atomically(cert, bob[0].read_bytes())

        async def bob_now() -> bool:
            return await who(kube) == "bob"

        await eventually(bob_now, within=20, what="the new certificate presented")
    finally:
        await kube.close()
        for path in (*alice, *bob):
            path.unlink()
