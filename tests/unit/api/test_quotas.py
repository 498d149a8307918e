"""Long answers under bounds (shunter.api.quotas), pure asyncio, no cluster.

A followed log on the local control plane ends at once (kwok's nodes run no process),
so the supervision of a long, quiet source is shown here on a source the test holds
open; tests/cluster/security/test_api_abuse.py shows it on GET /stream, for real.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from shunter.api.auth import Principal
from shunter.api.errors import Forbidden, TooManyStreams
from shunter.api.quotas import StreamQuota, supervised

ALICE, BOB = Principal("alice"), Principal("bob")


def test_a_user_holds_at_most_the_cap_and_others_are_not_counted():
    quota = StreamQuota(kind="followed logs", per_user=2)
    first, second = quota.take(ALICE), quota.take(ALICE)
    with pytest.raises(TooManyStreams) as refused:
        quota.take(ALICE)
    assert refused.value.status == 429
    assert refused.value.message == (
        "User 'alice' already has 2 open followed logs, the most allowed: close one first"
    )
    quota.take(BOB)  # another user's place is their own
    first()
    first()  # released twice: counted once
    assert quota.held("alice") == 1
    quota.take(ALICE)
    second()
    assert quota.held("alice") == 1


class Source:
    """An async generator the test feeds; it records that it was closed."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def chunks(self) -> AsyncIterator[str]:
        try:
            while (item := await self.queue.get()) is not None:
                yield item
        finally:
            self.closed.set()


def ending(why: str) -> str:
    return f"END {why}"


async def collect(chunks: AsyncIterator[str]) -> list[str]:
    return [chunk async for chunk in chunks]


async def test_chunks_pass_through_while_allowed_and_the_end_is_the_sources():
    source = Source()
    checks = 0
    checked_twice = asyncio.Event()

    async def allowed() -> None:
        nonlocal checks
        checks += 1
        if checks == 2:
            checked_twice.set()

    chunks = supervised(source.chunks(), recheck=allowed, every=0.05, seconds=None, ending=ending)
    reading = asyncio.create_task(collect(chunks))
    for item in ("a", "b"):
        await source.queue.put(item)
    await asyncio.wait_for(checked_twice.wait(), 5)  # a quiet source: checks go on
    await source.queue.put(None)
    assert await asyncio.wait_for(reading, 5) == ["a", "b"]
    assert source.closed.is_set()


async def test_a_refusal_ends_a_quiet_source_with_its_message():
    source = Source()
    revoked = asyncio.Event()

    async def check() -> None:
        if revoked.is_set():
            raise Forbidden("User 'alice' may not get trainingjobs in namespace 'a'")

    chunks = supervised(source.chunks(), recheck=check, every=0.05, seconds=None, ending=ending)
    await source.queue.put("line")
    assert await anext(chunks) == "line"
    revoked.set()  # nothing more comes from the source: the check alone ends it
    last = await asyncio.wait_for(anext(chunks), 5)
    assert last == "END No longer allowed: User 'alice' may not get trainingjobs in namespace 'a'"
    with pytest.raises(StopAsyncIteration):
        await anext(chunks)
    await asyncio.wait_for(source.closed.wait(), 5)


async def test_the_time_limit_ends_the_answer():
    source = Source()

    async def allowed() -> None:
        return None

    chunks = supervised(source.chunks(), recheck=allowed, every=10, seconds=0.1, ending=ending)
    assert await asyncio.wait_for(collect(chunks), 5) == [
        "END Open for the longest allowed (0.1 s): open it again"
    ]
    await asyncio.wait_for(source.closed.wait(), 5)


async def test_a_client_that_goes_away_closes_the_source():
    source = Source()

    async def allowed() -> None:
        return None

    chunks = supervised(source.chunks(), recheck=allowed, every=10, seconds=None, ending=ending)
    await source.queue.put("x")
    assert await anext(chunks) == "x"
    pending = asyncio.create_task(anext(chunks))  # waiting on a quiet source
    for _ in range(5):
        await asyncio.sleep(0)
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await chunks.aclose()  # what the server does with a response it stops
    await asyncio.wait_for(source.closed.wait(), 5)
