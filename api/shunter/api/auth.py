"""Who is calling, and may they? Kubernetes answers both.

A caller presents a Kubernetes bearer token. The API asks the API server who it
belongs to (TokenReview, for the audiences of SHUNTER_API_TOKEN_AUDIENCES when set)
and whether that user may do the verb on trainingjobs in the namespace
(SubjectAccessReview, with the user's groups, uid and `extra` as TokenReview gave
them: an authorizer or webhook that decides on those sees the same caller), so the
cluster's own RBAC decides: no token is 401, no permission is 403. The `Principal`
keeps all of it, so the API can later act as the caller (impersonation).

Answers are cached briefly so a polling UI does not cost two reviews per request:
valid tokens 30 s, refused tokens 10 s (random bearer tokens must not each cost a
TokenReview), permissions 10 s; a permission in the last third of its time is
answered from the cache and reviewed again in the background, so a client that keeps
calling never waits for a SubjectAccessReview (a revocation is still seen within the
10 s). Each cache is bounded and evicts its least recently
used entry, never the whole cache; refused tokens have a cache of their own, smaller:
a spray of random tokens evicts other random tokens, never a real client's (whose
token would otherwise cost a review on every request of the spray). At most
REVIEWS_AT_ONCE token reviews and as many access reviews are in flight; the rest wait
for a place, so a flood of new tokens cannot flood the API server, nor hold up the
access reviews of callers whose token is known; requests that arrive together with the
same token share one review (a UI opening several requests at once with a fresh token
costs one TokenReview, not one per request). `SHUNTER_API_AUTH=none` turns every
check off, for a trusted local demo only.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from shunter.api.errors import Forbidden, Unauthenticated, Unavailable
from shunter.domain.model import GROUP, PLURAL
from shunter.kube import Kube, KubeError
from shunter.kube.client import Identity
from shunter.kube.resources import ACCESS_REVIEWS, TOKEN_REVIEWS

log = logging.getLogger("shunter.api")

TOKEN_TTL = 30.0
REFUSED_TTL = 10.0
ACCESS_TTL = 10.0
REVIEWS_AT_ONCE = 16
# The namespace of a cluster-wide review: a SubjectAccessReview without one asks
# about every namespace, which only a ClusterRoleBinding grants.
CLUSTER_WIDE = ""
# Valid tokens and permissions: far more than the clients one API serves at once.
CACHE_LIMIT = 10_000
# Refused tokens: a retry loop's bad token stays cached; a spray only evicts itself.
REFUSED_LIMIT = 1_000
# The share of a permission's time at its end when it is reviewed again in the background.
REFRESH_AHEAD = 1 / 3

Extra = tuple[tuple[str, tuple[str, ...]], ...]


@dataclass(frozen=True)
class Principal:
    """The caller as TokenReview described it (hashable: it keys the access cache)."""

    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: Extra = ()

    @staticmethod
    def of_review(user: Mapping[str, Any]) -> Principal:
        extra = user.get("extra") or {}
        return Principal(
            user=user.get("username", ""),
            groups=tuple(user.get("groups") or ()),
            uid=user.get("uid", ""),
            extra=tuple(sorted((k, tuple(v or ())) for k, v in extra.items())),
        )

    def review_spec(self) -> dict[str, Any]:
        """The user part of a SubjectAccessReview's spec."""
        spec: dict[str, Any] = {"user": self.user, "groups": list(self.groups), "uid": self.uid}
        if self.extra:
            spec["extra"] = {key: list(values) for key, values in self.extra}
        return spec

    @property
    def anonymous(self) -> bool:
        """The demo's stand-in with auth off: nobody to act as."""
        return self == ANONYMOUS_DEMO

    @property
    def identity(self) -> Identity:
        """The caller as the API server knows them, to act as (impersonation)."""
        return Identity(self.user, uid=self.uid, groups=self.groups, extra=dict(self.extra))


ANONYMOUS_DEMO = Principal("demo (auth disabled)")


K = TypeVar("K")
V = TypeVar("V")


class Expiring(Generic[K, V]):
    """A bounded map whose entries expire; past `limit` it drops the least recently
    used entry (an expired one is dropped when next asked for)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K, now: float) -> tuple[bool, V | None]:
        """(found, value): a cached refusal is (True, None)."""
        entry = self._entries.get(key)
        if entry is None:
            return False, None
        if entry[0] <= now:
            del self._entries[key]
            return False, None
        self._entries.move_to_end(key)
        return True, entry[1]

    def remaining(self, key: K, now: float) -> float:
        """Seconds the entry has left (0 when there is none)."""
        entry = self._entries.get(key)
        return max(0.0, entry[0] - now) if entry is not None else 0.0

    def pop(self, key: K) -> None:
        self._entries.pop(key, None)

    def put(self, key: K, value: V, *, until: float) -> None:
        self._entries[key] = (until, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.limit:
            self._entries.popitem(last=False)


def audiences_of(raw: str) -> tuple[str, ...]:
    """`a,b` -> ("a", "b"); empty means the API server's own audiences."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


