"""FastAPI dependencies: the service, the caller, and the namespace of a request."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, Query, Request

from shunter.api.auth import Authority, Principal
from shunter.api.schemas import JOB_ID_PATTERN
from shunter.api.service import TrainingService


def get_service(request: Request) -> TrainingService:
    service: TrainingService = request.app.state.service
    return service


def get_authority(request: Request) -> Authority:
    authority: Authority = request.app.state.authority
    return authority


def get_principal(
    authority: Annotated[Authority, Depends(get_authority)],
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Principal:
    return authority.authenticate(authorization)


def get_namespace(
    request: Request,
    namespace: Annotated[
        str | None,
        Query(max_length=63, pattern=JOB_ID_PATTERN, description="Defaults to the server's"),
    ] = None,
) -> str:
    return namespace or str(request.app.state.settings.namespace)


Service = Annotated[TrainingService, Depends(get_service)]
Caller = Annotated[Principal, Depends(get_principal)]
Namespace = Annotated[str, Depends(get_namespace)]
AuthorityDep = Annotated[Authority, Depends(get_authority)]
