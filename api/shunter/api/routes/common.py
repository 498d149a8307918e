"""What every `/api/training` router shares: the guard, the job id, the error bodies."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path
from fastapi.responses import JSONResponse

from shunter.api.dependencies import GUARDED_PREFIX, authorized
from shunter.api.schemas import JOB_ID_PATTERN, CancelResult, ErrorBody
from shunter.domain.actions import Answer
from shunter.domain.arrays import run_name

JSON = "application/json"
JobIdPath = Annotated[
    str, Path(pattern=JOB_ID_PATTERN, max_length=55, description="The job id (its name)")
]
IndexPath = Annotated[int, Path(ge=0, le=9_999, description="The index of a run of an array")]
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No or invalid bearer token"},
    403: {"model": ErrorBody, "description": "Not allowed in this namespace"},
    422: {"model": ErrorBody, "description": "Invalid request"},
    503: {"model": ErrorBody, "description": "Kubernetes or PostgreSQL unreachable"},
}


def guarded_router() -> APIRouter:
    """A router under /api/training whose every route is guarded: authentication and
    the route's RBAC verb (shunter.api.dependencies.authorized)."""
    return APIRouter(prefix=GUARDED_PREFIX, tags=["training"], dependencies=[Depends(authorized)])


def no_run(job_id: str, index: int, message: str) -> JSONResponse:
    """The guide's not-found body for a run of an array that cannot be addressed (not
    an array, no such index, not created yet), named as the run would be."""
    result = CancelResult(success=False, job_id=run_name(job_id, index), message=message)
    return JSONResponse(result.model_dump(exclude_none=True), status_code=404)


def change_answer(job_id: str, outcome: Answer) -> JSONResponse:
    """The guide's answer to a change of a job (cancel, suspend, resume)."""
    result = CancelResult(
        success=outcome.success,
        job_id=job_id,
        previous_status=outcome.previous_status,
        message=outcome.message,
    )
    return JSONResponse(result.model_dump(exclude_none=True), status_code=outcome.http_status)
