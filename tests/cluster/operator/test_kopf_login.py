"""kopf's own calls log in with the credentials shunter.kube reads (handlers.login), so
the operator's process needs no Kubernetes client library: the same API server, through
kopf's own session (its APIContext, as kopf's discovery at start uses it), as a user with
a client certificate, with a ServiceAccount token from an exec plugin, and with a
proxy whose credentials are in its URL."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kopf._cogs.clients.auth import APIContext
from kubernetes import client

from shunter.devcluster.accounts import account_with_role
from shunter.kube import connect
from shunter.operator.handlers import connection_info
from tests.support.connectproxy import ConnectProxy
from tests.support.kubeconfigs import admin_user, exec_plugin, exec_user, kubeconfig_as

REVIEW = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}


async def who_kopf_is(kubeconfig: Path) -> str:
    """The user the API server takes kopf's session for (a SelfSubjectReview)."""
    context = APIContext(await connection_info(connect(kubeconfig)))
    try:
        url = f"{context.server}/apis/authentication.k8s.io/v1/selfsubjectreviews"
        async with context.session.post(url, json=REVIEW) as response:
            assert response.status == 201, await response.text()
            body: dict[str, Any] = await response.json()
        return str(body["status"]["userInfo"]["username"])
    finally:
        await context.session.close()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    running = ConnectProxy({"kubernetes": "127.0.0.1"}).start()
    try:
        yield running
    finally:
        running.stop()


async def test_kopf_logs_in_as_the_kubeconfig_user(kubeconfig: Path):
    user = admin_user(kubeconfig)
    assert "client-certificate-data" in user or "client-certificate" in user, user.keys()
    assert await who_kopf_is(kubeconfig) == "shunter-admin"


async def test_kopf_logs_in_with_an_exec_plugins_token(
    kubeconfig: Path, kube_api: client.ApiClient, namespace: str, tmp_path: Path
):
    token_file = tmp_path / "token"
    token_file.write_text(account_with_role(kube_api, namespace, "kopf-login", "view"))
    user = exec_user(exec_plugin(tmp_path), PLUGIN_LOG=str(tmp_path / "runs.log"),
                     PLUGIN_TOKEN_FILE=str(token_file))  # fmt: skip
    path = kubeconfig_as(kubeconfig, tmp_path / "config", user=user)
    assert await who_kopf_is(path) == f"system:serviceaccount:{namespace}:kopf-login"


async def test_kopf_goes_through_the_kubeconfigs_proxy_with_its_credentials(
    kubeconfig: Path, proxy: ConnectProxy, tmp_path: Path
):
    with_password = f"http://shunter:p%40ss@127.0.0.1:{proxy.port}"
    path = kubeconfig_as(kubeconfig, tmp_path / "config", user=admin_user(kubeconfig),
                         proxy_url=with_password)  # fmt: skip
    assert await who_kopf_is(path) == "shunter-admin"
    assert len(proxy.tunnels) == 1
    assert proxy.authorizations == ["Basic " + base64.b64encode(b"shunter:p@ss").decode()]
