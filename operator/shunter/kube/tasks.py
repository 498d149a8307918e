"""Stopping a background task, for the operator and the API alike.

`await task` under `suppress(CancelledError)` after `task.cancel()` also swallows a
cancel of the caller itself, which arrives as the same exception: a service told to
stop while it stops a task of its own would then go on. `stop` waits with
`asyncio.wait`, which never raises the task's outcome, so a cancel of the caller
reaches the caller; the task's own failure is still raised, as `await task` raised it.
"""

from __future__ import annotations

import asyncio
from typing import Any


async def stop(task: asyncio.Future[Any]) -> None:
    """Cancel the task and wait until it has ended; raise its failure, if it failed."""
    task.cancel()
    await asyncio.wait({task})
    failure = None if task.cancelled() else task.exception()
    if failure is not None:
        raise failure
