"""The trainers' report channel: POST /api/trainer/v1/report (the rules:
shunter.domain.reports).

Why the API serves it: it is already a Service every trainer Pod can reach, with as
many replicas as the install runs and no leader to find; it already verifies tokens
by TokenReview with a cache (shunter.api.auth.Authority), here for the audience
`shunter` only, so a user's token is no trainer's and a trainer's token is no user's.
The trainer Pod needs no Kubernetes rights: its projected token (audience `shunter`,
bound to the Pod) is its identity, and restricted Pod Security allows projected
volumes. The channel is open with `SHUNTER_API_AUTH=none` too: the token, not the
network, decides, so the demo's trainers report from the Pod network.

What it costs (reports every 10 s from 1,000 running jobs is 100 reports a second):
- a token is reviewed once per TOKEN_TTL (plus up to half again, at random) per Pod
  (the Authority's cache), and a Pod is read once per POD_TTL (its name, uid and
  labels);
- `status.progress` is written at most once per PROGRESS_WRITE_SECONDS per job (the
  newest report waits; a background flush writes it when due), so the API server
  sees about 1,000/30 = 33 small merge patches a second, not 100; a checkpoint is
  written before the answer (it is what a stop and the victim choice need: a
  trainer that checkpointed on SIGTERM reports, is answered, and only then exits, so
  the operator's watch shows the checkpoint before the end of the stop);
- a job sending faster than MIN_GAP_SECONDS gets 429 with Retry-After.
The patch carries only `progress` and `checkpoint`, the fields this channel owns, with
no resourceVersion: the operator never writes them, and its own status writes (which
do carry one) are decided again after a 409, as for any other change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from shunter.api.auth import Authority, Expiring
from shunter.api.errors import ApiError, Unavailable
from shunter.api.jobcache import JobCache
from shunter.api.schemas import ErrorBody
from shunter.domain.model import JOB_NAME_LABEL, Job, JobKey, JobStatus
from shunter.domain.reports import (
    AUDIENCE,
    PATH,
    Report,
    Reporter,
    ReportError,
    apply,
    judge,
    notice,
    reporter_of,
    status_fields,
)
from shunter.kube import Kube, KubeError, NotFound
from shunter.kube.resources import PODS, TRAINING_JOBS

log = logging.getLogger("shunter.api")

POD_TTL = 60.0
TOKEN_TTL = 60.0
PROGRESS_WRITE_SECONDS = 30.0
MIN_GAP_SECONDS = 1.0
# What trainers are told: at most one progress report this often.
REPORT_SECONDS = 10
FLUSH_EVERY = 1.0
# A job's entry is dropped this long after its last report (once written).
FORGET_SECONDS = 10 * PROGRESS_WRITE_SECONDS


@dataclass
class _Pending:
    key: JobKey
    status: JobStatus  # the job's status with every accepted report applied
    due: float  # monotonic: when the unwritten part must be written (inf: written)
    written_at: float = 0.0
    received_at: float = 0.0


class ReportChannel:
    def __init__(self, kube: Kube, cache: JobCache, *,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.kube = kube
        self.cache = cache
        # A trainer's token is reviewed about once a minute (jittered, so trainers that
        # started together spread out): a deleted Pod's token is refused by the Pod
        # check within POD_TTL anyway.
        self.authority = Authority(kube, enabled=True, audiences=(AUDIENCE,),
                                   token_ttl=TOKEN_TTL, jitter=0.5)  # fmt: skip
        self._clock = clock
        self._pods: Expiring[tuple[str, str], tuple[str, dict[str, str]]] = Expiring(10_000)
        self._jobs: dict[str, _Pending] = {}  # by job uid

    async def receive(self, authorization: str | None, body: bytes) -> dict[str, Any]:
        """The answer to a report (the token first: a caller without one costs no parse)."""
        arrived = self._clock()  # the rate limit counts from arrival, not from processing
        principal = await self.authority.authenticate(authorization)
        try:
            raw = json.loads(body)
        except ValueError as exc:
            raise ReportError(422, "the report must be a JSON object") from exc
        report = Report.parse(raw)
        namespace, pod, pod_uid = reporter_of(principal.user, dict(principal.extra))
        live_uid, labels = await self._pod(namespace, pod, pod_uid)
        key = JobKey(namespace, labels.get(JOB_NAME_LABEL, ""))
        pending = self._jobs.get(report.job_uid)
        job = self.cache.get(key)
        if job is not None:
            job = replace(job, status=self._base(job, pending))
        job = judge(report, job, Reporter(namespace, pod, pod_uid, labels, live_uid))
        now = self._clock()
        if (
            pending is not None
            and report.checkpoint is None
            and (arrived - pending.received_at < MIN_GAP_SECONDS)
        ):
            raise _TooOften(f"reports for job {key.name} come faster than one a second")
        base = job.status
        status = apply(base, report, now=datetime.now(UTC))
        last = pending.written_at if pending is not None else 0.0
        due = now if report.checkpoint else max(now, last + PROGRESS_WRITE_SECONDS)
        entry = _Pending(key, status, due=due, written_at=last, received_at=arrived)
        if pending is not None and report.checkpoint is None:
            entry.due = min(pending.due, entry.due)
        self._jobs[job.uid] = entry
        if entry.due <= now:
            await self._write(job.uid, entry)
        return {"accepted": True, "next_report_seconds": REPORT_SECONDS, "notice": notice(job)}

    def _base(self, job: Job, pending: _Pending | None) -> JobStatus:
        """The job's status as the cache shows it, with reports accepted here since
        (laid over it while they are newer than what the cache shows)."""
        if pending is None:
            return job.status
        mine, seen = pending.status.progress, job.status.progress
        if mine is None or (seen is not None and (seen.attempt, seen.step, seen.reported_at)
                            >= (mine.attempt, mine.step, mine.reported_at)):  # fmt: skip
            return job.status
        return replace(job.status, progress=mine, checkpoint=pending.status.checkpoint)

    async def _pod(self, namespace: str, name: str, uid: str) -> tuple[str, dict[str, str]]:
        """The uid and labels of the Pod of that name now (read again when the token's
        uid is not the one cached: a new Pod of the same name)."""
        now = self._clock()
        found, cached = self._pods.get((namespace, name), now)
        if found and cached is not None and cached[0] == uid:
            return cached
        try:
            body = await self.kube.get(PODS, name, namespace=namespace)
        except NotFound:
            return "", {}
        except KubeError as exc:
            log.warning("reading Pod %s/%s for a report failed: %s", namespace, name, exc)
            raise Unavailable("Cannot read the reporting Pod: the Kubernetes API is"
                              " unavailable") from exc  # fmt: skip
        meta = body.get("metadata") or {}
        value = (str(meta.get("uid", "")), dict(meta.get("labels") or {}))
        self._pods.put((namespace, name), value, until=now + POD_TTL)
        return value

    async def _write(self, uid: str, entry: _Pending) -> None:
        patch = {"status": status_fields(entry.status)}
        try:
            await self.kube.patch(TRAINING_JOBS, entry.key.name, patch,
                                  namespace=entry.key.namespace, sub="status")  # fmt: skip
        except NotFound:
            self._jobs.pop(uid, None)
            return
        except KubeError as exc:
            log.warning("job %s: writing its report failed (will retry): %s", entry.key, exc)
            entry.due = self._clock() + FLUSH_EVERY
            return
        entry.written_at = self._clock()
        entry.due = float("inf")

    async def flush(self) -> None:
        """Write every report whose time has come (the background task's pass)."""
        now = self._clock()
        for uid, entry in list(self._jobs.items()):
            if entry.due <= now:
                await self._write(uid, entry)
            elif entry.due == float("inf") and now - entry.received_at > FORGET_SECONDS:
                del self._jobs[uid]  # written, and the job stopped reporting

    async def run(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            with contextlib.suppress(Exception):
                await self.flush()


class _TooOften(ApiError):
    status = 429


def _refusal(exc: ReportError) -> JSONResponse:
    return JSONResponse({"accepted": False, "success": False, "message": exc.message},
                        status_code=exc.status)  # fmt: skip


router = APIRouter()


class Notice(BaseModel):
    reason: str = Field(description="preempt or time-slice")
    checkpoint_by: str = Field(description="RFC 3339: checkpointed and exited by then")


class ReportAnswer(BaseModel):
    accepted: bool
    next_report_seconds: int = Field(description="At most one progress report this often")
    notice: Notice | None = Field(description="Stop after this step: checkpoint, exit 75")


_REFUSED = {"model": ErrorBody}
_BODY = {  # documented, not parsed by FastAPI: the token is checked before the body is read
    "requestBody": {"required": True, "content": {"application/json": {"schema": {
        "type": "object", "required": ["job_uid", "step"], "properties": {
            "job_uid": {"type": "string"}, "attempt": {"type": "integer"},
            "rank": {"type": "integer"}, "step": {"type": "integer"},
            "total_steps": {"type": "integer"}, "loss": {"type": "number"},
            "throughput": {"type": "number"}, "checkpoint_on_stop": {"type": "boolean"},
            "resumed_from_step": {"type": "integer"},
            "checkpoint": {"type": "object", "properties": {
                "step": {"type": "integer"}, "time": {"type": "string", "format": "date-time"},
                "size_bytes": {"type": "integer"}, "write_seconds": {"type": "number"}}}}}}}}
}  # fmt: skip


@router.post(
    PATH, tags=["trainer"], response_model=ReportAnswer, openapi_extra=_BODY,
    summary="A trainer's progress and checkpoint report (a trainer Pod's own token)",
    responses={
        401: {**_REFUSED, "description": "No token, or not one for the audience shunter"},
        403: {**_REFUSED, "description": "The token's Pod is not the job's first Pod"},
        409: {**_REFUSED, "description": "A stale report, an earlier attempt, a job not running"},
        422: {**_REFUSED, "description": "Not a report"},
        429: {**_REFUSED, "description": "Faster than one report a second"},
        503: {**_REFUSED, "description": "Kubernetes unreachable"},
    },
)  # fmt: skip
async def report(request: Request) -> JSONResponse:
    channel: ReportChannel = request.app.state.reports
    try:
        answer = await channel.receive(request.headers.get("authorization"), await request.body())
    except ReportError as exc:
        return _refusal(exc)
    except _TooOften as exc:
        return JSONResponse({"accepted": False, "success": False, "message": exc.message},
                            status_code=429, headers={"Retry-After": "1"})  # fmt: skip
    return JSONResponse(answer)
