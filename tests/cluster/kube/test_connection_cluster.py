"""Reaching the real API server through a proxy, and by a name its certificate lacks.

The proxy is a real CONNECT proxy (tests.support.connectproxy) that resolves names the
client cannot: a request that bypassed it would fail, so each test shows the path taken.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from shunter.kube import Kube, Unreachable, connect
from shunter.kube.resources import Resource
from tests.support.connectproxy import ConnectProxy
from tests.support.kubeconfigs import admin_user, kubeconfig_as

# Not in DNS (.test is reserved): only the proxy knows where it is.
HIDDEN = "api.shunter.test"


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    running = ConnectProxy({HIDDEN: "127.0.0.1", "kubernetes": "127.0.0.1"}).start()
    try:
        yield running
    finally:
        running.stop()


def port_of(kubeconfig: Path) -> int:
    config = yaml.safe_load(kubeconfig.read_text())
    port = urlsplit(config["clusters"][0]["cluster"]["server"]).port
    assert port is not None
    return port


NAMESPACES = Resource("", "v1", "namespaces", namespaced=False)  # only tests read them


async def answers(kubeconfig: Path) -> bool:
    kube = Kube(connect(kubeconfig))
    try:
        return bool(await kube.get(NAMESPACES, "default"))
    finally:
        await kube.close()


async def test_proxy_url_and_tls_server_name(kubeconfig: Path, proxy: ConnectProxy, tmp_path: Path):
    port = port_of(kubeconfig)
    # The server's certificate names "kubernetes", not HIDDEN: tls-server-name makes
    # the client ask for and check that name while connecting to HIDDEN.
    # The proxy's credentials in its URL reach it as Proxy-Authorization (basic).
    with_password = f"http://shunter:p%40ss@127.0.0.1:{proxy.port}"
    named = kubeconfig_as(kubeconfig, tmp_path / "named", user=admin_user(kubeconfig),
                          server=f"https://{HIDDEN}:{port}", proxy_url=with_password,
                          tls_server_name="kubernetes")  # fmt: skip
    assert await answers(named)
    assert proxy.tunnels == [f"{HIDDEN}:{port}"]
    assert proxy.authorizations == ["Basic " + base64.b64encode(b"shunter:p@ss").decode()]
    unnamed = kubeconfig_as(kubeconfig, tmp_path / "unnamed", user=admin_user(kubeconfig),
                            server=f"https://{HIDDEN}:{port}", proxy_url=proxy.url)  # fmt: skip
    with pytest.raises(Unreachable, match=r"(?i)certificate"):
        await answers(unnamed)


async def test_https_proxy_from_the_environment_unless_no_proxy_says_otherwise(
    kubeconfig: Path, proxy: ConnectProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    port = port_of(kubeconfig)
    path = kubeconfig_as(kubeconfig, tmp_path / "config", user=admin_user(kubeconfig),
                         server=f"https://kubernetes:{port}")  # fmt: skip
    monkeypatch.setenv("HTTPS_PROXY", f"127.0.0.1:{proxy.port}")  # no scheme: http://
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8,.cluster.local")
    assert await answers(path)
    assert proxy.tunnels == [f"kubernetes:{port}"]
    assert proxy.authorizations == [""]
    # Named in NO_PROXY: the client goes direct, and cannot resolve the name itself.
    monkeypatch.setenv("NO_PROXY", "10.0.0.0/8,kubernetes")
    with pytest.raises(Unreachable):
        await answers(path)
    assert len(proxy.tunnels) == 1
