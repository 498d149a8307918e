"""Who is calling, and may they? Kubernetes answers both.

A caller presents a Kubernetes bearer token. The API asks the API server who it
belongs to (TokenReview) and whether that user may do the verb on trainingjobs in the
namespace (SubjectAccessReview), so the cluster's own RBAC decides: no token is 401,
no permission is 403.

Answers are cached briefly so a polling UI does not cost two reviews per request:
valid tokens 30 s, refused tokens 10 s (random bearer tokens must not each cost a
TokenReview), permissions 10 s. At most REVIEWS_AT_ONCE reviews are in flight; the
rest wait for a place, so a flood of new tokens cannot flood the API server.
`SHUNTER_API_AUTH=none` turns every check off, for a trusted local demo only.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from typing import Generic, TypeVar

from shunter.api.errors import Forbidden, Unauthenticated, Unavailable
from shunter.kube import Kube, KubeError
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
    def __init__(self, kube: Kube, *, enabled: bool) -> None:
        self.kube = kube
        self.enabled = enabled
        self._tokens: _Expiring[str, Principal | None] = _Expiring()
        self._access: _Expiring[tuple[Principal, str, str], bool] = _Expiring()
        self._reviews = asyncio.Semaphore(REVIEWS_AT_ONCE)

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS_DEMO
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthenticated("Missing bearer token: send 'Authorization: Bearer <token>'")
        token = authorization[7:].strip()
        if not token:
            raise Unauthenticated("Empty bearer token: send 'Authorization: Bearer <token>'")
        key = hashlib.sha256(token.encode()).hexdigest()
        found, principal = self._tokens.get(key, time.monotonic())
        if not found:
            principal = await self._review_token(token)
            ttl = TOKEN_TTL if principal is not None else REFUSED_TTL
            self._tokens.put(key, principal, until=time.monotonic() + ttl)
        if principal is None:
            raise Unauthenticated("Invalid or expired token")
        return principal

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
        found, allowed = self._access.get(key, time.monotonic())
        if not found or allowed is None:
            allowed = await self._review_access(principal, verb, namespace)
            self._access.put(key, allowed, until=time.monotonic() + ACCESS_TTL)
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
