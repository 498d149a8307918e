"""bench.api_load's reading of the API's own latency histogram."""

from __future__ import annotations

from bench.api_load import api_latency
from prometheus_client import CollectorRegistry, Histogram, generate_latest


def test_the_api_latency_counts_only_the_named_post_route_between_two_reads():
    registry = CollectorRegistry()
    seconds = Histogram("shunter_api_request_seconds", "latency", ["method", "route"],
                        registry=registry)  # fmt: skip
    cancel = seconds.labels("POST", "/api/training/cancel/{job_id}")
    cancel.observe(2.0)  # before the first read: not counted
    before = generate_latest(registry).decode()
    cancel.observe(0.3)
    cancel.observe(0.7)
    seconds.labels("GET", "/api/training/cancel/{job_id}").observe(0.1)
    seconds.labels("POST", "/api/training/submit").observe(0.1)
    made = api_latency(before, generate_latest(registry).decode(), "cancel")
    assert (made["0.25"], made["0.5"], made["1.0"], made["+Inf"]) == (0.0, 1.0, 2.0, 2.0)
