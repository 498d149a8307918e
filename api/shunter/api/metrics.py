"""Prometheus metrics of the API, in a registry of the app's own."""

from __future__ import annotations

import time

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

    def install(self, app: FastAPI) -> None:
        app.add_middleware(_Measure, metrics=self)


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
