"""Where the API server is and how to prove who we are: in-cluster or a kubeconfig.

The `kubernetes` package's loaders parse kubeconfig files (client certificates,
tokens, exec plugins) and the in-cluster ServiceAccount files; this module turns what
they produce into an `ssl.SSLContext` and an Authorization header for our own async
client. A ServiceAccount token is re-read when the loader's refresh hook says so
(the kubelet rotates projected tokens), never more than once a minute.
"""

from __future__ import annotations

import os
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path

from kubernetes import client, config

TOKEN_RECHECK_SECONDS = 60.0


@dataclass
class Connection:
    server: str
    ssl_context: ssl.SSLContext | None
    configuration: client.Configuration
    in_cluster: bool = False
    _header: str | None = field(default=None, init=False)
    _checked_at: float = field(default=0.0, init=False)

    def authorization(self) -> str | None:
        """The Authorization header value, refreshed when the token may have rotated."""
        now = time.monotonic()
        if self._header is None or now - self._checked_at >= TOKEN_RECHECK_SECONDS:
            settings = self.configuration.auth_settings()  # runs the loader's refresh hook
            bearer = settings.get("BearerToken")
            self._header = str(bearer["value"]) if bearer and bearer.get("value") else None
            self._checked_at = now
        return self._header


def _ssl_context(configuration: client.Configuration) -> ssl.SSLContext | None:
    if not configuration.host.startswith("https"):
        return None
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def connect(kubeconfig: Path | None = None) -> Connection:
    """In-cluster settings when running in a Pod (and no kubeconfig is named), else
    the kubeconfig: the argument, $KUBECONFIG, or ~/.kube/config."""
    configuration = client.Configuration()
    in_cluster = False
    if kubeconfig is None and "KUBECONFIG" not in os.environ:
        try:
            config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            in_cluster = True
        except config.ConfigException:
            pass
    if not in_cluster:
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(kubeconfig) if kubeconfig else None,
            client_configuration=configuration,
        )
    return Connection(
        server=configuration.host.rstrip("/"),
        ssl_context=_ssl_context(configuration),
        configuration=configuration,
        in_cluster=in_cluster,
    )
