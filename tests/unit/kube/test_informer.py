"""The one informer: list, watch, resume, relist on 410, and waiting without polling.

Against the real API server: what it lists and watches, and a client reading its own
write. With a scripted server only where a real one cannot be made to answer on
demand: a 410 Gone (its version compacted away) in the middle of a watch.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from shunter.domain.model import Job, JobKey
from shunter.kube import Gone, Informer
from shunter.kube.resources import TRAINING_JOBS
from tests.support.builders import a_training_job


def body(name: str, rv: int, phase: str = "queued") -> dict[str, Any]:
    b = a_training_job(name).in_phase(phase).body()
    b["metadata"]["uid"] = f"uid-{name}"
    b["metadata"]["resourceVersion"] = str(rv)
    return b


class ScriptedKube:
    """Lists and watches from a script; the second watch of the first list ends in 410."""

    def __init__(self) -> None:
        self.lists = 0
        self.watches: list[str] = []

    async def list(self, *_: Any, **__: Any) -> dict[str, Any]:
        self.lists += 1
        if self.lists == 1:
            return {"metadata": {"resourceVersion": "10"}, "items": [body("a", 5), body("b", 6)]}
        return {"metadata": {"resourceVersion": "30"}, "items": [body("b", 25, "running")]}

    async def watch(
        self, *_: Any, resource_version: str, **__: Any
    ) -> AsyncIterator[tuple[str, Any]]:
        self.watches.append(resource_version)
        if resource_version == "10":
            yield "MODIFIED", body("a", 11, "starting")
            yield "BOOKMARK", {"metadata": {"resourceVersion": "15"}}
            return  # the server closes the watch; the informer resumes from 15
        if resource_version == "15":
            raise Gone("too old", status=410)
        await asyncio.sleep(3600)  # after the relist: quiet
        yield "DELETED", body("b", 31)


async def test_resumes_from_bookmarks_and_relists_only_on_410():
    kube = ScriptedKube()
    changes: list[tuple[str, str]] = []
    informer: Informer[JobKey, Job] = Informer(
        kube,  # type: ignore[arg-type]
        TRAINING_JOBS,
        parse=Job.parse,
        key=lambda j: j.key,
        on_change=lambda kind, job: changes.append((kind, job.key.name)),
    )
    informer.start()
    try:
        assert await informer.wait_version("30", within=5)
    finally:
        await informer.stop()
    assert kube.watches[:3] == ["10", "15", "30"]
    assert kube.lists == 2
    assert sorted(j.key.name for j in informer.store.values()) == ["b"]
    assert informer.store[JobKey("default", "b")].phase is not None
    # The relist told the callback what changed while the watch was broken.
    assert ("DELETED", "a") in changes
    assert ("MODIFIED", "b") in changes


async def test_waiters_wake_on_change_and_time_out_otherwise():
    informer: Informer[JobKey, Job] = Informer(
        None,  # type: ignore[arg-type]  # fed by hand below, no server
        TRAINING_JOBS,
        parse=Job.parse,
        key=lambda j: j.key,
    )
    key = JobKey("default", "w")
    running = asyncio.create_task(
        informer.wait_until(key, lambda j: j is not None and j.phase is not None
                            and j.phase.value == "running", within=5)
    )  # fmt: skip
    await asyncio.sleep(0)
    informer._apply("ADDED", Job.parse(body("w", 40)))
    assert not running.done()
    informer._apply("MODIFIED", Job.parse(body("w", 41, "running")))
    assert await running
    assert not await informer.wait_version("99", within=0.05)
    version = informer.version
    informer._apply("MODIFIED", Job.parse(body("w", 41, "running")))  # no change
    assert informer.version == version


async def test_every_subscriber_is_told_of_each_change_and_only_while_subscribed():
    informer: Informer[JobKey, Job] = Informer(
        None,  # type: ignore[arg-type]  # fed by hand below, no server
        TRAINING_JOBS,
        parse=Job.parse,
        key=lambda j: j.key,
    )
    first, second = asyncio.Event(), asyncio.Event()
    with informer.notifying(first), informer.notifying(second):
        assert informer.subscribers == 2
        informer._apply("ADDED", Job.parse(body("s", 50)))
        assert (first.is_set(), second.is_set()) == (True, True)
        first.clear()
        second.clear()
        informer._apply("MODIFIED", Job.parse(body("s", 50)))  # no change: no wake-up
        assert not first.is_set()
        informer._apply("MODIFIED", Job.parse(body("s", 51, "running")))
        assert (first.is_set(), second.is_set()) == (True, True)
        first.clear()
        await asyncio.wait_for(second.wait(), 1)  # an awaiting subscriber wakes
    assert informer.subscribers == 0
    informer._apply("DELETED", Job.parse(body("s", 52)))
    assert not first.is_set()  # unsubscribed: left alone


async def watched(*events: tuple[str, dict[str, Any]]) -> AsyncIterator[tuple[str, Any]]:
    for event in events:
        yield event


def version_of(informer: Informer[JobKey, Job], name: str) -> str | None:
    job = informer.get(JobKey("default", name))
    return job.resource_version if job is not None else None


def ordered() -> Informer[JobKey, Job]:
    """An informer fed by hand that can order versions (a writer may offer)."""
    return Informer(
        None,  # type: ignore[arg-type]  # fed by hand below, no server
        TRAINING_JOBS,
        parse=Job.parse,
        key=lambda j: j.key,
        revision_of=lambda j: int(j.resource_version),
    )


async def test_a_writers_offer_shows_at_once_and_the_watch_never_puts_back_an_older_one():
    informer = ordered()
    changes: list[tuple[str, str | None]] = []
    informer._on_change = lambda kind, job: changes.append((kind, job.resource_version))
    await informer._follow(watched(("ADDED", body("o", 60))))
    signal = asyncio.Event()
    with informer.notifying(signal):
        # The API's write answered version 62; the watch has delivered up to 60.
        assert informer.offer(Job.parse(body("o", 62, "cancelling")))
        assert signal.is_set()
    assert version_of(informer, "o") == "62"
    # The watch then brings the operator's version 61 (older), then 62 itself.
    version = informer.version
    await informer._follow(watched(("MODIFIED", body("o", 61, "running")),
                                   ("MODIFIED", body("o", 62, "cancelling"))))  # fmt: skip
    assert version_of(informer, "o") == "62"
    assert informer.version == version  # neither was a change
    assert changes == [("ADDED", "60"), ("MODIFIED", "62")]
    # A later version from the watch replaces it as always.
    await informer._follow(watched(("MODIFIED", body("o", 63, "cancelled"))))
    assert version_of(informer, "o") == "63"


async def test_an_offer_the_watch_has_passed_changes_nothing():
    informer = ordered()
    await informer._follow(watched(("ADDED", body("d", 70)), ("DELETED", body("d", 72))))
    version = informer.version
    # A write answered 71, then the job was deleted (72): the offer brings nothing back.
    assert informer.offer(Job.parse(body("d", 71, "cancelling")))
    assert version_of(informer, "d") is None
    assert informer.version == version
    # An offer older than the cached object changes nothing either.
    await informer._follow(watched(("ADDED", body("e", 80, "running"))))
    assert informer.offer(Job.parse(body("e", 75)))
    assert version_of(informer, "e") == "80"


async def test_without_a_revision_an_offer_is_declined_and_the_writer_waits():
    informer: Informer[JobKey, Job] = Informer(
        None,  # type: ignore[arg-type]  # fed by hand below, no server
        TRAINING_JOBS,
        parse=Job.parse,
        key=lambda j: j.key,
    )
    assert not informer.offer(Job.parse(body("n", 90)))
    assert version_of(informer, "n") is None


async def _listed(informer: Informer[JobKey, Job]) -> None:
    """Start the informer, wait for its first list to be applied, stop it."""
    informer.start()
    try:
        async with asyncio.timeout(10):
            await informer.synced.wait()
    finally:
        await informer.stop()


class LongListKube:
    """One list of 1,200 jobs in one page (what a real server pages is the same
    amount of work here), then a quiet watch."""

    async def list(self, *_: Any, **__: Any) -> dict[str, Any]:
        items = [body(f"j{i:04d}", 5 + i) for i in range(1200)]
        return {"metadata": {"resourceVersion": "2000"}, "items": items}

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[tuple[str, Any]]:
        await asyncio.sleep(3600)
        yield "BOOKMARK", {"metadata": {"resourceVersion": "2000"}}


async def test_a_long_list_lets_other_tasks_run_while_it_is_applied():
    # The operator's Lease is renewed by another task on the same loop: a list of
    # 60,000 jobs applied in one go had it miss its deadline.
    seen: list[str] = []
    informer: Informer[JobKey, Job] = Informer(
        LongListKube(),  # type: ignore[arg-type]
        TRAINING_JOBS,
        parse=Job.parse,
        key=lambda j: j.key,
        on_change=lambda kind, job: seen.append(job.key.name),
    )

    async def ticker() -> None:
        while True:
            seen.append("tick")
            await asyncio.sleep(0)

    ticking = asyncio.create_task(ticker())
    try:
        await _listed(informer)
    finally:
        ticking.cancel()
    applied = [i for i, name in enumerate(seen) if name != "tick"]
    assert len(applied) == 1200
    between = seen[applied[0] : applied[-1]]
    assert "tick" in between, "the list held the loop from its first object to its last"


class PagedKube:
    """A list in two pages; while the second is asked for, `between` runs (a writer's
    answer arriving then: a real server cannot be made to answer there on demand)."""

    def __init__(self, between: Any) -> None:
        self.between = between
        self.tokens: list[str | None] = []

    async def list(self, *_: Any, continue_token: str | None = None, **__: Any) -> dict[str, Any]:
        self.tokens.append(continue_token)
        if continue_token is None:
            return {"metadata": {"resourceVersion": "100", "continue": "page-2"},
                    "items": [body("p1", 40), body("p2", 41)]}  # fmt: skip
        self.between()
        return {"metadata": {"resourceVersion": "100"}, "items": [body("p3", 42), body("p4", 43)]}

    async def watch(self, *_: Any, **__: Any) -> AsyncIterator[tuple[str, Any]]:
        await asyncio.sleep(3600)
        yield "BOOKMARK", {"metadata": {"resourceVersion": "100"}}


async def test_a_list_is_read_page_by_page_and_keeps_an_offer_made_between_its_pages():
    # Each page is parsed as it comes (the raw objects of a large list are not all
    # held at once); a writer's answer that arrives after its object's page was read
    # is newer than the list's copy and stays, as one arriving before it does.
    informer: Informer[JobKey, Job]

    def answers() -> None:
        assert version_of(informer, "p1") is None  # the store is swapped at the end
        assert informer.offer(Job.parse(body("p1", 120, "cancelling")))  # page 1: read
        assert informer.offer(Job.parse(body("p4", 121, "cancelling")))  # page 2: not yet

    kube = PagedKube(answers)
    informer = Informer(
        kube,  # type: ignore[arg-type]
        TRAINING_JOBS,
        parse=Job.parse,
        key=lambda j: j.key,
        revision_of=lambda j: int(j.resource_version),
    )
    await _listed(informer)
    assert kube.tokens == [None, "page-2"]
    assert {name: version_of(informer, name) for name in ("p1", "p2", "p3", "p4")} == {
        "p1": "120", "p2": "41", "p3": "42", "p4": "121"}  # fmt: skip
