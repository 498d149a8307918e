"""An asyncio client for the Kubernetes API: JSON in, plain dicts out.

Why our own thin client on aiohttp rather than a generated one: Shunter parses every
object into its own frozen dataclasses once, where it enters, so a client that first
builds model objects only adds work; aiohttp is already here (kopf's transport); and
the measured cost per call matters at 10,000 jobs (see bench/RESULTS.md, "Kubernetes
client"). Every call has a timeout; every failure is a `KubeError` (shunter.kube.errors).
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import aiohttp
from multidict import CIMultiDict

from shunter.kube.connection import Connection
from shunter.kube.errors import Unreachable, error_of
from shunter.kube.resources import Resource

log = logging.getLogger("shunter.kube")

# Seconds before a call is abandoned (a pass or a request retries later).
REQUEST_TIMEOUT = 30.0
MERGE_PATCH = "application/merge-patch+json"
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
        field_manager: str | None = None,
    ) -> None:  # fmt: skip
        self.connection = connection
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
        # Created on first use, inside the running loop (aiohttp binds to it).
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._connections,
                ssl=self.connection.ssl_context if self.connection.ssl_context else False,
            )
            self._session = aiohttp.ClientSession(
                connector=connector, json_serialize=json.dumps, raise_for_status=False
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    def _headers(self, content_type: str | None) -> CIMultiDict[str]:
        headers: CIMultiDict[str] = CIMultiDict(Accept="application/json")
        if self.user_agent:
            headers["User-Agent"] = self.user_agent
        token = self.connection.authorization()
        if token:
            headers["Authorization"] = token
        if content_type:
            headers["Content-Type"] = content_type
        headers.extend(self._impersonate)
        return headers

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
        try:
            async with self._http().request(
                method,
                self.connection.server + path,
                params=_params(params),
                data=data,
                headers=self._headers(content_type),
                timeout=aiohttp.ClientTimeout(total=seconds),
            ) as response:
                raw = await response.read()
                if response.status >= 400:
                    raise error_of(response.status, raw, what)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(f"{what}: {type(exc).__name__}: {exc}") from exc
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
        timeout = aiohttp.ClientTimeout(
            total=seconds, sock_connect=REQUEST_TIMEOUT, sock_read=read_seconds
        )
        try:
            async with self._http().get(
                self.connection.server + path, params=_params(params),
                headers=self._headers(None), timeout=timeout,
            ) as response:  # fmt: skip
                if response.status >= 400:
                    raise error_of(response.status, await response.read(), what)
                async for chunk in response.content.iter_any():
                    yield chunk
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Unreachable(f"{what}: {type(exc).__name__}: {exc}") from exc


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
