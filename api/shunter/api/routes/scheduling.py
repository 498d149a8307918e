"""`/api/training`: suspend, resume, and the runs of a job (its attempts)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

from shunter.api.dependencies import Caller, Namespace, Service
from shunter.api.errors import NotFound
from shunter.api.routes.common import (
    ERRORS,
    IndexPath,
    JobIdPath,
    change_answer,
    guarded_router,
    no_run,
)
from shunter.api.schemas import AttemptRow, CancelResult, ErrorBody
from shunter.domain.model import JobKey

router = guarded_router()

ANSWERS: dict[int | str, dict[str, Any]] = {
    404: {"model": CancelResult, "description": "Job not found"},
    409: {"model": CancelResult, "description": "Finished, being cancelled, or already so"},
    **ERRORS,
}


@router.post("/suspend/{job_id}", response_model=CancelResult, responses=ANSWERS)
async def suspend(
    job_id: JobIdPath, service: Service, namespace: Namespace, caller: Caller
) -> JSONResponse:
    """Suspend a job: a running one is stopped gracefully (its trainer checkpoints) and
    frees its slot; a queued one leaves the queue. Resume puts it back in its place."""
    key = JobKey(namespace, job_id)
    outcome = await service.suspend(key, caller=caller)
    if outcome.send_patch:
        await service.await_suspended(key)
    return change_answer(job_id, outcome)


@router.post("/resume/{job_id}", response_model=CancelResult, responses=ANSWERS)
async def resume(
    job_id: JobIdPath, service: Service, namespace: Namespace, caller: Caller
) -> JSONResponse:
    """Resume a suspended job: back in the queue in its original place; it continues
    from its checkpoint when admitted."""
    outcome = await service.resume(JobKey(namespace, job_id), caller=caller)
    return change_answer(job_id, outcome)


@router.post("/suspend/{job_id}/index/{index}", response_model=CancelResult, responses=ANSWERS)
async def suspend_run(
    job_id: JobIdPath, index: IndexPath, service: Service, namespace: Namespace, caller: Caller
) -> JSONResponse:
    """Suspend one run of an array (as POST /suspend of the job `job_id-index`); it stays
    suspended when the array is resumed."""
    try:
        key = await service.run_of(JobKey(namespace, job_id), index)
    except NotFound as exc:
        return no_run(job_id, index, exc.message)
    return await suspend(key.name, service, key.namespace, caller)


@router.post("/resume/{job_id}/index/{index}", response_model=CancelResult, responses=ANSWERS)
async def resume_run(
    job_id: JobIdPath, index: IndexPath, service: Service, namespace: Namespace, caller: Caller
) -> JSONResponse:
    """Resume one suspended run of an array."""
    try:
        key = await service.run_of(JobKey(namespace, job_id), index)
    except NotFound as exc:
        return no_run(job_id, index, exc.message)
    return await resume(key.name, service, key.namespace, caller)


@router.get(
    "/jobs/{job_id}/attempts",
    response_model=list[AttemptRow],
    responses={404: {"model": ErrorBody, "description": "No history of this job"}, **ERRORS},
)
async def attempts(job_id: JobIdPath, service: Service, namespace: Namespace) -> list[AttemptRow]:
    """Every run of the job with its exit code, from PostgreSQL (outlives the CR)."""
    rows = await service.history.attempts(namespace=namespace, name=job_id)
    return [AttemptRow(**row) for row in rows]
