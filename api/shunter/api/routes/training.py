"""`/api/training`: submit, queue, status, cancel and history of training jobs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from fastapi.responses import JSONResponse

from shunter.api.dependencies import Namespace, Service, authorized
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
)
from shunter.operator.model import JobKey

# Every route of this router is guarded: authentication and the route's RBAC verb.
router = APIRouter(prefix="/api/training", tags=["training"], dependencies=[Depends(authorized)])

JobIdPath = Annotated[
    str, Path(pattern=JOB_ID_PATTERN, max_length=55, description="The job id (its name)")
]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or invalid bearer token"},
    403: {"model": ErrorBody, "description": "Not allowed in this namespace"},
    422: {"model": ErrorBody, "description": "Invalid request"},
    503: {"model": ErrorBody, "description": "Kubernetes or PostgreSQL unreachable"},
}


@router.post(
    "/submit",
    status_code=201,
    response_model=SubmitResult,
    responses={
        404: {"model": ErrorBody, "description": "Namespace not found"},
        409: {"model": ErrorBody, "description": "A job with this name exists"},
        **ERRORS,
    },
)
async def submit(body: JobCreate, service: Service, namespace: Namespace) -> SubmitResult:
    """Submit a job; it waits in the queue until admitted. Returns its id."""
    job = await service.submit(body, namespace=namespace)
    return SubmitResult(
        job_id=job.key.name, namespace=namespace, status="queued", message="Job submitted"
    )


@router.get("/queue", response_model=QueueView, responses=ERRORS)
async def queue(
    service: Service,
    namespace: Namespace,
    limit: Annotated[int, Query(ge=1, le=10_000, description="Queued jobs listed")] = 100,
) -> QueueView:
    """Jobs holding a slot and the first `limit` waiting jobs in admission order, with
    the total counts."""
    return await service.queue(namespace, limit=limit)


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
) -> JobPublic:  # fmt: skip
    """The state of one job (from the watch cache, which holds every write this API
    made; `consistent=true` reads the API server)."""
    job = await service.status(JobKey(namespace, job_id), consistent=consistent)
    return JobPublic.of(job)


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
) -> JobList:
    """Every job in the namespace as the cluster has it now (finished ones too)."""
    return await service.live(namespace, limit=limit)


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
    job_id: JobIdPath, service: Service, namespace: Namespace,
) -> JSONResponse:  # fmt: skip
    """Cancel a job in any state; the body is the acceptance guide's."""
    key = JobKey(namespace, job_id)
    outcome = await service.cancel(key)
    if outcome.send_patch:
        await service.await_final(key)
    result = CancelResult(
        success=outcome.success,
        job_id=job_id,
        previous_status=outcome.previous_status,
        message=outcome.message,
    )
    return JSONResponse(result.model_dump(exclude_none=True), status_code=outcome.http_status)


@router.get("/jobs", response_model=JobHistoryPage, responses=ERRORS)
async def jobs(
    service: Service,
    namespace: Namespace,
    status: Annotated[
        Literal["queued", "starting", "running", "cancelling", "completed", "failed", "cancelled"]
        | None,
        Query(description="Only jobs in this phase"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> JobHistoryPage:
    """History from PostgreSQL (outlives the CRs), newest first."""
    rows, total = await service.history.page(
        namespace=namespace, status=status, limit=limit, offset=offset
    )
    return JobHistoryPage(
        items=[HistoryRow(**row) for row in rows], total=total, limit=limit, offset=offset
    )
