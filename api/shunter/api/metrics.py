"""Prometheus metrics of the API, in a registry of the app's own.

Accounting (`UsageMeter`): `shunter_gpu_seconds_total{queue,namespace,outcome}` (GPU-
seconds allocated, admission to end), `shunter_gpu_seconds_lost_total` (work lost) and
`shunter_queue_wait_seconds{queue}` (a histogram of waits, observed when the run ends)
count the runs the job watch sees end while this API runs: the runs already in a job's
status.history when the watch first lists it are taken as counted, so a restart does
not count them twice (a restart is a counter reset, as Prometheus expects; the
durable record is the accounting in PostgreSQL). Every API replica counts the same
runs: aggregate with max or avg by the labels, not sum. `shunter_queue_weighted_share`
is each queue's weighted share as GET /shares shows it (shunter.api.shares: the
operator's rule over the jobs the API watches, unless the queue's status reports one),
computed at each scrape.
"""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shunter.domain.model import Job
from shunter.domain.usage import WAIT_BOUNDS, usage_of


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

        self.usage = UsageMeter(self.registry)

    def watch_shares(self, shares: Callable[[], Mapping[str, float]]) -> None:
        """`shares()`: each queue's weighted share now (queue -> share)."""
        self.registry.register(_Shares(shares))

    def token_reviewed(self, valid: bool) -> None:
        self.token_reviews.labels("valid" if valid else "refused").inc()

    def install(self, app: FastAPI) -> None:
        app.add_middleware(_Measure, metrics=self)


class UsageMeter:
    """Counts each run once, when the job watch shows it ended (see the module doc)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.gpu_seconds = Counter(
            "shunter_gpu_seconds", "GPU-seconds allocated to runs (admission to end), by how"
            " they ended", ["queue", "namespace", "outcome"], registry=registry,
        )  # fmt: skip
        self.lost = Counter(
            "shunter_gpu_seconds_lost", "GPU-seconds of work runs lost (since their last"
            " checkpoint, or all of it)", ["queue", "namespace", "outcome"], registry=registry,
        )  # fmt: skip
        self.waits = Histogram(
            "shunter_queue_wait_seconds", "How long runs waited for their GPUs", ["queue"],
            buckets=(*WAIT_BOUNDS, float("inf")), registry=registry,
        )  # fmt: skip
        self._counted: dict[str, int] = {}  # job uid -> the highest run counted
        self.live: Callable[[], bool] = lambda: True

    def seen(self, kind: str, job: Job) -> None:
        if kind == "DELETED":
            self._counted.pop(job.uid, None)
            return
        done = max((a.number for a in job.status.history if a.finished_at), default=0)
        counted = self._counted.get(job.uid)
        self._counted[job.uid] = max(done, counted or 0)
        if counted is None and not self.live():
            return  # listed before the watch was in sync: ended before this API ran
        for attempt in job.status.history:
            if attempt.number <= (counted or 0):
                continue
            run = usage_of(attempt, gpus=job.spec.total_gpus)
            if run is None:
                continue
            labels = (job.spec.queue, job.key.namespace, run.outcome)
            self.gpu_seconds.labels(*labels).inc(run.gpus * run.allocated_seconds)
            self.lost.labels(*labels).inc(run.lost_gpu_seconds)
            if run.wait_seconds is not None:
                self.waits.labels(job.spec.queue).observe(run.wait_seconds)


class _Shares(Collector):
    def __init__(self, shares: Callable[[], Mapping[str, float]]) -> None:
        self.shares = shares

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "shunter_queue_weighted_share",
            "GPUs a queue holds above its gpuQuota over its fair-sharing weight",
            labels=["queue"],
        )
        for name, share in sorted(self.shares().items()):
            family.add_metric([name], share)
        yield family


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
