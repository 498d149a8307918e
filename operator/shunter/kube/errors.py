"""The one exception tree of the Kubernetes boundary, shared by the operator and the API.

Every failed call becomes a `KubeError` carrying the HTTP status and the API server's
own message (from its Status body), so callers decide by type, and the API maps the
tree to HTTP responses in one place (shunter.api.errors).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any


class KubeError(Exception):
    """A call to the Kubernetes API failed."""

    def __init__(
        self, message: str, *, status: int | None = None, reason: str = "", detail: str = ""
    ) -> None:
        super().__init__(message)
        self.status = status
        # The API server's machine-readable reason (NotFound, AlreadyExists, Invalid...).
        self.reason = reason
        # What the API server itself said (e.g. a CEL rule's message), for users.
        self.detail = detail or message


class Unreachable(KubeError):
    """No answer: the API server is restarting, the network is down, or a timeout."""


class Unauthorized(KubeError):
    """401: our own credentials were refused."""


class Forbidden(KubeError):
    """403: RBAC (or an admission plugin such as Pod Security) refused the call."""


class NotFound(KubeError):
    """404: the object (or its namespace) does not exist."""


class Conflict(KubeError):
    """409: it already exists, or a resourceVersion precondition failed."""


class Gone(KubeError):
    """410: a watch or list asked for a resourceVersion the server no longer has."""


class Invalid(KubeError):
    """422: the API server rejected the object itself (schema, CEL); retrying cannot help."""


class TooManyRequests(KubeError):
    """429: API priority and fairness asked us to slow down."""


_BY_STATUS: dict[int, type[KubeError]] = {
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
    429: TooManyRequests,
}


def error_of(status: int, body: bytes | str | dict[str, Any] | None, what: str) -> KubeError:
    """The error for an HTTP status and a Status body (or whatever the server sent)."""
    message, reason = "", ""
    parsed: Any = body
    if isinstance(body, bytes | str):
        try:
            parsed = json.loads(body)
        except ValueError:
            parsed = None
            message = (body.decode(errors="replace") if isinstance(body, bytes) else body)[:500]
    if isinstance(parsed, dict):
        message = str(parsed.get("message") or "")
        reason = str(parsed.get("reason") or "")
    cls = _BY_STATUS.get(status, KubeError)
    text = f"{what}: {status} {reason}".rstrip() + (f": {message}" if message else "")
    return cls(text, status=status, reason=reason, detail=message)


# How the API server words an admission policy's refusal, before the rule's message.
_POLICY_DENIAL = re.compile(
    r"ValidatingAdmissionPolicy '(?P<policy>[^']*)' with binding '[^']*' denied request: "
)


@dataclass(frozen=True)
class PolicyDenial:
    policy: str  # the ValidatingAdmissionPolicy's name
    message: str  # its rule's own words


def policy_denial(exc: KubeError) -> PolicyDenial | None:
    """The admission policy that refused the request and its rule's message; None
    when the refusal came from anything else (a schema, a quota, RBAC)."""
    found = _POLICY_DENIAL.search(exc.detail)
    if found is None:
        return None
    return PolicyDenial(found["policy"], exc.detail[found.end() :])


def reason_of(exc: KubeError) -> str:
    """The API server's reason for a refusal, an admission policy's as its rule wrote
    it (what kubectl shows after its prefix)."""
    denial = policy_denial(exc)
    return denial.message if denial is not None else exc.detail
