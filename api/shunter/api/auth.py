"""Who is calling, and may they? Kubernetes answers both.

A caller presents a Kubernetes bearer token. The API asks the API server who it
belongs to (TokenReview) and whether that user may do the verb on trainingjobs in the
namespace (SubjectAccessReview), so the cluster's own RBAC decides: no token is 401,
no permission is 403.

Answers are cached briefly so a polling UI does not cost two reviews per request:
valid tokens 30 s, refused tokens 10 s (random bearer tokens must not each cost a
TokenReview), permissions 10 s. At most REVIEWS_AT_ONCE reviews are in flight; the
rest wait for a place, so a flood of new tokens cannot flood the API server; requests
that arrive together with the same token share one review (a UI opening several
requests at once with a fresh token costs one TokenReview, not one per request).
`SHUNTER_API_AUTH=none` turns every check off, for a trusted local demo only.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from shunter.api.errors import Forbidden, Unauthenticated, Unavailable
from shunter.kube import Kube, KubeError
from shunter.kube.client import Identity
from shunter.kube.resources import ACCESS_REVIEWS, TOKEN_REVIEWS
from shunter.operator.model import GROUP, PLURAL

TOKEN_TTL = 30.0
REFUSED_TTL = 10.0
ACCESS_TTL = 10.0
REVIEWS_AT_ONCE = 16
CACHE_LIMIT = 10_000


@dataclass(frozen=True)
class Principal:
    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""

    @property
    def anonymous(self) -> bool:
        """The demo's stand-in with auth off: nobody to act as."""
        return self == ANONYMOUS_DEMO

    @property
    def identity(self) -> Identity:
        """The caller as the API server knows them, to act as (impersonation)."""
        return Identity(self.user, uid=self.uid, groups=self.groups)


ANONYMOUS_DEMO = Principal("demo (auth disabled)")


K = TypeVar("K")
V = TypeVar("V")


class _Expiring(Generic[K, V]):
    """A dict whose entries expire; cleared wholesale when it grows past its limit."""

    def __init__(self) -> None:
        self._entries: dict[K, tuple[float, V]] = {}

    def get(self, key: K, now: float) -> tuple[bool, V | None]:
        """(found, value): a cached refusal is (True, None)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= now:
            return False, None
        return True, entry[1]

    def put(self, key: K, value: V, *, until: float) -> None:
        if len(self._entries) >= CACHE_LIMIT:
            self._entries.clear()
        self._entries[key] = (until, value)


class Authority:
    def __init__(
        self, kube: Kube, *, enabled: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.kube = kube
        self.enabled = enabled
        self._clock = clock
        self._tokens: _Expiring[str, Principal | None] = _Expiring()
        self._access: _Expiring[tuple[Principal, str, str], bool] = _Expiring()
        self._reviews = asyncio.Semaphore(REVIEWS_AT_ONCE)
        # Token reviews under way, by token hash: a second request waits for the first.
        self._reviewing: dict[str, asyncio.Task[Principal | None]] = {}

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS_DEMO
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthenticated("Missing bearer token: send 'Authorization: Bearer <token>'")
        token = authorization[7:].strip()
        if not token:
            raise Unauthenticated("Empty bearer token: send 'Authorization: Bearer <token>'")
        key = hashlib.sha256(token.encode()).hexdigest()
        found, principal = self._tokens.get(key, self._clock())
        if not found:
            principal = await self._shared_review(key, token)
        if principal is None:
            raise Unauthenticated("Invalid or expired token")
        return principal

    async def _shared_review(self, key: str, token: str) -> Principal | None:
        """One TokenReview per token at a time, its answer cached for everyone. The
        review is a task of its own: a caller that goes away does not cancel it for
        the others."""
        task = self._reviewing.get(key)
        if task is None:
            task = asyncio.create_task(self._review_and_cache(key, token))
            self._reviewing[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        return await asyncio.shield(task)

    async def _review_and_cache(self, key: str, token: str) -> Principal | None:
        principal = await self._review_token(token)
        ttl = TOKEN_TTL if principal is not None else REFUSED_TTL
        self._tokens.put(key, principal, until=self._clock() + ttl)
        return principal

    def _forget(self, key: str, task: asyncio.Task[Principal | None]) -> None:
        self._reviewing.pop(key, None)
        if not task.cancelled():
            task.exception()  # retrieved, even when every caller went away

    async def _review_token(self, token: str) -> Principal | None:
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token}}  # fmt: skip
        try:
            async with self._reviews:
                review = await self.kube.create(TOKEN_REVIEWS, body)
        except KubeError as exc:
            raise Unavailable(f"Cannot verify the token: {exc}") from exc
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        return Principal(
            user=user.get("username", ""),
            groups=tuple(user.get("groups") or ()),
            uid=user.get("uid", ""),
        )

    async def authorize(self, principal: Principal, verb: str, namespace: str) -> None:
        if not self.enabled:
            return
        key = (principal, verb, namespace)
        found, allowed = self._access.get(key, self._clock())
        if not found or allowed is None:
            allowed = await self._review_access(principal, verb, namespace)
            self._access.put(key, allowed, until=self._clock() + ACCESS_TTL)
        if not allowed:
            raise Forbidden(
                f"User {principal.user!r} may not {verb} trainingjobs in namespace {namespace!r}"
            )

    async def _review_access(self, principal: Principal, verb: str, namespace: str) -> bool:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": principal.user,
                "groups": list(principal.groups),
                "uid": principal.uid,
                "resourceAttributes": {
                    "group": GROUP, "resource": PLURAL, "verb": verb, "namespace": namespace,
                },
            },
        }  # fmt: skip
        try:
            async with self._reviews:
                result = await self.kube.create(ACCESS_REVIEWS, body)
        except KubeError as exc:
            raise Unavailable(f"Cannot check permissions: {exc}") from exc
        return bool((result.get("status") or {}).get("allowed"))
