"""Reading a kubeconfig (or a Pod's ServiceAccount) into a Connection (pure: files only).

What those settings do against a real API server is in test_connection_cluster.py."""

from __future__ import annotations

import base64
import ssl
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from shunter.kube.connection import (
    ConfigError,
    Connection,
    connect,
    from_kubeconfig,
    in_cluster,
)
from shunter.kube.credentials import Credential, Credentials, Source


def kubeconfig(path: Path, *, cluster: dict[str, Any], user: dict[str, Any], name: str = "c",
               current: str | None = "c") -> Path:  # fmt: skip
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name}}],
        "current-context": current,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config))
    return path


def test_relative_paths_are_the_kubeconfig_files_own(tmp_path: Path):
    path = kubeconfig(
        tmp_path / "conf" / "config",
        cluster={"server": "https://api.example.com:6443/", "tls-server-name": "kubernetes"},
        user={"tokenFile": "token", "client-certificate": "/abs/tls.crt", "client-key": "k",
              "exec": {"command": "./bin/plugin", "apiVersion": "client.authentication.k8s.io/v1",
                       "args": ["get-token"], "env": [{"name": "A", "value": "1"}]}},
    )  # fmt: skip
    connection = from_kubeconfig([path])
    assert connection.server == "https://api.example.com:6443"
    assert connection.server_name == "kubernetes"
    source = connection.credentials.source
    assert source.token_file == tmp_path / "conf" / "token"
    assert source.cert_file == Path("/abs/tls.crt")
    assert source.key_file == tmp_path / "conf" / "k"
    assert source.exec_plugin is not None
    assert source.exec_plugin.command == str(tmp_path / "conf" / "bin" / "plugin")
    assert source.exec_plugin.args == ("get-token",)
    assert source.exec_plugin.env == (("A", "1"),)


def test_a_command_on_the_path_is_left_to_the_path(tmp_path: Path):
    exec_ = {"command": "gke-gcloud-auth-plugin", "apiVersion": "client.authentication.k8s.io/v1",
             "provideClusterInfo": True}  # fmt: skip
    ca = base64.b64encode(b"PEM").decode()
    cluster = {"server": "https://x", "certificate-authority-data": ca}
    path = kubeconfig(tmp_path / "config", user={"exec": exec_}, cluster=cluster)
    plugin = from_kubeconfig([path]).credentials.source.exec_plugin
    assert plugin is not None
    assert plugin.command == "gke-gcloud-auth-plugin"
    assert plugin.cluster == {"server": "https://x", "certificate-authority-data": ca}


def test_kubeconfig_files_merge_first_name_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    first = kubeconfig(tmp_path / "a", cluster={"server": "https://first"}, user={"token": "t1"})
    second = kubeconfig(tmp_path / "b", cluster={"server": "https://second"},
                        user={"token": "t2"}, current="other")  # fmt: skip
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{first}:{second}")
    connection = connect()
    assert connection.server == "https://first"
    assert connection.credentials.source.token == "t1"
    assert not connection.in_cluster


def test_the_clusters_proxy_url_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HTTPS_PROXY", "http://from-env:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example.com")
    plain = kubeconfig(tmp_path / "a", cluster={"server": "https://api.example.com"}, user={})
    assert from_kubeconfig([plain]).proxy == "http://from-env:3128"
    skipped = kubeconfig(tmp_path / "b", cluster={"server": "https://k.internal.example.com"},
                         user={})  # fmt: skip
    assert from_kubeconfig([skipped]).proxy is None
    # proxy-url is the cluster's own: NO_PROXY does not apply to it.
    explicit = kubeconfig(tmp_path / "c", user={}, cluster={
        "server": "https://k.internal.example.com", "proxy-url": "http://jump:8080"})  # fmt: skip
    assert from_kubeconfig([explicit]).proxy == "http://jump:8080"


@pytest.mark.parametrize(
    ("user", "cluster", "message"),
    [
        ({"auth-provider": {"name": "oidc"}}, {"server": "https://x"}, "auth-provider"),
        ({}, {"server": ""}, "names no server"),
        ({"exec": {"command": "p"}}, {"server": "https://x"}, "apiVersion"),
        ({}, {"server": "https://x", "proxy-url": "socks5://p:1080"}, "only http"),
    ],
)
def test_what_cannot_be_used_is_refused_at_once(
    tmp_path: Path, user: dict[str, Any], cluster: dict[str, Any], message: str
):
    with pytest.raises(ValueError, match=message):
        from_kubeconfig([kubeconfig(tmp_path / "config", cluster=cluster, user=user)])


def test_a_missing_context_is_named(tmp_path: Path):
    path = kubeconfig(tmp_path / "config", cluster={"server": "https://x"}, user={}, current="nope")
    with pytest.raises(ConfigError, match="'nope'"):
        from_kubeconfig([path])


def test_in_cluster_reads_the_service_account_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    assert in_cluster(tmp_path) is None  # no token: not in a Pod
    (tmp_path / "token").write_text("t")
    (tmp_path / "ca.crt").write_bytes(b"PEM")
    connection = in_cluster(tmp_path)
    assert connection is not None
    assert connection.in_cluster
    assert connection.server == "https://[fd00::1]:443"
    assert connection.credentials.source.token_file == tmp_path / "token"


def key_pair(directory: Path, name: str) -> tuple[bytes, bytes]:
    """A self-signed certificate and its key (PEM)."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-subj", f"/CN={name}", "-days", "1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert.read_bytes(), key.read_bytes()


async def test_a_certificate_pair_read_mid_rotation_is_read_again_once(tmp_path: Path):
    old, new = key_pair(tmp_path, "old"), key_pair(tmp_path, "new")
    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(old[0])
    key.write_bytes(new[1])  # the key is replaced, the certificate not yet
    reads: list[object] = []

    class Rotating(Source):
        def load(self) -> Credential:
            found = super().load()
            reads.append(found.certificate)
            cert.write_bytes(new[0])  # the rotation completes after the first read
            return found

    connection = Connection(
        "https://x", credentials=Credentials(Rotating(cert_file=cert, key_file=key))
    )
    access = await connection.access()
    assert access.credential.certificate == new
    assert access.ssl_context is not None
    assert reads == [(old[0], new[1]), new]
    # A pair that stays mismatched is an error, after one more read.
    key.write_bytes(old[1])
    cert.write_bytes(new[0])
    stuck = Connection("https://x", credentials=Credentials(Source(cert_file=cert, key_file=key)))
    with pytest.raises(ssl.SSLError):
        await stuck.access()
