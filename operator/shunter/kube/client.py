"""An asyncio client for the Kubernetes API: JSON in, plain dicts out.

Why our own thin client on aiohttp rather than a generated one: Shunter parses every
object into its own frozen dataclasses once, where it enters, so a client that first
builds model objects only adds work; aiohttp is already here (kopf's transport); and
the measured cost per call matters at 10,000 jobs (see bench/RESULTS.md, "Kubernetes
client"). Every call has a timeout; every failure is a `KubeError` (shunter.kube.errors).

Every call goes through `Kube._exchange`, the one place that decides how the API
server is asked: the optional rate limit (shunter.kube.ratelimit), the current
credentials and TLS context (shunter.kube.connection), one reload after a 401, and
retries after 429 and 5xx where safe (shunter.kube.retries).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict

from shunter.kube.connection import Access, Connection
from shunter.kube.errors import Unreachable, error_of
from shunter.kube.ratelimit import TokenBucket
from shunter.kube.resources import Resource
from shunter.kube.retries import Attempts, may_retry, retry_after

log = logging.getLogger("shunter.kube")

# Seconds before a call is abandoned (a pass or a request retries later).
REQUEST_TIMEOUT = 30.0
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
Body = dict[str, Any]


@dataclass(frozen=True)
class Identity:
    """A user to act as (impersonation): what a TokenReview says of a caller."""

    user: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    def headers(self) -> list[tuple[str, str]]:
        """The Impersonate-* headers (extra keys percent-encoded, as the API server
        expects: a header name cannot hold every character a key may). A
        ServiceAccount or a node is named alone: the API server derives its groups,
        and constrained impersonation refuses any other field for them."""
        found = [("Impersonate-User", self.user)]
        if self.user.startswith(("system:serviceaccount:", "system:node:")):
            return found
        if self.uid:
            found.append(("Impersonate-Uid", self.uid))
        found += [("Impersonate-Group", g) for g in self.groups]
        for key, values in sorted(self.extra.items()):
            found += [(f"Impersonate-Extra-{quote(key, safe='')}", v) for v in values]
        return found


class Kube:
    def __init__(
        self, connection: Connection, *, connections: int = 64, user_agent: str | None = None,
        field_manager: str | None = None, rate_limit: TokenBucket | None = None,
    ) -> None:  # fmt: skip
        self.connection = connection
        # The optional client-side limit (shunter.kube.ratelimit): given, or from the
        # environment (SHUNTER_KUBE_QPS; none when unset). Views as another user share it.
        self._bucket = rate_limit or TokenBucket.from_env()
        self._connections = connections
        # Name the caller in the API server's audit log (user agent) and in the objects'
        # managedFields (field manager) of what it creates and changes: e.g. which
        # operator replica wrote a job's status last.
        self.user_agent = user_agent
        self._writer = {"fieldManager": field_manager} if field_manager else None
        self._session: aiohttp.ClientSession | None = None
        self._parent: Kube | None = None
        self._impersonate: list[tuple[str, str]] = []

    def as_user(self, identity: Identity) -> Kube:
        """This client acting as `identity`: the API server authorizes each call as
        that user (RBAC, admission policies, the audit log's user), and checks that
        our own account may impersonate it for that call. Shares our connections."""
        view = copy.copy(self)
        view._parent = self._parent or self
        view._impersonate = identity.headers()
        return view

    def _http(self) -> aiohttp.ClientSession:
        if self._parent is not None:
            return self._parent._http()
        # Created on first use, inside the running loop (aiohttp binds to it). The TLS
        # context goes with each request: connections are pooled per context, so a
        # rotated client certificate is presented on new connections.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connections),
                json_serialize=json.dumps,
                raise_for_status=False,
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self, access: Access, content_type: str | None) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict(Accept="application/json")
        if self.user_agent:
            headers["User-Agent"] = self.user_agent
        if access.credential.authorization:
            headers["Authorization"] = access.credential.authorization
        if content_type:
            headers["Content-Type"] = content_type
        headers.extend(self._impersonate)
        return headers

    @contextlib.asynccontextmanager
    async def _exchange(
        self, method: str, path: str, *, what: str, params: Mapping[str, str | int] | None,
        data: bytes | None = None, content_type: str | None = None, seconds: float,
        stream: tuple[float | None, float | None] | None = None,
    ) -> AsyncIterator[aiohttp.ClientResponse]:  # fmt: skip
        """The response to one call, as the API server should be asked: paced by the
        rate limit, with current credentials (reloaded and sent once more after a
        401), sent again after a refusal that is safe to retry (shunter.kube.retries).
        Yields a successful response; raises the KubeError of the last refusal.

        `seconds` bounds the whole call, retries included; for a stream, its opening
        (then `stream`, its (total, between chunks) timeouts, hold while it is read)."""
        started = time.monotonic()
        attempts = Attempts(deadline=started + seconds)
        connection = self.connection
        reauthenticated = False
        try:
            access = await connection.access()
            while True:
                if self._bucket is not None:
                    await self._bucket.take()
                timeout = _timeout(attempts.deadline - time.monotonic(), stream)
                async with self._http().request(
                    method, connection.server + path, params=_params(params), data=data,
                    headers=self._headers(access, content_type), timeout=timeout,
                    ssl=access.ssl_context or True, server_hostname=connection.server_name,
                    proxy=connection.proxy, proxy_headers=connection.proxy_headers or None,
                ) as response:  # fmt: skip
                    if response.status < 400:
                        yield response
                        return
                    raw = await response.read()
                error = error_of(response.status, raw, what)
                if response.status == 401 and not reauthenticated:
                    reauthenticated = True  # once: then the 401 stands
                    access = await connection.refused(access)
                    continue
                delay = _retry_delay(method, response, error.reason, attempts)
                if delay is None:
                    if attempts.made > 1:
                        spent = f"{attempts.made} attempts in {time.monotonic() - started:.1f}s"
                        raise error_of(response.status, raw, f"{what} ({spent})")
                    raise error
                log.info("%s; again in %.1fs (attempt %d)", error, delay, attempts.made)
                await asyncio.sleep(delay)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(f"{what}: {type(exc).__name__}: {exc}") from exc

    async def request(
        self,
        method: str,
        path: str,
        *,
        what: str,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str | None = None,
        seconds: float = REQUEST_TIMEOUT,
    ) -> Body:
        data = None if body is None else json.dumps(body).encode()
        if data is not None and content_type is None:
            content_type = "application/json"
        async with self._exchange(
            method, path, what=what, params=params, data=data, content_type=content_type,
            seconds=seconds,
        ) as response:  # fmt: skip
            raw = await response.read()
        if not raw:
            return {}
        result: Body = json.loads(raw)
        return result

    # -- verbs -----------------------------------------------------------------

    async def get(self, resource: Resource, name: str, *, namespace: str | None = None) -> Body:
        return await self.request(
            "GET", resource.path(namespace=namespace, name=name),
            what=f"get {resource.plural} {_ref(namespace, name)}",
        )  # fmt: skip

    async def list(
        self,
        resource: Resource,
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
        seconds: float = 60.0,
    ) -> Body:
        params: dict[str, str | int] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if limit:
            params["limit"] = limit
        if continue_token:
            params["continue"] = continue_token
        return await self.request(
            "GET", resource.path(namespace=namespace), params=params, seconds=seconds,
            what=f"list {resource.plural}" + (f" in {namespace}" if namespace else ""),
        )  # fmt: skip

    async def create(
        self, resource: Resource, body: Body, *, namespace: str | None = None,
        seconds: float = REQUEST_TIMEOUT, dry_run: bool = False,
    ) -> Body:  # fmt: skip
        """Create; with dry_run, the API server validates and admits the object (every
        admission policy runs) and stores nothing."""
        name = body.get("metadata", {}).get("name") or "(generated)"
        params = {**(self._writer or {}), "dryRun": "All"} if dry_run else self._writer
        return await self.request(
            "POST", resource.path(namespace=namespace), body=body, seconds=seconds,
            params=params,
            what=f"create {resource.plural} {_ref(namespace, name)}",
        )  # fmt: skip

    async def patch(
        self,
        resource: Resource,
        name: str,
        patch: Any,
        *,
        namespace: str | None = None,
        sub: str | None = None,
        content_type: str = MERGE_PATCH,
        seconds: float = REQUEST_TIMEOUT,
    ) -> Body:
        where = f"{resource.plural} {_ref(namespace, name)}" + (f"/{sub}" if sub else "")
        return await self.request(
            "PATCH", resource.path(namespace=namespace, name=name, sub=sub),
            body=patch, content_type=content_type, what=f"patch {where}", seconds=seconds,
            params=self._writer,
        )  # fmt: skip

    async def delete(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None = None,
        grace_seconds: int | None = None,
        propagation: str | None = "Background",
        uid: str | None = None,
        seconds: float = REQUEST_TIMEOUT,
    ) -> Body:
        options: Body = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_seconds is not None:
            options["gracePeriodSeconds"] = grace_seconds
        if propagation:
            options["propagationPolicy"] = propagation
        if uid:
            options["preconditions"] = {"uid": uid}
        return await self.request(
            "DELETE", resource.path(namespace=namespace, name=name), body=options,
            what=f"delete {resource.plural} {_ref(namespace, name)}", seconds=seconds,
        )  # fmt: skip

    async def watch(
        self,
        resource: Resource,
        *,
        resource_version: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int = 300,
    ) -> AsyncGenerator[tuple[str, Body], None]:
        """(type, object) pairs from resource_version on, bookmarks included.

        Ends when the server closes the stream (after timeout_seconds); an ERROR event
        raises its KubeError (410 Gone: the version is too old, list again).
        """
        params: dict[str, str | int] = {
            "watch": "true",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": timeout_seconds,
        }
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        what = f"watch {resource.plural}"
        stream = self.stream(
            resource.path(namespace=namespace), what=what, params=params,
            read_seconds=timeout_seconds + 30,
        )  # fmt: skip
        async with contextlib.aclosing(stream) as chunks:  # the connection goes back at once
            async for line in _lines(chunks):
                event = json.loads(line)
                kind, obj = event["type"], event["object"]
                if kind == "ERROR":
                    raise error_of(int(obj.get("code") or 500), obj, what)
                yield kind, obj

    async def stream(
        self, path: str, *, what: str, params: Mapping[str, str | int] | None = None,
        seconds: float | None = None, read_seconds: float | None = None,
    ) -> AsyncGenerator[bytes, None]:  # fmt: skip
        """Raw chunks of a streaming GET (a watch, a Pod's log with follow=true): at most
        `seconds` in all, `read_seconds` between chunks."""
        async with self._exchange(
            "GET", path, what=what, params=params, seconds=min(seconds or REQUEST_TIMEOUT,
            REQUEST_TIMEOUT), stream=(seconds, read_seconds),
        ) as response:  # fmt: skip
            async for chunk in response.content.iter_any():
                yield chunk


def _timeout(
    left: float, stream: tuple[float | None, float | None] | None
) -> aiohttp.ClientTimeout:
    """One attempt's timeouts: what is left of the call; a stream's own once it is open."""
    left = max(left, 0.001)
    if stream is None:
        return aiohttp.ClientTimeout(total=left)
    total, between = stream
    return aiohttp.ClientTimeout(
        total=total, sock_connect=min(left, REQUEST_TIMEOUT), sock_read=between
    )


def _retry_delay(
    method: str, response: aiohttp.ClientResponse, reason: str, attempts: Attempts
) -> float | None:
    """Seconds before sending a refused request again; None: the refusal stands."""
    wait = retry_after(response.headers.get("Retry-After"), now=datetime.now(UTC))
    if not may_retry(method, response.status, reason, asked=wait is not None):
        return None
    return attempts.next_delay(retry_after=wait, now=time.monotonic())


async def _lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """Newline-separated JSON documents of a watch stream (a line may exceed any buffer)."""
    pending = b""
    async for chunk in chunks:
        pending += chunk
        while True:
            cut = pending.find(b"\n")
            if cut < 0:
                break
            line, pending = pending[:cut], pending[cut + 1 :]
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _params(params: Mapping[str, str | int] | None) -> dict[str, str] | None:
    return {k: str(v) for k, v in params.items()} if params else None


def _ref(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name
