"""The optional client-side token bucket, in virtual time (pure)."""

from __future__ import annotations

import pytest

from shunter.kube.ratelimit import TokenBucket


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_goes_at_once_then_requests_are_paced_at_qps():
    clock = Clock()
    bucket = TokenBucket(qps=5, burst=3, clock=clock)
    assert [bucket.reserve() for _ in range(3)] == [0.0, 0.0, 0.0]
    # Empty: waiters reserve in arrival order, each a fifth of a second after the last.
    assert [round(bucket.reserve(), 6) for _ in range(3)] == [0.2, 0.4, 0.6]
    clock.now += 0.6  # the reserved tokens are all spent by now
    assert round(bucket.reserve(), 6) == 0.2


def test_an_idle_bucket_refills_only_up_to_its_burst():
    clock = Clock()
    bucket = TokenBucket(qps=10, burst=2, clock=clock)
    bucket.reserve()
    bucket.reserve()
    clock.now += 3600
    assert [round(bucket.reserve(), 6) for _ in range(3)] == [0.0, 0.0, 0.1]


async def test_take_waits_for_a_token():
    bucket = TokenBucket(qps=20, burst=1)
    await bucket.take()
    assert bucket.reserve() > 0  # the first take spent the only token


def test_from_env_is_off_unless_a_qps_is_given():
    assert TokenBucket.from_env({}) is None
    assert TokenBucket.from_env({"SHUNTER_KUBE_QPS": "0", "SHUNTER_KUBE_BURST": "5"}) is None
    bucket = TokenBucket.from_env({"SHUNTER_KUBE_QPS": "50", "SHUNTER_KUBE_BURST": "0"})
    assert bucket is not None
    assert (bucket.qps, bucket.burst) == (50, 100)
    bucket = TokenBucket.from_env({"SHUNTER_KUBE_QPS": "0.5", "SHUNTER_KUBE_BURST": "3"})
    assert bucket is not None
    assert (bucket.qps, bucket.burst) == (0.5, 3)


@pytest.mark.parametrize(
    "env",
    [
        {"SHUNTER_KUBE_QPS": "fast"},
        {"SHUNTER_KUBE_QPS": "10", "SHUNTER_KUBE_BURST": "1.5"},
        {"SHUNTER_KUBE_QPS": "-1"},
        {"SHUNTER_KUBE_QPS": "10", "SHUNTER_KUBE_BURST": "-2"},
    ],
)
def test_from_env_says_what_is_wrong(env: dict[str, str]):
    with pytest.raises(ValueError, match=r"SHUNTER_KUBE_QPS|qps must be"):
        TokenBucket.from_env(env)