class Authority:
    def __init__(
        self, kube: Kube, *, enabled: bool, audiences: Iterable[str] = (),
        clock: Callable[[], float] = time.monotonic,
        reviewed: Callable[[bool], None] = lambda valid: None,
        token_ttl: float = TOKEN_TTL, jitter: float = 0.0,
    ) -> None:  # fmt: skip
        self.kube = kube
        self._reviewed = reviewed  # told of each TokenReview's answer (a metric)
        self.enabled = enabled
        self.audiences = tuple(audiences)
        self._clock = clock
        # A valid token is kept token_ttl, plus up to `jitter` of it at random: many
        # clients that first came together (trainers after an API restart) do not all
        # need a review again in the same second.
        self._token_ttl, self._jitter = token_ttl, jitter
        self._tokens: Expiring[str, Principal] = Expiring(CACHE_LIMIT)
        self._refused: Expiring[str, None] = Expiring(REFUSED_LIMIT)
        self._access: Expiring[tuple[Principal, str, str], bool] = Expiring(CACHE_LIMIT)
        self._token_reviews = asyncio.Semaphore(REVIEWS_AT_ONCE)
        self._access_reviews = asyncio.Semaphore(REVIEWS_AT_ONCE)
        # Reviews under way (tokens by hash, permissions by key): a second request
        # waits for the first's answer rather than asking again.
        self._reviewing: dict[str, asyncio.Task[Principal | None]] = {}
        self._checking: dict[tuple[Principal, str, str], asyncio.Task[bool]] = {}

    def cached(self, token: str) -> bool:
        """Whether a valid token's answer is cached (the bench's and tests' probe)."""
        return _hash(token) in self._tokens

    async def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS_DEMO
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthenticated("Missing bearer token: send 'Authorization: Bearer <token>'")
        token = authorization[7:].strip()
        if not token:
            raise Unauthenticated("Empty bearer token: send 'Authorization: Bearer <token>'")
        key = _hash(token)
        now = self._clock()
        found, principal = self._tokens.get(key, now)
        if not found and not self._refused.get(key, now)[0]:
            review = _shared(self._reviewing, key, lambda: self._review_and_cache(key, token))
            principal = await asyncio.shield(review)
        if principal is None:
            raise Unauthenticated("Invalid or expired token")
        return principal

    async def _review_and_cache(self, key: str, token: str) -> Principal | None:
        principal = await self._review_token(token)
        self._reviewed(principal is not None)
        if principal is None:
            self._tokens.pop(key)
            self._refused.put(key, None, until=self._clock() + REFUSED_TTL)
        else:
            ttl = self._token_ttl * (1 + self._jitter * random.random())
            self._tokens.put(key, principal, until=self._clock() + ttl)
        return principal

    async def _review_token(self, token: str) -> Principal | None:
        spec: dict[str, Any] = {"token": token}
        if self.audiences:
            spec["audiences"] = list(self.audiences)
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec}
        try:
            async with self._token_reviews:
                review = await self.kube.create(TOKEN_REVIEWS, body)
        except KubeError as exc:
            log.warning("TokenReview failed: %s", exc)
            raise Unavailable("Cannot verify the token: the Kubernetes API is unavailable") from exc
        status = review.get("status") or {}
        if not status.get("authenticated"):
            return None
        return Principal.of_review(status.get("user") or {})

    async def authorize(self, principal: Principal, verb: str, namespace: str) -> None:
        if not self.enabled:
            return
        key = (principal, verb, namespace)
        now = self._clock()
        found, allowed = self._access.get(key, now)
        if not found or allowed is None:
            allowed = await asyncio.shield(self._access_review(key))
        elif self._access.remaining(key, now) < ACCESS_TTL * REFRESH_AHEAD:
            self._access_review(key)  # in the background: this answer is the cached one
        if not allowed:
            where = f"namespace {namespace!r}" if namespace else "every namespace"
            raise Forbidden(f"User {principal.user!r} may not {verb} trainingjobs in {where}")

    def _access_review(self, key: tuple[Principal, str, str]) -> asyncio.Task[bool]:
        async def review_and_cache() -> bool:
            allowed = await self._review_access(*key)
            self._access.put(key, allowed, until=self._clock() + ACCESS_TTL)
            return allowed

        return _shared(self._checking, key, review_and_cache)

    async def _review_access(self, principal: Principal, verb: str, namespace: str) -> bool:
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                **principal.review_spec(),
                "resourceAttributes": {
                    "group": GROUP, "resource": PLURAL, "verb": verb, "namespace": namespace,
                },
            },
        }  # fmt: skip
        try:
            async with self._access_reviews:
                result = await self.kube.create(ACCESS_REVIEWS, body)
        except KubeError as exc:
            log.warning("SubjectAccessReview failed: %s", exc)
            raise Unavailable(
                "Cannot check permissions: the Kubernetes API is unavailable"
            ) from exc
        return bool((result.get("status") or {}).get("allowed"))


R = TypeVar("R")


def _shared(
    running: dict[K, asyncio.Task[R]], key: K, review: Callable[[], Coroutine[Any, Any, R]]
) -> asyncio.Task[R]:
    """The review under way for `key`, or a new one. A task of its own: a caller that
    goes away does not cancel it for the others (they await it shielded)."""
    task = running.get(key)
    if task is None:
        task = asyncio.create_task(review())
        running[key] = task

        def forget(done: asyncio.Task[R]) -> None:
            running.pop(key, None)
            if not done.cancelled():
                done.exception()  # retrieved, even when every caller went away

        task.add_done_callback(forget)
    return task


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
