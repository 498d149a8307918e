"""Every route of the app is guarded, except an explicit allow-list.

The walk asks each route of `app.routes`, without a token, with auth on; each must
answer 401 before it touches anything (the app's Kubernetes client points nowhere,
so a route that reached the cluster would answer 503, not 401). A route that is
neither guarded nor on the allow-list fails the test: proven below by adding one to
the test's own app.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, routing
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute, Mount, Route

from shunter.api.app import create_app
from shunter.api.dependencies import verb_of
from shunter.api.settings import ApiSettings
from shunter.kube import Connection, Kube

# Open on purpose: probes, metrics, what a client needs before it has a token, the
# static UI (it holds no data; it asks for a token) and the API's own description
# (Swagger UI's files included).
OPEN = {
    "/healthz",
    "/readyz",
    "/metrics",
    "/api/config",
    "/",
    "/ui",
    "/openapi.json",
    "/docs",
    "/docs/assets",
}


def nowhere() -> Kube:
    """A client whose API server does not exist: no route may need it to say 401."""
    return Kube(Connection("http://127.0.0.1:9"))


def secured_app() -> FastAPI:
    return create_app(ApiSettings(auth="kubernetes", namespace="default"), nowhere())


def concrete(path: str) -> str:
    """A request path for a route template: every {parameter} becomes a valid id."""
    return re.sub(r"\{[^}]+\}", "x", path)


def routes_of(app: FastAPI) -> Iterator[tuple[str, set[str] | None, BaseRoute]]:
    """(full path, methods, route) of every route, routers' routes included: FastAPI
    0.16x keeps included routers as one entry of app.routes each."""
    contexts: Any = getattr(routing, "iter_route_contexts", None)
    if contexts is None:  # older FastAPI: app.routes is already flat
        for route in app.routes:
            yield getattr(route, "path", ""), getattr(route, "methods", None), route
        return
    for context in contexts(app.routes):
        yield context.path or "", context.methods, context.original_route


async def unguarded(app: FastAPI) -> list[str]:
    """'METHOD path' of every route outside OPEN that does not answer 401 without a
    token (or that the walk cannot even classify)."""
    found = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        for path, methods, route in routes_of(app):
            if isinstance(route, Mount | Route) and path in OPEN:
                continue
            if not isinstance(route, Route):
                found.append(f"? {route!r}")  # a mount or websocket nobody reviewed
                continue
            for method in sorted(methods or ()):
                if method == "HEAD":
                    continue
                # No body: a request with one is authenticated by the gate before the
                # route (shunter.api.gate), which would hide a route without the guard.
                response = await http.request(method, concrete(path))
                if response.status_code != 401:
                    found.append(f"{method} {path}")
    return found


async def test_every_route_answers_401_without_a_token():
    app = secured_app()
    assert await unguarded(app) == []
    guarded = {path for path, _, route in routes_of(app) if path not in OPEN}
    # The walk covered the whole API, not an empty list.
    assert guarded >= {
        "/api/training/submit",
        "/api/training/queue",
        "/api/training/status/{job_id}",
        "/api/training/cancel/{job_id}",
        "/api/training/jobs",
        "/api/training/live",
        "/api/training/stream",
        "/api/training/status/{job_id}/logs",
        "/api/training/suspend/{job_id}",
        "/api/training/resume/{job_id}",
        "/api/training/jobs/{job_id}/attempts",
        "/api/training/usage",
        "/api/training/shares",
        "/api/trainer/v1/report",
    }


async def test_every_namespace_is_accepted_only_where_a_route_declares_it():
    """`namespace=*` is refused by the guard itself (auth off here: no review runs)
    except on the accounting routes, which then need PostgreSQL (unset: 503)."""
    app = create_app(ApiSettings(auth="none", namespace="default"), nowhere())
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
        refused = await http.get("/api/training/jobs", params={"namespace": "*"})
        assert refused.status_code == 422
        assert "every namespace" in refused.json()["message"]
        usage = await http.get("/api/training/usage", params={"namespace": "*"})
        assert usage.status_code == 503
        bad = await http.get("/api/training/usage", params={"namespace": "a*"})
        assert bad.status_code == 422


async def test_a_route_added_without_the_guard_is_caught():
    app = secured_app()

    @app.get("/api/training/leaky")
    async def leaky() -> dict[str, str]:
        return {"secret": "every job"}

    @app.post("/api/admin/purge")
    async def purge() -> dict[str, str]:
        return {"purged": "everything"}

    assert await unguarded(app) == ["GET /api/training/leaky", "POST /api/admin/purge"]


async def test_the_allow_list_names_only_routes_that_exist():
    assert {path for path, _, _ in routes_of(secured_app())} >= OPEN


async def test_open_routes_stay_open():
    transport = httpx.ASGITransport(app=secured_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        assert (await http.get("/healthz")).status_code == 200
        assert (await http.get("/api/config")).json()["auth_required"] is True
        assert (await http.get("/ui/")).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "verb"),
    [
        ("GET", "/api/training/queue", "list"),
        ("GET", "/api/training/live", "list"),
        ("GET", "/api/training/jobs", "list"),
        ("GET", "/api/training/status/{job_id}", "get"),
        ("GET", "/api/training/status/{job_id}/events", "get"),
        ("GET", "/api/training/status/{job_id}/logs", "get"),
        ("GET", "/api/training/stream", "list"),
        ("POST", "/api/training/submit", "create"),
        ("POST", "/api/training/cancel/{job_id}", "patch"),
        ("POST", "/api/training/suspend/{job_id}", "patch"),
        ("POST", "/api/training/resume/{job_id}", "patch"),
        ("GET", "/api/training/jobs/{job_id}/attempts", "get"),
    ],
)
def test_the_verb_comes_from_the_route(method: str, path: str, verb: str):
    route = next(
        r for p, methods, r in routes_of(secured_app()) if p == path and method in (methods or ())
    )
    assert isinstance(route, APIRoute)
    assert verb_of(route) == verb


def runs_on_the_loop(call: Any) -> bool:
    if not inspect.isfunction(call) and not inspect.ismethod(call):
        call = type(call).__call__  # a callable instance
    return inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call)


def sync_callables(app: FastAPI) -> list[str]:
    """Endpoints and dependencies (routers' ones and sub-dependencies included) that are
    plain `def`: FastAPI runs each in its thread pool, a thread hop per request."""
    found = []
    for path, _, route in routes_of(app):
        if not isinstance(route, APIRoute):
            continue
        pending = [route.dependant]
        while pending:
            dependant = pending.pop()
            call = dependant.call
            if call is not None and not runs_on_the_loop(call):
                found.append(f"{path}: {getattr(call, '__qualname__', call)!r}")
            pending.extend(dependant.dependencies)
    return sorted(set(found))


def test_no_endpoint_or_dependency_runs_in_the_thread_pool():
    assert sync_callables(secured_app()) == []


def slow_lookup() -> str:
    return "x"


def test_a_plain_def_dependency_is_caught():
    app = secured_app()

    @app.get("/api/training/probe")
    async def probe(value: Annotated[str, Depends(slow_lookup)]) -> str:
        return value

    assert sync_callables(app) == ["/api/training/probe: 'slow_lookup'"]
