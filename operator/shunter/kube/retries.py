"""When a refused request is sent again, and after how long.

The API server says "not now" with 429 (API priority and fairness, or
--max-requests-inflight, rejected the request before running it) and with 5xx
(restarting, an overloaded etcd, an aggregated API away), usually with a Retry-After
header. A request is sent again only when that is safe:

- a read (GET: a get, a list, a watch's opening) after a 429, or a 5xx that says when
  to come back (Retry-After), as client-go does: reading twice changes nothing, but a
  5xx without that hint is an answer, not a "later" (a kubelet that does not answer
  behind pods/log is a 502 every time, and ten attempts only make the caller wait);
- a write (POST, PUT, PATCH, DELETE) only after a 429, or a 503 whose Status reason is
  TooManyRequests: both are refusals the server gives before it runs the request, so
  the write did not happen. Any other 5xx may come after the write was stored (an etcd
  timeout), and sending it again could do it twice: the caller decides.

(A 401 is another matter, handled by the client: our credentials are reloaded once
and the request sent once more, whatever its method, since authentication comes
before anything is done.)

Retry-After is honoured as the server gives it (seconds or an HTTP date), capped;
without it the wait doubles from half a second, with jitter so that clients refused
together do not come back together. Attempts are bounded in number and in time: a
call never outlasts its own timeout, and a wait that would cross it means giving up
now. The last refusal is then raised as is (429: `TooManyRequests`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

# As many as client-go makes after a Retry-After; the call's own timeout bounds them too.
MAX_ATTEMPTS = 10
# The longest wait a Retry-After can ask of us (the server's own hint is 1 s or so).
MAX_RETRY_AFTER = 30.0
FIRST_BACKOFF = 0.5
MAX_BACKOFF = 8.0
_SAFE_METHODS = frozenset({"GET", "HEAD"})


def retry_after(value: str | None, *, now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header (delay-seconds or an HTTP date);
    None when there is no usable value."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def may_retry(method: str, status: int, reason: str, *, asked: bool) -> bool:
    """Whether sending the request again is safe and useful (see the module
    docstring); asked: the answer carried a Retry-After."""
    not_executed = status == 429 or (status == 503 and reason == "TooManyRequests")
    if method.upper() in _SAFE_METHODS:
        return not_executed or (status >= 500 and asked)
    return not_executed


@dataclass
class Attempts:
    """The attempts of one call: at most `limit`, none started after `deadline`
    (a monotonic time)."""

    deadline: float
    limit: int = MAX_ATTEMPTS
    made: int = 1

    def next_delay(self, *, retry_after: float | None, now: float) -> float | None:
        """Seconds to wait before the next attempt; None to give up."""
        if self.made >= self.limit:
            return None
        if retry_after is not None:
            delay = min(retry_after, MAX_RETRY_AFTER)
        else:
            delay = min(FIRST_BACKOFF * 2 ** (self.made - 1), MAX_BACKOFF)
            delay *= random.uniform(0.5, 1.0)
        if now + delay >= self.deadline:
            return None
        self.made += 1
        return delay
