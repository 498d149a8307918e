"""GET /stream: the job list pushed as server-sent events, fed by the watch cache.

The web UI opens one stream per tab instead of polling. The stream sends

- `event: live`: the /live view (slot holders, the queue in order, the rest newest
  first, with counts), whenever it changes;
- `event: job` (with `?job=`): that job and its Events, whenever they change
  (`{"job": null, "events": []}` once it is gone);
- a `: heartbeat` comment every HEARTBEAT_SECONDS, so proxies and the client know the
  stream is alive.

It wakes when the informers change (shunter.kube.informer `notifying`), not on a
timer; a burst of changes (10,000 jobs admitted at once) is coalesced to one render
per COALESCE_SECONDS, and an unchanged view is not re-sent. The `live` view is GET
/live's kept body (shunter.api.rendering): the streams of one namespace share one
render per change. What moves on with the
time alone (a checkpoint's age, a running job's work lost if stopped now) is rendered
afresh at each wake and each heartbeat; the UI ages it in between. A namespace outside the
watch cache's scope has no change signal: it is re-rendered every UNCOVERED_SECONDS.
The stream ends after STREAM_SECONDS; the client reconnects, so its token is checked
again (a revoked or expired token stops receiving within that time).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import ExitStack

from shunter.api.errors import NotFound
from shunter.api.schemas import JobEvent, JobPublic
from shunter.api.service import TrainingService
from shunter.domain.model import JobKey

HEARTBEAT_SECONDS = 15.0
COALESCE_SECONDS = 0.2
UNCOVERED_SECONDS = 2.0
STREAM_SECONDS = 300.0
RETRY_MILLISECONDS = 2000


def sse(event: str, data: str) -> str:
    return f"event: {event}\ndata: {data}\n\n"


async def detail_of(service: TrainingService, key: JobKey) -> str:
    """The job and its Events as JSON; a job that is gone is null. In the cache's scope
    the cache answers alone (it holds every write of this API): no GET per change."""
    if service.cache.covers(key.namespace):
        job = service.cache.get(key)
    else:
        try:
            job = await service.status(key)
        except NotFound:
            job = None
    events: list[JobEvent] = await service.events(key) if job is not None else []
    return json.dumps(
        {
            "job": JobPublic.of(
                job, at=service.appraisal(), lineage=await service.lineage(job)
            ).model_dump(mode="json")
            if job is not None
            else None,
            "events": [e.model_dump(mode="json") for e in events],
        }
    )


async def job_stream(
    service: TrainingService, namespace: str, *, limit: int, job: str | None
) -> AsyncIterator[str]:
    loop = asyncio.get_running_loop()
    ends_at = loop.time() + STREAM_SECONDS
    covered = service.cache.covers(namespace)
    signal = asyncio.Event()
    key = JobKey(namespace, job) if job else None
    with ExitStack() as subscriptions:
        if covered:
            subscriptions.enter_context(service.cache.jobs.notifying(signal))
            if key is not None:
                subscriptions.enter_context(service.cache.events.notifying(signal))
        yield f"retry: {RETRY_MILLISECONDS}\n\n"
        sent: dict[str, str] = {}
        while (left := ends_at - loop.time()) > 0:
            signal.clear()  # before reading: a change from here on wakes the next round
            views = {"live": (await service.live_json(namespace, limit=limit)).decode()}
            if key is not None:
                views["job"] = await detail_of(service, key)
            for event, data in views.items():
                if sent.get(event) != data:
                    sent[event] = data
                    yield sse(event, data)
            wait = HEARTBEAT_SECONDS if covered else UNCOVERED_SECONDS
            try:
                async with asyncio.timeout(min(wait, left)):
                    await signal.wait()
            except TimeoutError:
                yield ": heartbeat\n\n"
                continue
            await asyncio.sleep(COALESCE_SECONDS)  # let a burst of changes settle
