"""Prometheus metrics of the API, in a registry of the app's own."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from fastapi import FastAPI, Request, Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


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
        @app.middleware("http")
        async def measure(
            request: Request, call_next: Callable[[Request], Awaitable[Response]]
        ) -> Response:
            start = time.perf_counter()
            response = await call_next(request)
            route = request.scope.get("route")
            # The route template, never the raw path: job ids would explode the labels.
            name = getattr(route, "path", "unmatched")
            self.requests.labels(request.method, name, str(response.status_code)).inc()
            self.latency.labels(request.method, name).observe(time.perf_counter() - start)
            return response
