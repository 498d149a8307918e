"""The FastAPI application: wiring only (settings, cluster, cache, history, routes)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from shunter.api import errors
from shunter.api.auth import Authority
from shunter.api.history import History
from shunter.api.jobcache import JobCache
from shunter.api.metrics import Metrics
from shunter.api.routes import health, training
from shunter.api.service import TrainingService
from shunter.api.settings import ApiSettings
from shunter.kube import Kube

log = logging.getLogger("shunter.api")
CACHE_SYNC_TIMEOUT = 30.0
# The web UI: static files, no build step.
STATIC = Path(__file__).parent / "static"


def create_app(settings: ApiSettings, kube: Kube) -> FastAPI:
    cache = JobCache(kube, namespace=settings.watch_namespace)
    history = History(settings.database_url)
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        cache.start()
        try:
            await asyncio.wait_for(cache.jobs.synced.wait(), CACHE_SYNC_TIMEOUT)
        except TimeoutError:
            log.warning("job cache not synced after %.0fs; /readyz says so", CACHE_SYNC_TIMEOUT)
        if settings.auth == "none":
            log.warning("SHUNTER_API_AUTH=none: every caller may do everything (demo only)")
        yield
        await cache.stop()
        await history.close()
        await kube.close()

    app = FastAPI(
        title="Shunter",
        version="0.1.0",
        summary="Queue, run and cancel GPU training jobs on Kubernetes",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.cache = cache
    app.state.metrics = metrics
    app.state.authority = Authority(kube, enabled=settings.auth == "kubernetes")
    app.state.service = TrainingService(kube, cache, history, settings)
    metrics.cached_jobs.set_function(cache.count)
    errors.install(app)
    metrics.install(app)
    app.include_router(training.router)
    app.include_router(health.router)
    app.mount("/ui", StaticFiles(directory=STATIC, html=True), name="ui")

    @app.get("/", include_in_schema=False)
    async def root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    return app
