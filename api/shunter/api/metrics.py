"""Prometheus metrics of the API, in a registry of the app's own."""

from __future__ import annotations

import gc
import time
import weakref
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "shunter_api_requests_total", "HTTP requests", ["method", "route", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "shunter_api_request_seconds", "HTTP request latency", ["method", "route"],
            registry=self.registry,
        )  # fmt: skip
        self.cached_jobs = Gauge(
            "shunter_api_cached_jobs", "TrainingJobs in the watch cache", registry=self.registry
        )
        self.streams = Gauge(
            "shunter_api_open_streams", "Open GET /stream connections", registry=self.registry
        )
        # A spray of random tokens shows as refused reviews; valid reviews stay at about
        # one per client per token TTL when the cache keeps the real clients' tokens.
        self.token_reviews = Counter(
            "shunter_api_token_reviews_total", "TokenReviews asked, by answer", ["answer"],
            registry=self.registry,
        )  # fmt: skip
        # A full collection walks every tracked object: at tens of thousands of cached
        # jobs it is a pause every request in flight waits for.
        self.gc_pauses = Histogram(
            "shunter_api_gc_pause_seconds", "Garbage collector pauses", ["generation"],
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=self.registry,
        )  # fmt: skip
        _time_collections(self.gc_pauses)

    def token_reviewed(self, valid: bool) -> None:
        self.token_reviews.labels("valid" if valid else "refused").inc()

    def install(self, app: FastAPI) -> None:
        app.add_middleware(_Measure, metrics=self)


def _time_collections(histogram: Histogram) -> None:
    """Observe every collection's pause (a callback that outlives its metrics does
    nothing: an app made again in the same process gets a callback of its own)."""
    alive = weakref.ref(histogram)
    started = 0.0

    def timed(phase: str, info: dict[str, Any]) -> None:
        nonlocal started
        if phase == "start":
            started = time.perf_counter()
            return
        target = alive()
        if target is not None:
            target.labels(str(info["generation"])).observe(time.perf_counter() - started)

    gc.callbacks.append(timed)


class _Measure:
    """Counts and times every request: a plain ASGI middleware (Starlette's
    BaseHTTPMiddleware costs a task and a stream per request, a measured share of a
    small GET)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # The route template, never the raw path: job ids would explode the labels.
            name = getattr(scope.get("route"), "path", "unmatched")
            method = scope["method"]
            self.metrics.requests.labels(method, name, str(status)).inc()
            self.metrics.latency.labels(method, name).observe(time.perf_counter() - start)
