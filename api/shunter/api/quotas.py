"""Long answers under bounds: how many one caller holds open, for how long, and
whether the caller may still.

GET /stream and a followed log (`GET /status/{id}/logs?follow=true`) hold a
connection for minutes, and a followed log one to the API server as well. Without
bounds one user could open them by the thousand, or keep reading after their
RoleBinding is gone. So:

- **a cap per user and kind** (SHUNTER_API_STREAMS_PER_USER,
  SHUNTER_API_FOLLOWS_PER_USER): one more is 429, saying how many are open. The
  place is taken before the answer is made and given back when the connection
  closes, however it closes: by the response (`HeldStream`), not by the generator,
  since a generator the server never started runs no `finally`. With auth off every
  caller is the one demo user and shares its cap.
- **a time limit**: a followed log ends after SHUNTER_API_FOLLOW_SECONDS (the client
  opens it again, through the guard); /stream ends by itself after
  shunter.api.streaming.STREAM_SECONDS.
- **re-authorization** every SHUNTER_API_REAUTHORIZE_SECONDS, even while nothing is
  sent: the route's guard again (token, then permission; shunter.api.dependencies.
  recheck). A refusal ends the answer with its message as the last chunk, since the
  status line went out long ago.

`supervised` reads its source in a task of its own, so waiting for the next chunk
never stands in the way of a check that is due; the source is closed when the answer
ends, whichever side ends it.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from shunter.api.auth import Principal
from shunter.api.errors import ApiError, TooManyStreams
from shunter.kube import tasks

T = TypeVar("T")


class StreamQuota:
    """Open answers of one kind, counted per user."""

    def __init__(self, *, kind: str, per_user: int) -> None:
        self.kind = kind
        self.per_user = per_user
        self._open: dict[str, int] = {}

    def held(self, user: str) -> int:
        return self._open.get(user, 0)

    def take(self, principal: Principal) -> Callable[[], None]:
        """A place for the caller, or TooManyStreams; returns its release (idempotent)."""
        user = principal.user
        held = self.held(user)
        if held >= self.per_user:
            raise TooManyStreams(
                f"User {user!r} already has {held} open {self.kind}, the most allowed:"
                " close one first"
            )
        self._open[user] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            left = self._open[user] - 1
            if left:
                self._open[user] = left
            else:
                del self._open[user]

        return release


class HeldStream(StreamingResponse):
    """A streaming answer that gives its quota place back when the connection ends."""

    def __init__(self, content: AsyncIterator[Any], *, release: Callable[[], None],
                 **kwargs: Any) -> None:  # fmt: skip
        super().__init__(content, **kwargs)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _next(chunks: AsyncIterator[T]) -> list[T]:
    """[the next chunk], or [] at the end (a task cannot carry StopAsyncIteration well)."""
    try:
        return [await anext(chunks)]
    except StopAsyncIteration:
        return []


async def supervised(
    chunks: AsyncIterator[T],
    *,
    recheck: Callable[[], Awaitable[None]],
    every: float,
    seconds: float | None,
    ending: Callable[[str], T],
) -> AsyncIterator[T]:
    """The chunks, checked again every `every` seconds and ended after `seconds`
    (None: when the source ends); a refusal or the time limit is the last chunk,
    `ending(message)`."""
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + seconds if seconds is not None else math.inf
    check_at = loop.time() + every
    pending: asyncio.Task[list[T]] | None = None
    try:
        while True:
            now = loop.time()
            if now >= ends_at:
                yield ending(f"Open for the longest allowed ({seconds:g} s): open it again")
                return
            if now >= check_at:
                try:
                    await recheck()
                except ApiError as refusal:
                    yield ending(f"No longer allowed: {refusal.message}")
                    return
                check_at = loop.time() + every
                continue
            if pending is None:
                pending = asyncio.create_task(_next(chunks))
            done, _ = await asyncio.wait({pending}, timeout=min(check_at, ends_at) - now)
            if not done:
                continue
            finished, pending = pending, None
            items = finished.result()
            if not items:
                return
            yield items[0]
    finally:
        if pending is not None:
            await tasks.stop(pending)
        closing = getattr(chunks, "aclose", None)
        if closing is not None:
            await closing()
