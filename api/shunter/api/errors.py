"""Domain errors of the API, mapped to HTTP responses in this one place.

Every error body is JSON with `success: false` and a `message` saying what is wrong;
client mistakes are 4xx, never 500. A message says what the caller can act on, never
our internals: a failure of the Kubernetes API or an unexpected exception is logged
with its text (addresses, stack) and answered with a fixed sentence.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shunter.kube import KubeError, Unreachable
from shunter.kube import TooManyRequests as KubeTooManyRequests

log = logging.getLogger("shunter.api")


class ApiError(Exception):
    status = 500

    def __init__(self, message: str, *, detail: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


class Unauthenticated(ApiError):
    status = 401


class Forbidden(ApiError):
    status = 403


class NotFound(ApiError):
    status = 404


class AlreadyExists(ApiError):
    status = 409


class DependencyCycle(ApiError):
    """The job's dependencies would close a cycle of jobs waiting on each other."""

    status = 409


class NoLogs(ApiError):
    """The job's Pod exists but has no logs yet (not scheduled, container not started)."""

    status = 409


class ContentTooLarge(ApiError):
    status = 413


class TooManyStreams(ApiError):
    """The caller already holds as many open streams (or followed logs) as allowed."""

    status = 429


class InvalidRequest(ApiError):
    status = 422


class InvalidJob(ApiError):
    """The Kubernetes API server's validation rejected the job."""

    status = 422


class Unavailable(ApiError):
    status = 503


class BadGateway(ApiError):
    """The API server answered, but what it asked on our behalf failed (a node's kubelet)."""

    status = 502


def _body(message: str, detail: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"success": False, "message": message}
    if detail is not None:
        body["detail"] = detail
    return body


def _validation_message(errors: list[dict[str, Any]]) -> str:
    parts = []
    for error in errors[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {error.get('msg')}")
    return "Invalid request: " + "; ".join(parts)


def of_kube(exc: KubeError) -> ApiError:
    """A Kubernetes failure no route handled itself: the API server is unreachable or
    refused us (not the caller). Mapped here, once, for every route."""
    log.warning("Kubernetes API call failed: %s", exc)
    if isinstance(exc, Unreachable | KubeTooManyRequests):
        return Unavailable("Kubernetes API unavailable: try again shortly")
    return Unavailable("Kubernetes API error: the server could not carry out the request")


def response_of(exc: ApiError) -> JSONResponse:
    """The answer to an ApiError, for the handlers below and the gate (shunter.api.gate),
    which answers before the app."""
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return JSONResponse(_body(exc.message, exc.detail), status_code=exc.status, headers=headers)


def install(app: FastAPI) -> None:
    @app.exception_handler(KubeError)
    async def kube_error(_: Request, exc: KubeError) -> JSONResponse:
        return response_of(of_kube(exc))

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return response_of(exc)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
        return JSONResponse(_body("Internal error: the server logged it"), status_code=500)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{k: v for k, v in e.items() if k in ("loc", "msg", "type")} for e in exc.errors()]
        return JSONResponse(_body(_validation_message(errors), errors), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse(_body(str(exc.detail)), status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))  # fmt: skip
