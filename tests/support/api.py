"""Run the real API (uvicorn, a subprocess) and talk to it over HTTP."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from shunter.devcluster.processes import free_port
from tests.support.polling import wait_for
from tests.support.process import ServiceProcess


class ApiProcess(ServiceProcess):
    module = "shunter.api.main"

    def __init__(
        self, *, kubeconfig: Path, namespace: str, database_url: str | None, log_path: Path,
        env: dict[str, str] | None = None,
    ) -> None:  # fmt: skip
        self.port = free_port()
        defaults = {
            "SHUNTER_API_NAMESPACE": namespace,
            "SHUNTER_API_WATCH_NAMESPACE": namespace,
            "SHUNTER_API_AUTH": "none",
        }
        env = {**defaults, **(env or {})}
        # Where it listens (SHUNTER_TEST_BIND, a test's own setting, never the app's):
        # 127.0.0.1, or every address where the real node's Pods must reach it.
        self.bind = env.pop("SHUNTER_TEST_BIND", "127.0.0.1")
        # Served over HTTPS when given a certificate: clients then trust exactly it.
        self.certfile = env.get("SHUNTER_API_TLS_CERTFILE")
        self.base_url = f"{'https' if self.certfile else 'http'}://127.0.0.1:{self.port}"
        super().__init__(
            kubeconfig=kubeconfig,
            database_url=database_url,
            log_path=log_path,
            env=env,
            args=("--host", self.bind, "--port", str(self.port)),
        )

    @property
    def verify(self) -> ssl.SSLContext | bool:
        return ssl.create_default_context(cafile=self.certfile) if self.certfile else True

    def start(self, *, wait: bool = True) -> ApiProcess:
        """Start it and wait until it is ready (wait=False: the caller calls
        wait_ready(), having started something else meanwhile)."""
        self.spawn()
        return self.wait_ready() if wait else self

    def wait_ready(self) -> ApiProcess:
        def ready() -> bool:
            assert self.running(), self.log()
            try:
                return (
                    httpx.get(f"{self.base_url}/readyz", timeout=2, verify=self.verify).status_code
                    == 200
                )
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=60, what="the API to be ready")
        return self

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, verify=self.verify)
