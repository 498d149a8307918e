"""The gate in front of the app (shunter.api.gate), in process, no cluster.

The app's Kubernetes client points nowhere (as in test_dependencies): a request that
got past the gate to a review or a route would answer 503, so each answer below is
the gate's own. The same refusals against the real control plane, with real tokens,
are in tests/cluster/security/test_api_abuse.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from starlette.datastructures import Headers

from shunter.api.app import create_app
from shunter.api.gate import is_loopback, loopback_refusal
from shunter.api.settings import ApiSettings
from tests.unit.api.test_dependencies import nowhere

LIMIT = 4096


def app_with(auth: str) -> FastAPI:
    settings = ApiSettings(auth=auth, namespace="default", max_body_bytes=LIMIT)  # type: ignore[arg-type]
    return create_app(settings, nowhere())


def client(app: FastAPI, base_url: str = "http://127.0.0.1:8000") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


async def test_a_body_over_the_limit_is_413_before_anything_else():
    async with client(app_with("kubernetes")) as http:
        response = await http.post("/api/training/submit", content=b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert response.json() == {
        "success": False,
        "message": f"Request body too large: at most {LIMIT} bytes",
    }


async def test_a_body_without_a_token_is_401_unparsed():
    """Invalid JSON without a token: FastAPI alone parses first and answers 422."""
    async with client(app_with("kubernetes")) as http:
        response = await http.post(
            "/api/training/submit",
            content=b"{not json",
            headers={"Content-Type": "application/json"},
        )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["message"].startswith("Missing bearer token")


async def chunks(total: int) -> AsyncIterator[bytes]:
    for _ in range(total // 1024):
        yield b" " * 1024


async def test_a_body_without_a_length_is_counted_as_it_is_read():
    """Chunked, no Content-Length: the route starts reading and is stopped at the limit."""
    async with client(app_with("none")) as http:
        response = await http.post(
            "/api/training/submit",
            content=chunks(4 * LIMIT),
            headers={"Content-Type": "application/json"},
        )
        assert "content-length" not in response.request.headers
        assert response.status_code == 413
        assert response.json()["message"] == f"Request body too large: at most {LIMIT} bytes"
        small = await http.post("/api/training/submit", content=chunks(1024))
        assert small.status_code == 422  # read whole, parsed, and refused for what it says


async def test_an_unreachable_api_server_is_named_without_internals():
    app = app_with("kubernetes")
    try:
        async with client(app) as http:
            response = await http.get(
                "/api/training/queue", headers={"Authorization": "Bearer some-token"}
            )
    finally:
        await app.state.authority.kube.close()  # no lifespan here to close it
    assert response.status_code == 503
    assert response.json() == {
        "success": False,
        "message": "Cannot verify the token: the Kubernetes API is unavailable",
    }


@pytest.mark.parametrize("host", ["127.0.0.1:8000", "localhost", "[::1]:8000", "127.0.0.5"])
async def test_with_auth_off_loopback_hosts_are_served(host: str):
    async with client(app_with("none")) as http:
        response = await http.get("/api/config", headers={"Host": host})
    assert response.status_code == 200


@pytest.mark.parametrize(
    ("headers", "why"),
    [
        ({"Host": "evil.example"}, "only loopback requests are served (Host 'evil.example')"),
        ({"Host": "10.0.0.7:8000"}, "only loopback requests are served (Host '10.0.0.7:8000')"),
        (
            {"Origin": "https://evil.example"},
            "only loopback origins are served (Origin 'https://evil.example')",
        ),
        ({"Origin": "null"}, "only loopback origins are served (Origin 'null')"),
    ],
)
async def test_with_auth_off_a_foreign_host_or_origin_is_refused(headers: dict[str, str], why: str):
    """A cross-site form POST to cancel, or a DNS-rebound name, never reaches a route."""
    async with client(app_with("none")) as http:
        response = await http.post(
            "/api/training/cancel/some-job",
            content=b"x=1",
            headers={"Content-Type": "application/x-www-form-urlencoded", **headers},
        )
    assert response.status_code == 403
    assert response.json()["message"] == f"Auth is off on this server: {why}"


async def test_with_auth_off_the_probes_answer_any_host():
    """The kubelet asks them by the Pod's address."""
    async with client(app_with("none"), base_url="http://10.1.2.3:8000") as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/metrics")).status_code == 200
        assert (await http.get("/api/config")).status_code == 403


async def test_with_auth_on_any_host_is_served():
    async with client(app_with("kubernetes"), base_url="http://shunter.example") as http:
        assert (await http.get("/api/config")).status_code == 200


def test_loopback_names():
    assert [is_loopback(h) for h in ("localhost", "LOCALHOST", "127.0.0.1", "::1")] == [True] * 4
    assert [is_loopback(h) for h in ("", None, "localhost.evil", "0.0.0.0", "10.0.0.1")] == [
        False
    ] * 5
    assert loopback_refusal(Headers({"host": "localhost:8000"})) is None
    assert loopback_refusal(Headers({})) is not None  # no Host at all
    # Bound beyond loopback (make demo-real, for the trainers' reports): another
    # machine's request is refused whatever Host it claims.
    assert loopback_refusal(Headers({"host": "localhost:8000"}), "10.244.0.7") is not None
    assert loopback_refusal(Headers({"host": "localhost:8000"}), "127.0.0.1") is None


async def test_the_ui_and_the_docs_send_security_headers():
    async with client(app_with("kubernetes")) as http:
        for path in ("/ui/", "/docs", "/api/config", "/api/training/queue"):
            response = await http.get(path)
            policy = response.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in policy, path
            assert "default-src 'self'" in policy, path
            assert "script-src" not in policy  # scripts from this origin only, none inline
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["x-frame-options"] == "DENY"
            assert response.headers["referrer-policy"] == "no-referrer"
        assert "'unsafe-inline'" not in (await http.get("/ui/")).headers["content-security-policy"]


async def test_the_docs_are_served_from_the_package_not_a_cdn():
    async with client(app_with("kubernetes")) as http:
        page = await http.get("/docs")
        assert page.status_code == 200
        assert "http://" not in page.text
        assert "https://" not in page.text
        assert '<script src="/docs/assets/swagger-ui-bundle.js">' in page.text
        bundle = await http.get("/docs/assets/swagger-ui-bundle.js")
        assert bundle.status_code == 200
        assert "SwaggerUIBundle" in bundle.text
        assert (await http.get("/docs/assets/swagger-ui.css")).status_code == 200
        assert (await http.get("/ui/docs.js")).status_code == 200
        assert (await http.get("/redoc")).status_code == 404
