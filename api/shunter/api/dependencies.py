"""FastAPI dependencies: the service, the namespace, and the guard every route declares.

`authorized` is a router-level dependency (routes.training declares it once for the
whole router), so a new route cannot forget it. It derives the RBAC verb from the
route itself: GET of one job (a `{job_id}` path) is `get`, other GETs are `list`,
POST /submit is `create`, and every other POST on a job (cancel, suspend, resume) is
`patch`; a test walks every route of the app to prove each one is guarded. A request
that carries a body was authenticated by the gate (shunter.api.gate) before the body
was read: the guard takes that principal rather than asking again.

`Recheck` gives a long-lived answer (a stream, a followed log) the same check to run
again while it is open, so a revoked token or RoleBinding ends it (shunter.api.quotas).

Every namespace at once (`namespace=*`) is accepted only by the routes that declare
it (`openapi_extra={ALL_NAMESPACES_KEY: True}`: the accounting, GET /usage and
/shares); for those the guard asks the route's verb cluster-wide (a
SubjectAccessReview with no namespace), which only a ClusterRole bound by a
ClusterRoleBinding grants. Any other route answers `*` with 422.

Every dependency is `async def`, even the trivial ones: FastAPI runs a plain `def`
dependency in its thread pool, a thread hop per dependency per request (the largest
cost a profile of GET /status found; tests/unit/api/test_dependencies.py keeps it out).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.routing import APIRoute

from shunter.api.auth import CLUSTER_WIDE, Authority, Principal
from shunter.api.errors import InvalidRequest
from shunter.api.service import TrainingService

# Every route under it is guarded (routes.common.guarded_router).
GUARDED_PREFIX = "/api/training"
# `namespace=*`: every namespace, for the routes whose openapi_extra declares it.
ALL_NAMESPACES = "*"
ALL_NAMESPACES_KEY = "x-all-namespaces"
NAMESPACE_PATTERN = r"^(\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$"


async def get_service(request: Request) -> TrainingService:
    service: TrainingService = request.app.state.service
    return service


async def get_namespace(
    request: Request,
    namespace: Annotated[
        str | None,
        Query(
            max_length=63,
            pattern=NAMESPACE_PATTERN,
            description="Defaults to the server's; `*` (every namespace) only where a route"
            " says so",
        ),
    ] = None,
) -> str:
    return namespace or str(request.app.state.settings.namespace)


def verb_of(route: APIRoute) -> str:
    """The RBAC verb on trainingjobs that a route needs."""
    methods = route.methods or set()
    if "GET" in methods:
        return "get" if "{job_id}" in route.path else "list"
    if route.path.endswith("/submit"):
        return "create"
    return "patch"


async def authorized(
    request: Request, namespace: Annotated[str, Depends(get_namespace)]
) -> Principal:
    """Authenticate the caller and check the route's verb in the namespace. (The
    authority and the Authorization header are read from the request, not declared as
    dependencies: each declared parameter costs FastAPI work on every request.)"""
    principal: Principal | None = request.scope.get("state", {}).get("principal")
    if principal is None:
        principal = await _authenticate(request)
        request.state.principal = principal
    await _authorize(request, principal, namespace)
    return principal


async def _authenticate(request: Request) -> Principal:
    authority: Authority = request.app.state.authority
    return await authority.authenticate(request.headers.get("authorization"))


async def _authorize(request: Request, principal: Principal, namespace: str) -> None:
    authority: Authority = request.app.state.authority
    route = request.scope.get("route")
    assert isinstance(route, APIRoute), "guard used outside a route"
    if namespace == ALL_NAMESPACES:
        if not all_namespaces(route):
            raise InvalidRequest("namespace '*' (every namespace) is not accepted here")
        namespace = CLUSTER_WIDE
    await authority.authorize(principal, verb_of(route), namespace)


def all_namespaces(route: APIRoute) -> bool:
    """Whether the route serves every namespace at once (`namespace=*`)."""
    return bool((route.openapi_extra or {}).get(ALL_NAMESPACES_KEY))


async def recheck(
    request: Request, namespace: Annotated[str, Depends(get_namespace)]
) -> Callable[[], Awaitable[None]]:
    """The route's guard, to run again later: the token (it may have expired or been
    revoked) and the permission (a RoleBinding may be gone). Raises as the guard does."""

    async def again() -> None:
        await _authorize(request, await _authenticate(request), namespace)

    return again


Service = Annotated[TrainingService, Depends(get_service)]
Namespace = Annotated[str, Depends(get_namespace)]
Caller = Annotated[Principal, Depends(authorized)]
Recheck = Annotated[Callable[[], Awaitable[None]], Depends(recheck)]
