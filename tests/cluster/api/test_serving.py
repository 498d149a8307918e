"""How the API is reached: HTTPS from a certificate and key (the chart mounts them
from `api.tls.secretName`), and submissions only to the namespaces it serves."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.api import ApiProcess


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made here for this test."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = directory / "tls.crt", directory / "tls.key"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


def test_the_api_and_its_ui_are_served_over_https(
    start_api: Callable[..., ApiProcess], tmp_path: Path
):
    cert, key = self_signed(tmp_path)
    api = start_api(SHUNTER_API_TLS_CERTFILE=str(cert), SHUNTER_API_TLS_KEYFILE=str(key))
    assert api.base_url.startswith("https://")
    with api.client() as https:
        # / sends the browser to the UI on the same scheme and host.
        root = https.get("/")
        assert root.status_code == 307
        assert root.headers["location"] == "/ui/"
        page = https.get("/", follow_redirects=True)
        assert page.status_code == 200
        assert str(page.url) == f"{api.base_url}/ui/"
        assert "text/html" in page.headers["content-type"]
        for script in ("api.js", "app.js"):  # what the page loads next
            assert https.get(f"/ui/{script}").status_code == 200
        config = https.get("/api/config")
        assert config.status_code == 200
        assert config.json()  # the UI's first call
        assert https.get("/api/training/queue").status_code == 200
    # No clear text on that port, and the certificate is the one given (a client
    # trusting only the usual authorities refuses it).
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://127.0.0.1:{api.port}/healthz", timeout=5)
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{api.base_url}/healthz", timeout=5)


def test_submissions_to_a_namespace_not_served_are_refused(
    start_api: Callable[..., ApiProcess], namespace: str
):
    api = start_api(SHUNTER_EXCLUDE_NAMESPACES=f"kube-system,{namespace}-system")
    with api.client() as http:
        for elsewhere, reason in (
            ("kube-system", "is excluded from Shunter"),
            (f"{namespace}-system", "is excluded from Shunter"),
            ("vision", f"is not served by this Shunter (it serves {namespace})"),
        ):
            response = http.post(f"/api/training/submit?namespace={elsewhere}", json={})
            assert response.status_code == 403, response.text
            assert reason in response.json()["message"]
        assert http.post("/api/training/submit", json={}).status_code == 201
