"""The API's own metrics that need no cluster: garbage-collector pauses."""

from __future__ import annotations

import gc

from prometheus_client import generate_latest

from shunter.api.metrics import Metrics


def count_of(text: str, generation: int) -> float:
    prefix = f'shunter_api_gc_pause_seconds_count{{generation="{generation}"}} '
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix) :])
    return 0.0


def test_every_full_collection_is_timed():
    metrics = Metrics()
    before = count_of(generate_latest(metrics.registry).decode(), 2)
    gc.collect()
    gc.collect()
    text = generate_latest(metrics.registry).decode()
    assert count_of(text, 2) == before + 2
    assert 'shunter_api_gc_pause_seconds_bucket{generation="2",le="+Inf"}' in text


def test_the_scale_bench_reads_the_full_collections_from_the_metrics():
    from bench.api_load import gc_pauses

    metrics = Metrics()
    gc.collect()
    found = gc_pauses(generate_latest(metrics.registry).decode())
    assert found["full_collections"] >= 1
    assert 0 < found["seconds"] < 10
    assert 0 <= found["over_0_1_s"] <= found["full_collections"]
