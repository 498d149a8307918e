"""Run the real API (uvicorn, a subprocess) and talk to it over HTTP."""

from __future__ import annotations

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
        self.base_url = f"http://127.0.0.1:{self.port}"
        defaults = {
            "SHUNTER_API_NAMESPACE": namespace,
            "SHUNTER_API_WATCH_NAMESPACE": namespace,
            "SHUNTER_API_AUTH": "none",
        }
        super().__init__(
            kubeconfig=kubeconfig,
            database_url=database_url,
            log_path=log_path,
            env={**defaults, **(env or {})},
            args=("--host", "127.0.0.1", "--port", str(self.port)),
        )

    def start(self) -> ApiProcess:
        self.spawn()

        def ready() -> bool:
            assert self.running(), self.log()
            try:
                return httpx.get(f"{self.base_url}/readyz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(ready, timeout=60, what="the API to be ready")
        return self

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)
