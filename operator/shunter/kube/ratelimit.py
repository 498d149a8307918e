"""An optional client-side rate limit: a token bucket in front of every request.

The API server protects itself (priority and fairness answers 429, and the client
backs off, shunter.kube.retries); this limit is for the cluster's owner who wants
Shunter to stay under a budget of its own, as client-go's QPS and burst do. It is
off unless SHUNTER_KUBE_QPS is set: Shunter's calls are already bounded by the work
(one status write per change, informers instead of polls), and a limit set too low
only delays the operator's decisions.

The bucket holds up to `burst` tokens and gains `qps` a second; each request takes
one, waiting for it when there is none. Waiting requests reserve their tokens in
arrival order (the count may go below zero), so none is starved by later ones.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable, Mapping


class TokenBucket:
    def __init__(
        self, qps: float, burst: int, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if qps <= 0 or burst < 1:
            raise ValueError(f"rate limit: qps must be > 0 and burst >= 1 (got {qps}, {burst})")
        self.qps = qps
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._at = clock()

    def reserve(self) -> float:
        """Take a token; the seconds to wait before using it (0: use it now)."""
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.qps)
        self._at = now
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps

    async def take(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> TokenBucket | None:
        """SHUNTER_KUBE_QPS (unset, empty or 0: no limit) and SHUNTER_KUBE_BURST
        (unset, empty or 0: twice the QPS, at least 1)."""
        raw_qps = environ.get("SHUNTER_KUBE_QPS", "").strip()
        raw_burst = environ.get("SHUNTER_KUBE_BURST", "").strip()
        try:
            qps = float(raw_qps) if raw_qps else 0.0
            burst = int(raw_burst or 0) or max(1, int(2 * qps))
        except ValueError as exc:
            raise ValueError(
                f"SHUNTER_KUBE_QPS={raw_qps!r}, SHUNTER_KUBE_BURST={raw_burst!r}: "
                "a number of requests a second and a whole number of requests"
            ) from exc
        if qps < 0:
            raise ValueError(f"SHUNTER_KUBE_QPS={raw_qps!r}: must not be negative (0: no limit)")
        return cls(qps, burst) if qps > 0 else None
