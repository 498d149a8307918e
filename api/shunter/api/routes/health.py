"""Probes, metrics and client config: /healthz, /readyz, /metrics, /api/config."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    synced = request.app.state.cache.synced
    body = {"status": "ok" if synced else "waiting", "job_cache_synced": synced}
    return JSONResponse(body, status_code=200 if synced else 503)


@router.get("/api/config")
async def config(request: Request) -> dict[str, object]:
    """What a client needs before its first call: whether a token is required, the
    default namespace, and whether the nodes are simulated (the demo's kwok)."""
    settings = request.app.state.settings
    return {"auth_required": settings.auth == "kubernetes",
            "default_namespace": settings.namespace,
            "simulator": settings.simulator}  # fmt: skip


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    return Response(generate_latest(request.app.state.metrics.registry),
                    media_type=CONTENT_TYPE_LATEST)  # fmt: skip
