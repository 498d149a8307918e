"""`/api/training`: submit, queue, status, cancel, logs, the pushed list and history."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from shunter.api.dependencies import Caller, Namespace, Recheck, Service
from shunter.api.errors import InvalidRequest, NotFound
from shunter.api.history import HistoryFilter
from shunter.api.quotas import HeldStream, StreamQuota, supervised
from shunter.api.routes.common import (
    ERRORS,
    JSON,
    IndexPath,
    JobIdPath,
    change_answer,
    guarded_router,
    no_run,
)
from shunter.api.schemas import (
    JOB_ID_PATTERN,
    CancelResult,
    ErrorBody,
    HistoryRow,
    JobCreate,
    JobEvent,
    JobHistoryPage,
    JobList,
    JobPublic,
    QueueView,
    SubmitResult,
    WhatIf,
)
from shunter.api.streaming import job_stream, sse
from shunter.domain.model import JobKey, Phase

router = guarded_router()


@router.post(
    "/submit",
    status_code=201,
    response_model=SubmitResult,
    responses={
        404: {"model": ErrorBody, "description": "Namespace not found"},
        409: {
            "model": ErrorBody,
            "description": "A job with this name exists, or depends_on closes a cycle",
        },
        413: {"model": ErrorBody, "description": "Body over SHUNTER_API_MAX_BODY_BYTES"},
        200: {"model": WhatIf, "description": "dry_run=true: what submitting would do"},
        **ERRORS,
    },
)
async def submit(
    body: JobCreate, service: Service, namespace: Namespace, caller: Caller,
    dry_run: Annotated[bool, Query(description="Create nothing; answer the position, the"
                                   " estimated start, whom it would preempt and sooner"
                                   " alternatives")] = False,
) -> Any:  # fmt: skip
    """Submit a job; it waits in the queue until admitted. Returns its id. The caller
    is recorded as the job's `submitted_by`. With `dry_run=true` it is judged exactly
    as a submit (the same 4xx) and nothing is created: the answer is a what-if."""
    if dry_run:
        answer = await service.what_if(body, namespace=namespace, caller=caller)
        return Response(answer.model_dump_json(), media_type=JSON, status_code=200)
    job = await service.submit(body, namespace=namespace, caller=caller)
    return SubmitResult(
        job_id=job.key.name, namespace=namespace, status="queued",
        message=await service.submit_message(job),
    )  # fmt: skip


@router.get("/queue", response_model=QueueView, responses=ERRORS)
async def queue(
    service: Service,
    namespace: Namespace,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Queued jobs listed")] = 100,
    queue: Annotated[
        str | None,
        Query(max_length=63, pattern=JOB_ID_PATTERN, description="Only this TrainingQueue"),
    ] = None,
) -> Response:
    """Jobs holding a slot and the first `limit` waiting jobs in admission order, with
    the total counts and each queue's usage (limits, running, GPUs, borrowed)."""
    body = await service.queue_json(namespace, limit=limit, queue=queue)
    return Response(body, media_type=JSON)


@router.get(
    "/status/{job_id}",
    response_model=JobPublic,
    responses={404: {"model": ErrorBody, "description": "Job not found"}, **ERRORS},
)
async def status(
    job_id: JobIdPath, service: Service, namespace: Namespace,
    consistent: Annotated[
        bool, Query(description="Read from the API server instead of the watch cache")
    ] = False,
) -> Response:  # fmt: skip
    """The state of one job (from the watch cache, which holds every write this API
    made; `consistent=true` reads the API server)."""
    job = await service.status(JobKey(namespace, job_id), consistent=consistent)
    lineage = await service.lineage(job)
    return Response(service.renderer.job(job, at=service.appraisal(), lineage=lineage),
                    media_type=JSON)  # fmt: skip


@router.get(
    "/status/{job_id}/index/{index}",
    response_model=JobPublic,
    responses={404: {"model": ErrorBody, "description": "No such run of the array"}, **ERRORS},
)
async def run_status(
    job_id: JobIdPath, index: IndexPath, service: Service, namespace: Namespace
) -> Response:
    """The run of array `job_id` at `index` (the job `job_id-index`, as GET /status of it)."""
    job = await service.status(await service.run_of(JobKey(namespace, job_id), index))
    return Response(service.renderer.job(job, at=service.appraisal()), media_type=JSON)


