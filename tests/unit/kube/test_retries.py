"""Retry-After parsing, which refusals are retried, and the bounds on attempts (pure).

The API server answering 429 for real is in test_retries_cluster.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shunter.kube import retries
from shunter.kube.retries import Attempts, may_retry, retry_after

NOW = datetime(2026, 12, 4, 1, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("3", 3.0),
        (" 0 ", 0.0),
        ("Fri, 04 Dec 2026 01:00:07 GMT", 7.0),
        ("Fri, 04 Dec 2026 00:59:00 GMT", 0.0),  # in the past: now
        (None, None),
        ("", None),
        ("-1", None),
        ("soon", None),
        ("1.5", None),  # RFC 9110: whole seconds only
    ],
)
def test_retry_after(header: str | None, seconds: float | None):
    assert retry_after(header, now=NOW) == seconds


@pytest.mark.parametrize(
    ("method", "status", "reason", "asked", "retried"),
    [
        ("GET", 429, "TooManyRequests", True, True),
        ("GET", 429, "TooManyRequests", False, True),
        ("GET", 500, "InternalError", True, True),
        ("GET", 503, "ServiceUnavailable", True, True),
        ("GET", 504, "Timeout", True, True),
        # A 5xx without Retry-After is an answer (a kubelet behind pods/log away).
        ("GET", 502, "InternalError", False, False),
        ("GET", 500, "InternalError", False, False),
        ("GET", 404, "NotFound", True, False),
        ("GET", 409, "Conflict", False, False),
        # Writes: only refusals the server gave before running them.
        ("POST", 429, "TooManyRequests", True, True),
        ("PATCH", 503, "TooManyRequests", True, True),
        ("PUT", 503, "ServiceUnavailable", True, False),
        ("DELETE", 500, "InternalError", True, False),
        ("POST", 504, "Timeout", True, False),
    ],
)
def test_only_what_is_safe_is_sent_again(
    method: str, status: int, reason: str, asked: bool, retried: bool
):
    assert may_retry(method, status, reason, asked=asked) is retried


def test_retry_after_is_honoured_and_capped():
    attempts = Attempts(deadline=1000.0)
    assert attempts.next_delay(retry_after=2.0, now=0.0) == 2.0
    assert attempts.next_delay(retry_after=600.0, now=0.0) == retries.MAX_RETRY_AFTER
    assert attempts.made == 3


def test_backoff_doubles_with_jitter_up_to_a_cap():
    attempts = Attempts(deadline=1000.0, limit=20)
    delays = [attempts.next_delay(retry_after=None, now=0.0) for _ in range(8)]
    for n, delay in enumerate(delays):
        ceiling = min(retries.FIRST_BACKOFF * 2**n, retries.MAX_BACKOFF)
        assert delay is not None
        assert ceiling / 2 <= delay <= ceiling


def test_attempts_are_bounded_in_number_and_in_time():
    counted = Attempts(deadline=1000.0, limit=3)
    assert counted.next_delay(retry_after=1.0, now=0.0) == 1.0
    assert counted.next_delay(retry_after=1.0, now=1.0) == 1.0
    assert counted.next_delay(retry_after=1.0, now=2.0) is None  # the third was the last
    timed = Attempts(deadline=10.0)
    assert timed.next_delay(retry_after=5.0, now=4.0) == 5.0
    # A wait that would end past the deadline means giving up now, not sleeping first.
    assert timed.next_delay(retry_after=5.0, now=6.0) is None
    assert timed.made == 2
