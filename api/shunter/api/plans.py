"""The operator's kept plan of the queue, as the API reads it (shunter.domain.estimates).

The API never simulates the queue: it reads the plan the operator published to the
mirror (table queue_plan), at most every POLL seconds and only when it is newer
(the row's computed_at, the plan's version). Of a new plan it reads the estimates
only (columns: a few hundred kilobytes at 10,000 queued jobs, parsed off the event
loop); the timeline a what-if needs besides is read and parsed on the first what-if
of a plan (`whole`), with the index a what-if reads, and kept with it. Every view and
every what-if then answers from memory. Without a database, or with estimates off,
there is no plan: queued jobs show the estimate their status carries (the first jobs
of each queue), or none.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from shunter.api.errors import Unavailable
from shunter.api.history import History
from shunter.domain.estimates import Plan, parse
from shunter.domain.whatif import timeline_of

log = logging.getLogger("shunter.api.plans")

POLL = 2.0


class Plans:
    def __init__(self, history: History) -> None:
        self.history = history
        self.latest: Plan | None = None
        self.version: datetime | None = None  # the row's computed_at
        self._whole: asyncio.Lock | None = None

    async def refresh(self) -> Plan | None:
        found = await self.history.plan(after=self.version)
        if found is not None:
            parsed = await asyncio.to_thread(parse, found[1])
            if parsed is not None:
                self.latest, self.version = parsed, found[0]
        return self.latest

    async def whole(self) -> Plan | None:
        """The newest plan with its timeline (what a what-if reads): read and parsed
        once per plan, by the first what-if that needs it."""
        if self.latest is not None and self.latest.index is not None:
            return self.latest
        if self._whole is None:
            self._whole = asyncio.Lock()
        async with self._whole:
            if self.latest is not None and self.latest.index is not None:
                return self.latest
            try:
                found = await self.history.timeline()
            except Unavailable as exc:
                log.debug("plan's timeline not read: %s", exc)
                return self.latest if self.latest is not None and self.latest.jobs else None
            if found is None or found[2] is None:
                return None
            parsed = await asyncio.to_thread(_parse, found[1], found[2])
            if parsed is not None and (self.version is None or found[0] >= self.version):
                self.latest, self.version = parsed, found[0]
            return parsed

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Unavailable as exc:
                log.debug("plan not read: %s", exc)
            except Exception:
                log.exception("plan not read")
            await asyncio.sleep(POLL)


def _parse(body: Any, timeline: Any) -> Plan | None:
    kept = parse(body, timeline)
    if kept is not None:
        timeline_of(kept)  # built here, off the loop, not by the first what-if
    return kept
