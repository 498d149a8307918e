"""Wait for a condition with a deadline: the suite never sleeps in place of a check."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class ConditionTimeout(AssertionError):
    """The condition did not hold before the deadline."""


def wait_for(
    probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = 0.1
) -> T:
    """Call probe until it returns a truthy value; return it, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise ConditionTimeout(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def wait_until_equal(
    probe: Callable[[], T], expected: T, *, timeout: float, what: str, interval: float = 0.1
) -> T:
    """wait_for a value equal to `expected`; on timeout, the message shows the last one."""
    seen: list[T] = []

    def equal() -> bool:
        seen[:] = [probe()]
        return seen[0] == expected

    try:
        wait_for(equal, timeout=timeout, what=what, interval=interval)
    except ConditionTimeout as exc:
        raise ConditionTimeout(f"{exc}; last seen {seen[0]!r}, expected {expected!r}") from None
    return seen[0]


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, within: float, what: str, interval: float = 0.1
) -> T:
    """wait_for on the event loop: await probe until it returns a truthy value."""
    deadline = time.monotonic() + within
    last: T | None = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise ConditionTimeout(f"timed out after {within:.0f}s waiting for {what} (last: {last!r})")
