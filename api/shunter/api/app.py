"""The FastAPI application: wiring only (settings, cluster, cache, history, routes).

The API docs are Swagger UI 5 from the `swagger-ui-bundle-v2` package (pinned in
pyproject.toml; `swagger-ui-bundle` ships Swagger UI 4, which cannot read FastAPI's
OpenAPI 3.1), served by this server at /docs/assets: FastAPI's own /docs loads it
from a CDN at a floating version, onto the origin where the web UI keeps its token.
The page's script is ours (static/docs.js), so the Content-Security-Policy needs no
inline script (shunter.api.gate). ReDoc, which FastAPI also loads from a CDN, is off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from shunter.api import errors
from shunter.api.auth import Authority, audiences_of
from shunter.api.gate import Gate
from shunter.api.history import History
from shunter.api.jobcache import JobCache
from shunter.api.metrics import Metrics
from shunter.api.quotas import StreamQuota
from shunter.api.reports import ReportChannel
from shunter.api.reports import router as report_router
from shunter.api.routes import accounting, health, scheduling, training
from shunter.api.service import TrainingService
from shunter.api.settings import ApiSettings
from shunter.api.shares import current_weighted_shares
from shunter.kube import Kube

log = logging.getLogger("shunter.api")
CACHE_SYNC_TIMEOUT = 30.0
# The web UI: static files, no build step.
STATIC = Path(__file__).parent / "static"


def create_app(settings: ApiSettings, kube: Kube) -> FastAPI:
    cache = JobCache(kube, namespace=settings.watch_namespace)
    history = History(settings.database_url, scope=settings.scope.key)
    metrics = Metrics()
    reports = ReportChannel(kube, cache)
    # Logs get a connection pool of their own (shunter.api.logs).
    log_kube = Kube(kube.connection, connections=settings.log_connections,
                    user_agent=kube.user_agent)  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cache.start()
        try:
            async with asyncio.timeout(CACHE_SYNC_TIMEOUT):
                await cache.jobs.synced.wait()
        except TimeoutError:
            log.warning("job cache not synced after %.0fs; /readyz says so", CACHE_SYNC_TIMEOUT)
        if settings.auth == "none":
            log.warning("SHUNTER_API_AUTH=none: every caller may do everything (demo only)")
        flusher = asyncio.create_task(reports.run(), name="report-flush")
        planner = asyncio.create_task(service.plans.run(), name="plan-reader")
        yield
        flusher.cancel()
        planner.cancel()
        await asyncio.gather(flusher, planner, return_exceptions=True)
        await reports.flush()
        await cache.stop()
        await history.close()
        await log_kube.close()
        await kube.close()

    app = FastAPI(
        title="Shunter",
        version="0.1.0",
        summary="Queue, run and cancel GPU training jobs on Kubernetes",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.cache = cache
    app.state.metrics = metrics
    authority = Authority(kube, enabled=settings.auth == "kubernetes",
                          audiences=audiences_of(settings.token_audiences),
                          reviewed=metrics.token_reviewed)  # fmt: skip
    app.state.authority = authority
    app.state.reports = reports
    service = TrainingService(kube, cache, history, settings, log_kube=log_kube)
    app.state.service = service
    app.state.streams = StreamQuota(kind="streams", per_user=settings.streams_per_user)
    app.state.follows = StreamQuota(kind="followed logs", per_user=settings.follows_per_user)
    metrics.cached_jobs.set_function(cache.count)
    metrics.usage.live = cache.jobs.synced.is_set
    cache.listeners.append(metrics.usage.seen)
    metrics.watch_shares(lambda: current_weighted_shares(
        cache.fairness.store.values(), cache.queues.store, cache.jobs.store.values()))  # fmt: skip
    errors.install(app)
    # Added before the metrics' middleware, so inside it: a refused request is measured too.
    app.add_middleware(Gate, authority=authority, max_body_bytes=settings.max_body_bytes,
                       loopback_only=settings.auth == "none")  # fmt: skip
    metrics.install(app)
    app.include_router(training.router)
    app.include_router(scheduling.router)
    app.include_router(accounting.router)
    app.include_router(health.router)
    app.include_router(report_router)
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")
    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> FileResponse:
        return FileResponse(STATIC / "docs.html")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    return app
