"""The operator's kept plan of start-time estimates (shunter.domain.estimates).

One plan, kept: brought up to date from the book when something changed, at most
every `estimate_every` and at most a fifth of the time (a plan that takes a second
waits five), off the event loop (a thread, from a snapshot of the book taken on the
loop), so at 10,000 queued jobs an event costs a dirty flag, never a simulation.
Up to date means `estimates.replan`: kept as it is when nothing it reads changed (the
jobs' own estimates written to status, a progress report that hardly moves an end),
the new jobs placed into it when they only joined the ends of their queues (the
common change under load: submissions), simulated again in full otherwise, and at
least every minute (estimates.REBASE: the times move on).

The plan goes to two places:
- the mirror (table queue_plan, one row per install (Scope.key), the newest plan
  only, in two parts: the estimates, which the API reads for every view of a queued
  job, and the timeline, which it reads on the first what-if of a plan): the API
  never simulates;
- the status of the queued jobs the last pass gave an exact position (the first
  `exact_positions` of each queue in the pass's order: fair order in a queue with
  admission fair sharing; `positioned`): `estimatedStart` and `estimatedStartRange`,
  written only when the estimate moved by more than MOVED of the wait left (or its
  reason changed), and removed from any other job whose status shows one (it fell
  behind, left the queue, or an earlier leader wrote it). Written by the controller
  between passes (`write`), so they never race a pass's own status writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import TypeVar

from shunter.domain.estimates import (
    Estimate,
    Learned,
    Plan,
    World,
    estimates_raw,
    replan,
    timeline_raw,
)
from shunter.domain.model import Job, JobKey
from shunter.kube import KubeError
from shunter.operator.actions import Actions, Fenced
from shunter.operator.book import JobBook
from shunter.operator.mirror import Mirror
from shunter.operator.preemption import for_estimates
from shunter.operator.settings import Settings

log = logging.getLogger("shunter.operator.estimating")
T = TypeVar("T")

# A status estimate is written again when it moved by more than this share of the
# wait left (at least a minute: Estimate.moved).
MOVED = 0.1
REFRESH = 60.0  # seconds: computed again without changes (the times move on)
LEARN_EVERY = 300.0  # seconds between reads of past runtimes from the mirror
SLOWDOWN = 5  # wait at least this many times the last plan's duration


class Estimator:
    def __init__(self, book: JobBook, mirror: Mirror, settings: Settings) -> None:
        self.book, self.mirror, self.settings = book, mirror, settings
        self.kept: Plan | None = None
        self.seconds = 0.0  # the last plan's duration
        self.plans = 0
        self.how: dict[str, int] = {}  # plans by how they were brought up to date
        self._changes = 0  # bumped by every informer event (Controller.wake)
        self._planned_changes = -1
        self._planned_at = float("-inf")
        self._written_plan: int | None = 0
        self._learned = Learned()
        self._learned_at = float("-inf")
        self.wake: Callable[[], None] = lambda: None  # the controller's

    def touch(self) -> None:
        self._changes += 1

    def due(self, clock: float) -> bool:
        wait = max(self.settings.estimate_every.total_seconds(), SLOWDOWN * self.seconds)
        if clock - self._planned_at < wait:
            return False
        return self._changes != self._planned_changes or clock - self._planned_at >= REFRESH

    async def run(self, acting: Callable[[], bool]) -> None:
        every = self.settings.estimate_every.total_seconds()
        while True:
            await asyncio.sleep(min(every, 1.0))
            if not acting() or not self.due(time.monotonic()):
                continue
            try:
                await self.refresh()
            except Exception:
                log.exception("estimates: the plan failed; trying again later")

    def world(self, now: datetime) -> World:
        """A snapshot of the book (taken on the event loop; the plan runs in a thread)."""
        book = self.book
        return World(now=now, limits=self.settings.limits, queues=dict(book.queues),
                     nodes=list(book.nodes.values()), foreign=list(book.foreign.values()),
                     active=list(book.active.values()), waiting=list(book.waiting()),
                     usage=dict(book.usage),
                     preempt=for_estimates(self.settings.rules))  # fmt: skip

    async def refresh(self, now: datetime | None = None) -> Plan:
        clock = time.monotonic()
        self._planned_at, self._planned_changes = clock, self._changes
        if clock - self._learned_at >= LEARN_EVERY:
            self._learned_at = clock
            self._learned = learned_from(await self.mirror.runtimes())
        world = self.world(now or datetime.now(UTC))
        kept, how, body = await in_daemon_thread(_plan_and_dump, self.kept, world,
                                                 self._learned)  # fmt: skip
        self.seconds = time.monotonic() - clock
        self.how[how] = self.how.get(how, 0) + 1
        if body is None:  # nothing the plan reads changed
            return kept
        self.kept, self.plans = kept, self.plans + 1
        self.mirror.publish_plan(kept.version, *body)
        self.wake()
        return kept

    async def write(self, actions: Actions) -> int:
        """Write the moved estimates of the first jobs of each queue; how many."""
        kept = self.kept
        if kept is None or self._written_plan == self.plans:
            return 0
        self._written_plan = self.plans
        shown: dict[JobKey, Estimate | None] = {
            job.key: kept.estimate(job.key)
            for job in positioned(self.book, limit=self.settings.rules.exact_positions)
        }
        # Whoever else shows one (fell behind, suspended, cancelled, or written by an
        # earlier leader) loses it (the book keeps who shows one).
        for key in self.book.estimated:
            if key not in shown:
                shown[key] = None
        writes = []
        for key, estimate in shown.items():
            found = self.book.jobs.get(key)
            if found is None or not _moved(found, estimate, now=kept.computed_at):
                continue
            if key in self.book.in_flight:  # the pass's own write first: try again next time
                self._written_plan = None
                continue
            writes.append(self._write(actions, found, estimate))
        return sum(await asyncio.gather(*writes))

    async def _write(self, actions: Actions, job: Job, estimate: Estimate | None) -> int:
        status = replace(job.status, estimated_start=estimate.start if estimate else None,
                         estimated_range=estimate.range() if estimate else None)  # fmt: skip
        before, after = job.status.to_raw(), status.to_raw()
        patch = {k: after[k] for k in ("estimatedStart", "estimatedStartRange")
                 if before.get(k) != after[k]}  # fmt: skip
        try:
            body = await actions.patch_job_status(job.key, patch, version=job.resource_version)
        except (KubeError, Fenced) as exc:
            log.debug("job %s: estimate not written: %s", job.key, exc)
            return 0  # a newer version comes with the next plan
        self.book.written(job, status, str(body["metadata"]["resourceVersion"]))
        return 1


def positioned(book: JobBook, *, limit: int) -> list[Job]:
    """The queued jobs whose status shows an exact position of at most `limit`, as the
    last pass wrote them: the jobs whose status shows an estimate too. One owner of
    "the first jobs of each queue": the pass's walk, in its queue's order (with
    admission fair sharing that is fair order, not submission order)."""
    found = (book.jobs.get(key) for key in book.positioned)
    return [
        job
        for job in found
        if job is not None and job.queued and (job.status.queue_position or 0) <= limit
    ]


def _moved(job: Job, estimate: Estimate | None, *, now: datetime) -> bool:
    shown = Estimate.shown(job.status)
    if estimate is None or shown is None:
        return (estimate is None) != (shown is None)
    return estimate.moved(shown, now=now, threshold=MOVED)


async def in_daemon_thread(fn: Callable[..., T], *args: object) -> T:
    """fn(*args) in a thread of its own that the process's exit does not wait for
    (asyncio.to_thread's executor is joined when the loop closes: an operator told to
    stop in the middle of a long plan would wait for it, and its Lease with it)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)  # type: ignore[arg-type]

    def run() -> None:
        try:
            result, error = fn(*args), None
        except BaseException as exc:  # handed to the awaiting task
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits it
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=run, name=f"shunter-{fn.__name__}", daemon=True).start()
    return await done


def _plan_and_dump(kept: Plan | None, world: World,
                   learned: Learned) -> tuple[Plan, str, tuple[str, str] | None]:  # fmt: skip
    """The plan brought up to date, how, and its two published parts (JSON)."""
    found, how = replan(kept, world, learned=learned)
    if how == "kept":
        return found, how, None
    return found, how, dump(found)


def dump(kept: Plan) -> tuple[str, str]:
    """The published plan: its estimates and its timeline (shunter.domain.estimates)."""
    return (json.dumps(estimates_raw(kept), separators=(",", ":")),
            json.dumps(timeline_raw(kept), separators=(",", ":")))  # fmt: skip


def learned_from(rows: list[tuple[str, str, int, float]]) -> Learned:
    durations: dict[tuple[str, str, int], list[float]] = {}
    for namespace, image, gpus, seconds in rows:
        durations.setdefault((namespace, image, gpus), []).append(seconds)
    return Learned({k: sorted(v) for k, v in durations.items()})
