"""Who is calling, and may they? Kubernetes answers both.

A caller presents a Kubernetes bearer token. The API asks the API server who it
belongs to (TokenReview) and whether that user may do the verb on trainingjobs in the
namespace (SubjectAccessReview), so the cluster's own RBAC decides: no token is 401,
no permission is 403. Answers are cached briefly (tokens 30 s, permissions 10 s) so a
polling UI does not cost two reviews per request. `SHUNTER_API_AUTH=none` turns every
check off, for a trusted local demo only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from shunter.api.cluster import Cluster, ClusterError
from shunter.api.errors import Forbidden, Unauthenticated, Unavailable

TOKEN_TTL = 30.0
ACCESS_TTL = 10.0


@dataclass(frozen=True)
class Principal:
    user: str
    groups: tuple[str, ...] = ()
    uid: str = ""


ANONYMOUS_DEMO = Principal("demo (auth disabled)")


class Authority:
    def __init__(self, cluster: Cluster, *, enabled: bool) -> None:
        self.cluster = cluster
        self.enabled = enabled
        self._tokens: dict[str, tuple[float, Principal]] = {}
        self._access: dict[tuple[Principal, str, str], tuple[float, bool]] = {}
        self._lock = threading.Lock()

    def authenticate(self, authorization: str | None) -> Principal:
        if not self.enabled:
            return ANONYMOUS_DEMO
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthenticated("Missing bearer token: send 'Authorization: Bearer <token>'")
        token = authorization[7:].strip()
        if not token:
            raise Unauthenticated("Empty bearer token: send 'Authorization: Bearer <token>'")
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        with self._lock:
            cached = self._tokens.get(key)
        if cached and cached[0] > now:
            return cached[1]
        try:
            review = self.cluster.review_token(token)
        except ClusterError as exc:
            raise Unavailable(f"Cannot verify the token: {exc}") from exc
        status = review.get("status") or {}
        if not status.get("authenticated"):
            raise Unauthenticated("Invalid or expired token")
        user = status.get("user") or {}
        principal = Principal(
            user=user.get("username", ""),
            groups=tuple(user.get("groups") or ()),
            uid=user.get("uid", ""),
        )
        with self._lock:
            self._tokens[key] = (now + TOKEN_TTL, principal)
            if len(self._tokens) > 10_000:
                self._tokens.clear()
        return principal

    def authorize(self, principal: Principal, verb: str, namespace: str) -> None:
        if not self.enabled:
            return
        key = (principal, verb, namespace)
        now = time.monotonic()
        with self._lock:
            cached = self._access.get(key)
        if cached and cached[0] > now:
            allowed = cached[1]
        else:
            try:
                allowed = self.cluster.may(
                    user=principal.user, groups=list(principal.groups), uid=principal.uid,
                    verb=verb, namespace=namespace,
                )  # fmt: skip
            except ClusterError as exc:
                raise Unavailable(f"Cannot check permissions: {exc}") from exc
            with self._lock:
                self._access[key] = (now + ACCESS_TTL, allowed)
                if len(self._access) > 10_000:
                    self._access.clear()
        if not allowed:
            raise Forbidden(
                f"User {principal.user!r} may not {verb} trainingjobs in namespace {namespace!r}"
            )
