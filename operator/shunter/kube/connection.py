"""Where the API server is and how to reach it: in-cluster or a kubeconfig.

`connect()` reads the settings once: the server, how to trust it (the CA, or none
with insecure-skip-tls-verify; `tls-server-name` for SNI and for checking its
certificate when the server is reached by another name), the proxy (the cluster's
`proxy-url`, else the environment: shunter.kube.proxies) and where our credentials
come from (shunter.kube.credentials). The kubeconfig is read as kubectl reads it: the
argument, else every file of $KUBECONFIG (the first to define a name wins), else
~/.kube/config; relative paths are relative to the file that names them.

Credentials are not read here but on first use and whenever they may have changed,
off the event loop. `Connection.access()` gives what a request carries; the TLS
context is rebuilt (in a worker thread) only when the client certificate changed, so
new connections present the rotated certificate while open ones finish their work.
"""

from __future__ import annotations

import asyncio
import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shunter.kube.credentials import Credential, Credentials, ExecPlugin, Source
from shunter.kube.proxies import ProxyEnvironment, proxy_credentials, proxy_url

IN_CLUSTER_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ConfigError(ValueError):
    """No usable configuration: no kubeconfig, or one Shunter cannot use."""


@dataclass(frozen=True)
class Access:
    """What one request goes with: its Authorization header and its TLS context."""

    credential: Credential
    ssl_context: ssl.SSLContext | None


class Connection:
    def __init__(
        self,
        server: str,
        *,
        credentials: Credentials | None = None,
        ca_data: bytes | None = None,
        insecure: bool = False,
        server_name: str | None = None,
        proxy: str | None = None,
        in_cluster: bool = False,
    ) -> None:
        self.server = server.rstrip("/")
        self.credentials = credentials or Credentials(Source())
        self.server_name = server_name  # tls-server-name: SNI and the name checked
        # The proxy's own credentials travel in a header, not in the URL aiohttp is given.
        self.proxy: str | None = None
        self.proxy_headers: dict[str, str] = {}
        self.proxy_url = proxy or None  # as given, its user and password included
        if proxy:
            self.proxy, self.proxy_headers = proxy_credentials(proxy)
        self.in_cluster = in_cluster
        self._ca_data = ca_data
        self._insecure = insecure
        self._context: ssl.SSLContext | None = None
        self._context_for: tuple[bytes, bytes] | None = None

    @property
    def ca_data(self) -> bytes | None:
        """The CA's certificates (PEM) the server is trusted by; None: the system's."""
        return self._ca_data

    @property
    def insecure(self) -> bool:
        return self._insecure

    async def access(self) -> Access:
        return await self._access_with(await self.credentials.current())

    async def refused(self, access: Access) -> Access:
        """After a 401: credentials loaded again (once, however many callers were refused)."""
        return await self._access_with(await self.credentials.reload(access.credential))

    async def _access_with(self, credential: Credential) -> Access:
        if not self.server.startswith("https"):
            return Access(credential, None)
        if self._context is None or credential.certificate != self._context_for:
            try:
                context = await asyncio.to_thread(self.ssl_context, credential.certificate)
            except ssl.SSLError:
                # Read between a key and its certificate being replaced (they are two
                # files): read both again, once.
                credential = await self.credentials.reload(credential)
                context = await asyncio.to_thread(self.ssl_context, credential.certificate)
            self._context, self._context_for = context, credential.certificate
        return Access(credential, self._context)

    def ssl_context(self, certificate: tuple[bytes, bytes] | None) -> ssl.SSLContext:
        """A TLS context trusting the server's CA and presenting certificate (blocking)."""
        context = ssl.create_default_context(
            cadata=self._ca_data.decode() if self._ca_data else None
        )
        if self._insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if certificate is not None:
            # ssl loads a chain only from files: a private directory for an instant.
            with tempfile.TemporaryDirectory(prefix="shunter-kube-") as where:
                cert, key = Path(where, "tls.crt"), Path(where, "tls.key")
                cert.write_bytes(certificate[0])
                key.write_bytes(certificate[1])
                context.load_cert_chain(cert, key)
        return context


def connect(kubeconfig: Path | None = None) -> Connection:
    """In-cluster settings when running in a Pod (and no kubeconfig is named), else
    the kubeconfig: the argument, $KUBECONFIG, or ~/.kube/config."""
    if kubeconfig is None and "KUBECONFIG" not in os.environ:
        found = in_cluster()
        if found is not None:
            return found
    paths = [kubeconfig] if kubeconfig else _kubeconfig_paths()
    return from_kubeconfig(paths)


