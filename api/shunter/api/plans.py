"""The operator's kept plan of the queue, as the API reads it (shunter.domain.estimates).

The API never simulates the queue: it reads the plan the operator published to the
mirror (table queue_plan), at most every POLL seconds and only when it is newer
(the row's computed_at), and parses it off the event loop once per version, with
the index a what-if reads. Every view and every what-if then answers from memory.
Without a database, or with estimates off, there is no plan: queued jobs show the
estimate their status carries (the first jobs of each queue), or none.
"""

from __future__ import annotations

import asyncio
import logging

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

    async def refresh(self) -> Plan | None:
        after = self.latest.computed_at if self.latest else None
        found = await self.history.plan(after=after)
        if found is not None:
            self.latest = await asyncio.to_thread(_parse, found[1])
        return self.latest

    async def run(self) -> None:
        while True:
            try:
                await self.refresh()
            except Unavailable as exc:
                log.debug("plan not read: %s", exc)
            except Exception:
                log.exception("plan not read")
            await asyncio.sleep(POLL)


def _parse(body: object) -> Plan:
    assert isinstance(body, dict)
    kept = parse(body)
    timeline_of(kept)  # built here, off the loop, not by the first what-if
    return kept
