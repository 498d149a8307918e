"""The Authority's caches and bounds (pure asyncio, no cluster).

A real API server answers reviews too fast and too reliably to show what these
guard against (a review that hangs, a flood of random tokens), so a scripted Kube
plays the API server's TokenReview and SubjectAccessReview endpoints: it counts the
reviews it is asked for and can hold them all until the test lets them go.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from shunter.api.auth import (
    ACCESS_TTL,
    CACHE_LIMIT,
    REFRESH_AHEAD,
    REFUSED_LIMIT,
    REFUSED_TTL,
    REVIEWS_AT_ONCE,
    TOKEN_TTL,
    Authority,
    Expiring,
)
from shunter.api.errors import Forbidden, Unauthenticated, Unavailable
from shunter.kube import Unreachable


class ScriptedKube:
    """TokenReview: tokens in `users` are valid. SubjectAccessReview: `allowed` verbs."""

    def __init__(self, users: dict[str, str], allowed: set[str] | None = None) -> None:
        self.users = users
        self.bodies: list[dict[str, Any]] = []
        self.allowed = allowed or set()
        self.reviews: dict[str, int] = {"TokenReview": 0, "SubjectAccessReview": 0}
        self.in_flight = 0
        self.most_in_flight = 0
        self.gate: asyncio.Event | None = None  # when set up, reviews wait for it
        self.full = asyncio.Event()  # set when REVIEWS_AT_ONCE are in flight
        self.down = False

    async def create(self, _resource: Any, body: dict[str, Any], **_: Any) -> dict[str, Any]:
        self.reviews[body["kind"]] += 1
        self.bodies.append(body)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        if self.in_flight >= REVIEWS_AT_ONCE:
            self.full.set()
        try:
            if self.gate is not None:
                await self.gate.wait()
            if self.down:
                raise Unreachable("create tokenreviews: connection refused")
            return self._answer(body)
        finally:
            self.in_flight -= 1

    def _answer(self, body: dict[str, Any]) -> dict[str, Any]:
        spec = body["spec"]
        if body["kind"] == "TokenReview":
            user = self.users.get(spec["token"])
            if user is None:
                return {"status": {"authenticated": False}}
            return {"status": {"authenticated": True, "user": {
                "username": user, "uid": f"uid-{user}", "groups": ["team"],
                "extra": {"scopes.example.com": ["a", "b"]},
            }}}  # fmt: skip
        return {"status": {"allowed": spec["resourceAttributes"]["verb"] in self.allowed}}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def authority_for(
    kube: ScriptedKube, clock: Clock | None = None, audiences: tuple[str, ...] = ()
) -> Authority:
    return Authority(kube, enabled=True, clock=clock or Clock(), audiences=audiences)  # type: ignore[arg-type]


async def test_a_refused_token_is_cached_so_a_retry_costs_no_review():
    kube = ScriptedKube(users={})
    authority = authority_for(kube)
    for _ in range(5):
        with pytest.raises(Unauthenticated, match="Invalid or expired token"):
            await authority.authenticate("Bearer random-guess")
    assert kube.reviews["TokenReview"] == 1


async def test_cached_answers_expire():
    kube = ScriptedKube(users={"good": "alice"}, allowed={"get"})
    clock = Clock()
    authority = authority_for(kube, clock)
    with pytest.raises(Unauthenticated):
        await authority.authenticate("Bearer bad")
    principal = await authority.authenticate("Bearer good")
    await authority.authorize(principal, "get", "ns")
    assert kube.reviews == {"TokenReview": 2, "SubjectAccessReview": 1}

    clock.now += min(REFUSED_TTL, ACCESS_TTL) - 0.1  # everything still cached
    with pytest.raises(Unauthenticated):
        await authority.authenticate("Bearer bad")
    await authority.authorize(await authority.authenticate("Bearer good"), "get", "ns")
    assert kube.reviews == {"TokenReview": 2, "SubjectAccessReview": 1}

    clock.now += 0.2  # the refusal and the permission expired, the valid token not yet
    assert max(REFUSED_TTL, ACCESS_TTL) < TOKEN_TTL
    with pytest.raises(Unauthenticated):
        await authority.authenticate("Bearer bad")
    await authority.authorize(await authority.authenticate("Bearer good"), "get", "ns")
    assert kube.reviews == {"TokenReview": 3, "SubjectAccessReview": 2}

    clock.now += TOKEN_TTL
    assert (await authority.authenticate("Bearer good")).user == "alice"
    assert kube.reviews["TokenReview"] == 4


async def test_a_denied_permission_is_cached_too():
    kube = ScriptedKube(users={"good": "alice"}, allowed=set())
    authority = authority_for(kube)
    principal = await authority.authenticate("Bearer good")
    for _ in range(3):
        with pytest.raises(Forbidden, match="'alice' may not patch trainingjobs"):
            await authority.authorize(principal, "patch", "ns")
    assert kube.reviews["SubjectAccessReview"] == 1


async def test_concurrent_reviews_are_bounded():
    kube = ScriptedKube(users={f"t{i}": f"user{i}" for i in range(0, 100, 2)})
    kube.gate = asyncio.Event()
    authority = authority_for(kube)
    callers = [
        asyncio.create_task(authority.authenticate(f"Bearer t{i}"))
        for i in range(3 * REVIEWS_AT_ONCE)
    ]
    await asyncio.wait_for(kube.full.wait(), 5)
    for _ in range(20):  # every other caller gets its turn on the loop: none gets in
        await asyncio.sleep(0)
    assert kube.in_flight == REVIEWS_AT_ONCE
    assert kube.reviews["TokenReview"] == REVIEWS_AT_ONCE

    kube.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert kube.most_in_flight == REVIEWS_AT_ONCE
    assert kube.reviews["TokenReview"] == 3 * REVIEWS_AT_ONCE
    valid = [r for r in results if not isinstance(r, BaseException)]
    assert len(valid) == len([i for i in range(3 * REVIEWS_AT_ONCE) if i % 2 == 0])
    assert all(isinstance(r, Unauthenticated) for r in results if isinstance(r, BaseException))


async def test_requests_arriving_together_with_one_token_share_one_review():
    kube = ScriptedKube(users={"fresh": "bob"})
    kube.gate = asyncio.Event()
    authority = authority_for(kube)
    callers = [asyncio.create_task(authority.authenticate("Bearer fresh")) for _ in range(10)]
    for _ in range(5):
        await asyncio.sleep(0)
    callers[0].cancel()  # the first caller hangs up: the review goes on for the others
    kube.gate.set()
    results = await asyncio.gather(*callers, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError)
    assert {r.user for r in results[1:]} == {"bob"}  # type: ignore[union-attr]
    assert kube.reviews["TokenReview"] == 1


async def test_an_unreachable_api_server_is_503_and_not_cached_as_a_refusal():
    kube = ScriptedKube(users={"good": "alice"})
    kube.down = True
    authority = authority_for(kube)
    with pytest.raises(Unavailable, match="Cannot verify the token"):
        await authority.authenticate("Bearer good")
    kube.down = False
    assert (await authority.authenticate("Bearer good")).user == "alice"
    assert kube.reviews["TokenReview"] == 2


def test_a_full_cache_drops_its_least_recently_used_entry_only():
    cache: Expiring[str, int] = Expiring(3)
    for i, key in enumerate("abc"):
        cache.put(key, i, until=100.0)
    assert cache.get("a", 0.0) == (True, 0)  # used: "b" is now the oldest
    cache.put("d", 3, until=100.0)
    assert ("a" in cache, "b" in cache, "c" in cache, "d" in cache) == (True, False, True, True)
    assert len(cache) == 3
    assert cache.get("c", 100.0) == (False, None)  # expired: dropped when asked for
    assert len(cache) == 2


async def test_a_spray_of_random_tokens_never_evicts_a_real_clients_token():
    kube = ScriptedKube(users={"good": "alice"})
    authority = authority_for(kube)
    await authority.authenticate("Bearer good")
    spray = CACHE_LIMIT + REFUSED_LIMIT  # more than either cache holds
    for i in range(spray):
        with pytest.raises(Unauthenticated):
            await authority.authenticate(f"Bearer random-{i}")
        if i % 500 == 0:  # the real client goes on polling meanwhile
            await authority.authenticate("Bearer good")
    assert authority.cached("good")
    assert kube.reviews["TokenReview"] == 1 + spray  # no second review of it
    assert (await authority.authenticate("Bearer good")).user == "alice"
    assert kube.reviews["TokenReview"] == 1 + spray


async def test_the_reviews_carry_the_audiences_and_the_whole_user():
    kube = ScriptedKube(users={"good": "alice"}, allowed={"get"})
    authority = authority_for(kube, audiences=("shunter", "https://kubernetes.default.svc"))
    principal = await authority.authenticate("Bearer good")
    assert principal.uid == "uid-alice"
    assert principal.groups == ("team",)
    assert principal.extra == (("scopes.example.com", ("a", "b")),)
    assert principal.identity.extra == {"scopes.example.com": ("a", "b")}  # to act as them
    await authority.authorize(principal, "get", "ns")
    token_review, access_review = kube.bodies
    assert token_review["spec"] == {
        "token": "good", "audiences": ["shunter", "https://kubernetes.default.svc"],
    }  # fmt: skip
    assert access_review["spec"] == {
        "user": "alice", "uid": "uid-alice", "groups": ["team"],
        "extra": {"scopes.example.com": ["a", "b"]},
        "resourceAttributes": {"group": "shunter.dev", "resource": "trainingjobs",
                               "verb": "get", "namespace": "ns"},
    }  # fmt: skip


async def test_without_audiences_the_review_asks_for_the_servers_own():
    kube = ScriptedKube(users={"good": "alice"})
    await authority_for(kube).authenticate("Bearer good")
    assert kube.bodies[0]["spec"] == {"token": "good"}


async def test_waiting_token_reviews_do_not_hold_up_access_reviews():
    """A flood of unknown tokens fills the token reviews' places; a known caller's
    permission is still checked at once."""
    kube = ScriptedKube(users={"good": "alice"}, allowed={"get"})
    authority = authority_for(kube)
    principal = await authority.authenticate("Bearer good")
    kube.gate = asyncio.Event()
    flood = [
        asyncio.create_task(authority.authenticate(f"Bearer random-{i}"))
        for i in range(2 * REVIEWS_AT_ONCE)
    ]
    await asyncio.wait_for(kube.full.wait(), 5)
    checking = asyncio.create_task(authority.authorize(principal, "get", "ns"))
    for _ in range(20):
        await asyncio.sleep(0)
    assert kube.reviews["SubjectAccessReview"] == 1  # asked, not waiting for a place
    kube.gate.set()
    await asyncio.wait_for(checking, 5)
    await asyncio.gather(*flood, return_exceptions=True)


async def test_each_token_review_is_reported_with_its_answer():
    answers: list[bool] = []
    kube = ScriptedKube(users={"good": "alice"})
    authority = Authority(kube, enabled=True, clock=Clock(), reviewed=answers.append)  # type: ignore[arg-type]
    await authority.authenticate("Bearer good")
    await authority.authenticate("Bearer good")  # cached: no review, nothing reported
    with pytest.raises(Unauthenticated):
        await authority.authenticate("Bearer bad")
    assert answers == [True, False]


async def test_a_permission_near_its_end_is_reviewed_again_in_the_background():
    """A client that keeps calling never waits for a SubjectAccessReview, and a
    revocation is still seen within ACCESS_TTL."""
    kube = ScriptedKube(users={"good": "alice"}, allowed={"get"})
    clock = Clock()
    authority = authority_for(kube, clock)
    principal = await authority.authenticate("Bearer good")
    await authority.authorize(principal, "get", "ns")
    assert kube.reviews["SubjectAccessReview"] == 1

    clock.now += ACCESS_TTL * (1 - REFRESH_AHEAD) - 0.1  # not yet due
    await authority.authorize(principal, "get", "ns")
    for _ in range(5):
        await asyncio.sleep(0)
    assert kube.reviews["SubjectAccessReview"] == 1

    clock.now += 0.2  # in the last third: answered at once, reviewed meanwhile
    kube.gate = asyncio.Event()
    kube.allowed = set()  # the RoleBinding is gone
    await asyncio.wait_for(authority.authorize(principal, "get", "ns"), 1)
    await asyncio.wait_for(authority.authorize(principal, "get", "ns"), 1)  # one review
    for _ in range(5):
        await asyncio.sleep(0)
    assert (kube.reviews["SubjectAccessReview"], kube.in_flight) == (2, 1)
    kube.gate.set()
    for _ in range(5):
        await asyncio.sleep(0)
    with pytest.raises(Forbidden):  # the background answer replaced the cached one
        await authority.authorize(principal, "get", "ns")
    assert kube.reviews["SubjectAccessReview"] == 2
