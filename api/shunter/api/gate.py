"""The gate: what every HTTP request passes before the app sees it.

- **Security headers** on every answer: a Content-Security-Policy (scripts, styles and
  connections from this origin only; no framing: `frame-ancestors 'none'`), `nosniff`,
  `X-Frame-Options: DENY` for older browsers and `Referrer-Policy: no-referrer`. The
  web UI keeps its bearer token on this origin, so nothing foreign may run or frame it;
  the API docs (Swagger UI, served from a Python package, never a CDN) get the same
  policy with inline styles allowed, which Swagger UI sets.
- **Auth off means loopback only**: with `SHUNTER_API_AUTH=none` a request is served
  only when its Host and its Origin (when sent) are loopback names, so neither another
  site's form POST (a cross-site cancel) nor a DNS-rebound name reaches the API. The
  probes stay open: the kubelet asks them by the Pod's address; so does the
  trainers' report channel, which checks every Pod's own token whatever the setting.
- **Body limit**: a Content-Length over SHUNTER_API_MAX_BODY_BYTES is 413 before a
  byte is read; a body without one (chunked) is counted as the app reads it and is
  413 once over.
- **Authentication before the body**: a request under the guarded prefix that carries
  a body is authenticated here, so a caller without a valid token costs no read and no
  parse (401, where FastAPI, which parses the body before any dependency, said 422 to
  invalid JSON). The route's guard (shunter.api.dependencies.authorized) still decides
  the permission, and authenticates the requests without a body; it reuses the
  principal found here. Requests without a body are left to the guard alone, so the
  test that walks every route still sees a route that forgot it.

A plain ASGI middleware, like the metrics': Starlette's BaseHTTPMiddleware costs a
task and a stream per request, and could not stop a body mid-read.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shunter.api.auth import Authority
from shunter.api.dependencies import GUARDED_PREFIX
from shunter.api.errors import ApiError, ContentTooLarge, Forbidden, response_of
from shunter.domain.reports import PATH as REPORT_PATH

# Images may be data: URLs (the UI's empty favicon, Swagger UI's icons).
_COMMON_POLICY = (
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self';"
    " frame-ancestors 'none'"
)
UI_POLICY = f"default-src 'self'; {_COMMON_POLICY}"
DOCS_POLICY = f"default-src 'self'; style-src 'self' 'unsafe-inline'; {_COMMON_POLICY}"
DOCS_PREFIX = "/docs"
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}
# Asked by the kubelet at the Pod's address, and they hold no job data.
PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
# Served from any address with auth off too: the probes, and the trainers' reports,
# which a Pod's own token authenticates whatever SHUNTER_API_AUTH says
# (shunter.api.reports).
OPEN_WITH_AUTH_OFF = PROBES | {REPORT_PATH}


def is_loopback(host: str | None) -> bool:
    """Whether a host name (no port) is this machine's loopback."""
    if not host:
        return False
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def loopback_refusal(headers: Headers, client: str | None = None) -> str | None:
    """Why a request may not be served with auth off; None when it may. `client` is
    the peer's address (a server bound beyond loopback, as `make demo-real` binds it
    for the trainers' reports, still serves everything else to this machine only)."""
    if client is not None and not is_loopback(client):
        return f"Auth is off on this server: only this machine is served (client {client})"
    host = headers.get("host", "")
    if not is_loopback(urlsplit(f"//{host}").hostname):
        return f"Auth is off on this server: only loopback requests are served (Host {host!r})"
    origin = headers.get("origin")
    if origin is not None and not is_loopback(urlsplit(origin).hostname):
        return f"Auth is off on this server: only loopback origins are served (Origin {origin!r})"
    return None


def content_length(headers: Headers) -> int | None:
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


class Gate:
    def __init__(
        self, app: ASGIApp, *, authority: Authority, max_body_bytes: int, loopback_only: bool
    ) -> None:
        self.app = app
        self.authority = authority
        self.limit = max_body_bytes
        self.loopback_only = loopback_only
        self.too_large = f"Request body too large: at most {max_body_bytes} bytes"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        send = _with_security_headers(send, docs=scope["path"].startswith(DOCS_PREFIX))
        headers = Headers(scope=scope)
        try:
            await self._admit(scope, headers)
        except ApiError as refusal:
            await response_of(refusal)(scope, receive, send)
            return
        await self.app(scope, self._counting(receive), send)

    async def _admit(self, scope: Scope, headers: Headers) -> None:
        """Raise the refusal of a request the app must not see."""
        if self.loopback_only and scope["path"] not in OPEN_WITH_AUTH_OFF:
            peer = scope.get("client")
            refusal = loopback_refusal(headers, peer[0] if peer else None)
            if refusal:
                raise Forbidden(refusal)
        length = content_length(headers)
        if length is not None and length > self.limit:
            raise ContentTooLarge(self.too_large)
        carries_body = bool(length) or "transfer-encoding" in headers
        if carries_body and scope["path"].startswith(GUARDED_PREFIX + "/"):
            principal = await self.authority.authenticate(headers.get("authorization"))
            scope.setdefault("state", {})["principal"] = principal

    def _counting(self, receive: Receive) -> Receive:
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # An HTTPException: FastAPI passes it through its body parsing
                    # (anything else becomes a 400) to the one error handler.
                    raise HTTPException(413, detail=self.too_large)
            return message

        return counted


def _with_security_headers(send: Send, *, docs: bool) -> Send:
    policy = DOCS_POLICY if docs else UI_POLICY

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = MutableHeaders(scope=message)
            headers["Content-Security-Policy"] = policy
            for name, value in SECURITY_HEADERS.items():
                headers[name] = value
        await send(message)

    return sending
