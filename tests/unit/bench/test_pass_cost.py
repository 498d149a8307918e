"""bench.pass_cost --shapes: the pure pass on Kueue's baseline shape fills every
queue's quota while settling, then each measured pass follows one completion."""

from __future__ import annotations

from bench.kueue_shape import SHAPES
from bench.pass_cost import measure_shape


def test_the_baseline_shape_settles_at_its_quota_and_each_pass_readmits():
    shape = SHAPES["baseline"]
    found = measure_shape("baseline", passes=3)
    assert (found["queues"], found["jobs"]) == (shape.queue_count, shape.jobs())
    # The large jobs (priority 200, 20 GPUs: a queue's whole nominal quota) go first,
    # one per queue, and fill the cohorts: 30 running, 600 GPUs of 600.
    assert found["running_after_settling"] == shape.queue_count
    # A completion, the next large job admitted in its place, and positions shifting.
    assert found["decisions_per_pass"] >= 2
    assert 0 < found["pass_p50_ms"] <= found["pass_max_ms"]