@router.get(
    "/status/{job_id}/events",
    response_model=list[JobEvent],
    responses={404: {"model": ErrorBody, "description": "Job not found"}, **ERRORS},
)
async def events(
    job_id: JobIdPath,
    service: Service,
    namespace: Namespace,
) -> list[JobEvent]:
    """The job's Kubernetes Events (admitted, started, terminating, ...), oldest first."""
    return await service.events(JobKey(namespace, job_id))


@router.get("/live", response_model=JobList, responses=ERRORS)
async def live(
    service: Service,
    namespace: Namespace,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Response:
    """Every job in the namespace as the cluster has it now (finished ones too)."""
    return Response(await service.live_json(namespace, limit=limit), media_type=JSON)


@router.post(
    "/cancel/{job_id}",
    response_model=CancelResult,
    responses={
        200: {"description": "Cancelled (queued) or cancellation started (running)"},
        404: {"model": CancelResult, "description": "Job not found"},
        409: {"model": CancelResult, "description": "Already finished or being cancelled"},
        **ERRORS,
    },
)
async def cancel(
    job_id: JobIdPath, service: Service, namespace: Namespace, caller: Caller,
    cancel_dependents: Annotated[
        bool, Query(description="Also cancel the jobs waiting on it (spec.cancelDependents)")
    ] = False,
) -> JSONResponse:  # fmt: skip
    """Cancel a job in any state; the body is the acceptance guide's. The caller is
    recorded as the job's `cancelled_by`."""
    key = JobKey(namespace, job_id)
    outcome = await service.cancel(key, caller=caller, cancel_dependents=cancel_dependents)
    if outcome.send_patch:
        await service.await_final(key)
    return change_answer(job_id, outcome)


@router.post(
    "/cancel/{job_id}/index/{index}",
    response_model=CancelResult,
    responses={
        404: {"model": CancelResult, "description": "No such run of the array (or job)"},
        409: {"model": CancelResult, "description": "Already finished or being cancelled"},
        **ERRORS,
    },
)
async def cancel_run(
    job_id: JobIdPath, index: IndexPath, service: Service, namespace: Namespace, caller: Caller,
) -> JSONResponse:  # fmt: skip
    """Cancel one run of an array (the others go on); the body is the guide's, for the
    run `job_id-index`. Cancelling the array itself cancels every unfinished run."""
    try:
        key = await service.run_of(JobKey(namespace, job_id), index)
    except NotFound as exc:
        return no_run(job_id, index, exc.message)
    return await cancel(key.name, service, key.namespace, caller)


# Free text of a filter: anything but control characters (PostgreSQL text cannot hold
# NUL, and no name or user name has any).
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


def _utc(value: datetime | None, name: str) -> datetime | None:
    """A time filter in UTC (a time without zone is taken as UTC)."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError) as exc:
        raise InvalidRequest(f"Invalid request: {name}: out of range") from exc


@router.get("/jobs", response_model=JobHistoryPage, responses=ERRORS)
async def jobs(
    service: Service,
    namespace: Namespace,
    status: Annotated[Phase | None, Query(description="Only jobs in this phase")] = None,
    queue: Annotated[
        str | None, Query(max_length=63, pattern=JOB_ID_PATTERN, description="Only this queue")
    ] = None,
    name_contains: Annotated[
        str | None,
        Query(max_length=63, pattern=PRINTABLE, description="Only jobs whose name contains this"),
    ] = None,
    submitted_by: Annotated[
        str | None,
        Query(max_length=253, pattern=PRINTABLE, description="Only jobs this user submitted"),
    ] = None,
    since: Annotated[
        datetime | None, Query(description="Only jobs created at or after (ISO 8601)")
    ] = None,
    until: Annotated[datetime | None, Query(description="Only jobs created before")] = None,
    deleted: Annotated[
        bool | None,
        Query(description="true: only jobs whose TrainingJob is gone; false: only live ones"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JobHistoryPage:
    """History from PostgreSQL (outlives the CRs), newest first, filtered."""
    where = HistoryFilter(
        namespace=namespace, status=status.value if status else None, queue=queue,
        name_contains=name_contains or None,
        submitted_by=submitted_by or None, since=_utc(since, "since"),
        until=_utc(until, "until"), deleted=deleted,
    )  # fmt: skip
    rows, total = await service.history.page(where, limit=limit, offset=offset)
    return JobHistoryPage(
        items=[HistoryRow(**row) for row in rows], total=total, limit=limit, offset=offset
    )


@router.get(
    "/status/{job_id}/logs",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/plain": {}}, "description": "The trainer's log"},
        404: {"model": ErrorBody, "description": "Job or Pod not found"},
        409: {"model": ErrorBody, "description": "The Pod has no logs yet"},
        429: {"model": ErrorBody, "description": "Too many followed logs open"},
        502: {"model": ErrorBody, "description": "The node did not answer"},
        **ERRORS,
    },
)
async def logs(
    request: Request,
    job_id: JobIdPath,
    service: Service,
    namespace: Namespace,
    caller: Caller,
    again: Recheck,
    tail: Annotated[int, Query(ge=1, le=10_000, description="Last lines")] = 200,
    follow: Annotated[bool, Query(description="Keep streaming new lines")] = False,
) -> StreamingResponse:
    """The job's log, from its Pod (see shunter.api.logs for every answer). A followed
    log is bounded: per user, in time, and re-authorized while open (shunter.api.quotas)."""
    key = JobKey(namespace, job_id)
    headers = {"Cache-Control": "no-cache"}
    media = "text/plain; charset=utf-8"
    if not follow:
        found = await service.logs(key, tail=tail, follow=False)
        headers["X-Shunter-Simulated-Node"] = str(found.simulated).lower()
        return StreamingResponse(found.chunks, media_type=media, headers=headers)
    settings = request.app.state.settings
    follows: StreamQuota = request.app.state.follows
    release = follows.take(caller)
    try:
        found = await service.logs(key, tail=tail, follow=True)
    except BaseException:
        release()
        raise
    headers["X-Shunter-Simulated-Node"] = str(found.simulated).lower()
    chunks = supervised(
        found.chunks, recheck=again, every=settings.reauthorize_seconds,
        seconds=settings.follow_seconds, ending=lambda why: f"\n[shunter] {why}\n".encode(),
    )  # fmt: skip
    return HeldStream(chunks, release=release, media_type=media, headers=headers)


@router.get(
    "/stream",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"text/event-stream": {}},
            "description": "Server-sent events: `live` (the /live view) on every change, "
            "`job` (the job named by ?job= and its Events), heartbeats, and `end` when"
            " the caller is no longer allowed",
        },
        429: {"model": ErrorBody, "description": "Too many streams open"},
        **ERRORS,
    },
)
async def stream(
    request: Request,
    service: Service,
    namespace: Namespace,
    caller: Caller,
    again: Recheck,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    job: Annotated[
        str | None,
        Query(max_length=55, pattern=JOB_ID_PATTERN, description="Also stream this job"),
    ] = None,
) -> StreamingResponse:
    """The /live view pushed on change (see shunter.api.streaming); bounded per user and
    re-authorized while open (shunter.api.quotas): a refusal is a last `end` event."""
    gauge = request.app.state.metrics.streams
    streams: StreamQuota = request.app.state.streams
    release = streams.take(caller)

    async def counted() -> Any:
        gauge.inc()
        try:
            async for chunk in job_stream(service, namespace, limit=limit, job=job):
                yield chunk
        finally:
            gauge.dec()

    chunks = supervised(
        counted(), recheck=again, every=request.app.state.settings.reauthorize_seconds,
        seconds=None, ending=lambda why: sse("end", json.dumps({"message": why})),
    )  # fmt: skip
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return HeldStream(chunks, release=release, media_type="text/event-stream", headers=headers)