def in_cluster(directory: Path = IN_CLUSTER_DIR) -> Connection | None:
    """The Pod's ServiceAccount (its token file re-read as the kubelet rotates it)."""
    host = os.environ.get("KUBERNETES_SERVICE_HOST")
    port = os.environ.get("KUBERNETES_SERVICE_PORT")
    if not host or not port or not (directory / "token").exists():
        return None
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    ca = directory / "ca.crt"
    return Connection(
        server,
        credentials=Credentials(Source(token_file=directory / "token")),
        ca_data=ca.read_bytes() if ca.exists() else None,
        proxy=ProxyEnvironment.read().proxy_for(server),
        in_cluster=True,
    )


def _kubeconfig_paths() -> list[Path]:
    listed = [Path(p) for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return [p for p in listed if p.exists()] or [Path.home() / ".kube" / "config"]


@dataclass(frozen=True)
class _Entry:
    fields: dict[str, Any]
    base: Path  # the directory of the file that defined it

    def path(self, key: str) -> Path | None:
        value = self.fields.get(key)
        return self.base / value if value else None  # an absolute value stays absolute

    def data(self, key: str) -> bytes | None:
        value = self.fields.get(key)
        return base64.b64decode(value) if value else None


def from_kubeconfig(paths: list[Path]) -> Connection:
    """The current context of the kubeconfig files, merged as kubectl merges them."""
    current, named = _merge(paths)
    try:
        context = named["contexts"][current].fields
        cluster = named["clusters"][context["cluster"]]
    except KeyError as exc:
        raise ConfigError(f"kubeconfig {paths}: context {current!r}: no {exc}") from exc
    user = named["users"].get(context.get("user") or "", _Entry({}, cluster.base))
    server = str(cluster.fields.get("server") or "")
    if not server:
        raise ConfigError(f"kubeconfig {paths}: cluster {context['cluster']!r} names no server")
    explicit = cluster.fields.get("proxy-url")
    ca_data = cluster.data("certificate-authority-data")
    if ca_data is None and (ca_file := cluster.path("certificate-authority")) is not None:
        ca_data = ca_file.read_bytes()
    return Connection(
        server,
        credentials=Credentials(_source(user, cluster)),
        ca_data=ca_data,
        insecure=bool(cluster.fields.get("insecure-skip-tls-verify")),
        server_name=cluster.fields.get("tls-server-name") or None,
        proxy=proxy_url(explicit) if explicit else ProxyEnvironment.read().proxy_for(server),
    )


def _merge(paths: list[Path]) -> tuple[str, dict[str, dict[str, _Entry]]]:
    current = ""
    named: dict[str, dict[str, _Entry]] = {"clusters": {}, "users": {}, "contexts": {}}
    for path in paths:
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"kubeconfig {path}: {exc}") from exc
        current = current or str(config.get("current-context") or "")
        for kind, entries in named.items():
            for item in config.get(kind) or ():
                fields = item.get(kind.removesuffix("s")) or {}
                entries.setdefault(item["name"], _Entry(fields, path.resolve().parent))
    if not current:
        raise ConfigError(f"kubeconfig {paths}: no current-context")
    return current, named


def _source(user: _Entry, cluster: _Entry) -> Source:
    fields = user.fields
    if fields.get("auth-provider"):
        raise ConfigError(
            "kubeconfig: auth-provider plugins are not supported; use an exec plugin "
            "(kubectl's own auth-providers were removed in Kubernetes 1.26)"
        )
    username, password = fields.get("username"), fields.get("password")
    return Source(
        token=fields.get("token") or None,
        token_file=user.path("tokenFile"),
        basic=(str(username), str(password or "")) if username else None,
        cert_file=user.path("client-certificate"),
        key_file=user.path("client-key"),
        cert_data=user.data("client-certificate-data"),
        key_data=user.data("client-key-data"),
        exec_plugin=_exec_plugin(fields["exec"], user.base, cluster)
        if fields.get("exec")
        else None,
    )


def _exec_plugin(spec: dict[str, Any], base: Path, cluster: _Entry) -> ExecPlugin:
    command = str(spec.get("command") or "")
    if not command or not spec.get("apiVersion"):
        raise ConfigError("kubeconfig: an exec plugin needs a command and an apiVersion")
    if os.sep in command and not os.path.isabs(command):
        command = str(base / command)  # relative to the kubeconfig, as client-go resolves it
    info = None
    if spec.get("provideClusterInfo"):
        keys = ("server", "tls-server-name", "insecure-skip-tls-verify", "proxy-url",
                "certificate-authority-data")  # fmt: skip
        info = {k: cluster.fields[k] for k in keys if k in cluster.fields}
        ca_file = cluster.path("certificate-authority")
        if ca_file is not None and "certificate-authority-data" not in info:
            info["certificate-authority-data"] = base64.b64encode(ca_file.read_bytes()).decode()
    return ExecPlugin(
        command=command,
        api_version=str(spec["apiVersion"]),
        args=tuple(str(a) for a in spec.get("args") or ()),
        env=tuple((str(e["name"]), str(e["value"])) for e in spec.get("env") or ()),
        interactive_mode=str(spec.get("interactiveMode") or "IfAvailable"),
        cluster=info,
    )
