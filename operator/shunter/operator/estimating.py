"""The operator's kept plan of start-time estimates (shunter.domain.estimates).

One plan, kept: brought up to date when something changed, at most every
`estimate_every` and at most a fifth of the time (a plan that takes a second waits
five), in a process of its own (shunter.operator.planner: fed the jobs that changed
since the last plan, it keeps its own book and the plan), so at 10,000 queued jobs an
event costs the operator a dirty flag and a key noted, never a simulation, nor the
plan's memory, nor the interpreter's lock. Up to date means `estimates.replan`: kept
as it is when nothing it reads changed (the jobs' own estimates written to status, a
progress report that hardly moves an end), the new jobs placed into it when they only
joined the ends of their queues (the common change under load: submissions),
simulated again in full otherwise, and at least every minute (estimates.REBASE: the
times move on).

The plan goes to two places:
- the mirror (the planner writes it: table queue_plan, one row per install
  (Scope.key), the newest plan only, in two parts: the estimates, which the API
  reads for every view of a queued job, and the timeline, which it reads on the
  first what-if of a plan): the API never simulates;
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
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime

from shunter.domain.estimates import Estimate, Learned
from shunter.domain.model import Job, JobKey
from shunter.kube import KubeError
from shunter.operator.actions import Actions, Fenced
from shunter.operator.book import JobBook
from shunter.operator.mirror import Mirror
from shunter.operator.planner import (
    Answer,
    Ask,
    PlannerGone,
    PlannerProcess,
    Start,
    changed_world,
    plans_of,
)
from shunter.operator.settings import Settings

log = logging.getLogger("shunter.operator.estimating")

# A status estimate is written again when it moved by more than this share of the
# wait left (at least a minute: Estimate.moved).
MOVED = 0.1
REFRESH = 60.0  # seconds: computed again without changes (the times move on)
LEARN_EVERY = 300.0  # seconds between reads of past runtimes from the mirror
SLOWDOWN = 5  # wait at least this many times the last plan's duration
LONG_PLAN = 1.0  # seconds: a plan that took this long is logged


class Estimator:
    def __init__(self, book: JobBook, mirror: Mirror, settings: Settings) -> None:
        self.book, self.mirror, self.settings = book, mirror, settings
        self.planner = PlannerProcess(Start(settings.limits, settings.rules,
                                            settings.database_url, settings.scope.key))  # fmt: skip
        # The last plan's answer: its version, time and the estimates of the jobs
        # asked for (those whose status shows, or may show, one).
        self.answer: Answer | None = None
        self.seconds = 0.0  # the last plan's duration (the changes sent, the answer)
        self.plans = 0
        self.how: dict[str, int] = {}  # plans by how they were brought up to date
        self._changes = 0  # bumped by every informer event (Controller.wake)
        self._planned_changes = -1
        self._planned_at = float("-inf")
        self._written_plan: int | None = 0
        self._learned = Learned()
        self._learned_sent = False  # the planner has these (sent again to a new one)
        self._learned_at = float("-inf")
        self._sent: dict[str, Mapping[str, object]] = {}  # the world as last sent
        self.wake: Callable[[], None] = lambda: None  # the controller's
        book.changed = set(book.jobs)  # the planner hears of every job once

    def touch(self) -> None:
        self._changes += 1

    def _wait(self) -> float:
        return max(self.settings.estimate_every.total_seconds(), SLOWDOWN * self.seconds)

    def due(self, clock: float) -> bool:
        if clock - self._planned_at < self._wait():
            return False
        return self._changes != self._planned_changes or clock - self._planned_at >= REFRESH

    async def run(self, acting: Callable[[], bool]) -> None:
        every = self.settings.estimate_every.total_seconds()
        try:
            while True:
                await asyncio.sleep(min(every, 1.0))
                if not acting() or not self.due(time.monotonic()):
                    continue
                try:
                    await self.refresh()
                except PlannerGone as exc:
                    log.warning("estimates: the planner process ended (%s); starting it again",
                                exc)  # fmt: skip
                except Exception:
                    log.exception("estimates: the plan failed; trying again later")
        finally:
            # At once: a plan under way holds nothing worth waiting for, and the
            # operator hands its Lease over only once its tasks are done.
            self.planner.kill()

    async def refresh(self, now: datetime | None = None) -> Answer:
        clock = time.monotonic()
        self._planned_at, self._planned_changes = clock, self._changes
        if clock - self._learned_at >= LEARN_EVERY:
            self._learned_at = clock
            self._learned = learned_from(await self.mirror.runtimes())
            self._learned_sent = False
        if not self.planner.running:
            self._forget()  # a new planner (or one that died since): everything again
            await self.planner.launch()
        book = self.book
        # What the plan reads, as the book has it at this instant (the objects do not
        # change; sending them awaits the pipe).
        assert book.changed is not None
        jobs = [(key, job if plans_of(job := book.jobs.get(key)) else None)
                for key in book.changed]  # fmt: skip
        book.changed.clear()
        world = {name: values for name, values in (("queues", dict(book.queues)),
                 ("nodes", dict(book.nodes)), ("foreign", dict(book.foreign)))
                 if changed_world(self._sent.get(name), values)}  # fmt: skip
        self._sent.update(world)
        ask = Ask(
            now or datetime.now(UTC),
            dict(book.usage),
            None if self._learned_sent else self._learned,
            [job.key for job in positioned(book, limit=self.settings.rules.exact_positions)],
        )
        try:
            await self.planner.send_jobs(jobs, **world)
            answer = await self.planner.ask(ask)
        except BaseException:
            self._forget()  # a partial send: everything again to a new planner
            raise
        self._learned_sent = True
        self.seconds = time.monotonic() - clock
        self.how[answer.how] = self.how.get(answer.how, 0) + 1
        # A long plan is worth a line (a quick one, under load every few seconds, is not).
        log.log(logging.INFO if self.seconds >= LONG_PLAN else logging.DEBUG,
                "estimates: plan %s in %.1f s (%d jobs sent; the planner's plan %.1f s, %.1f s"
                " of CPU); the next in %.0f s at the earliest", answer.how, self.seconds,
                len(jobs), answer.seconds, answer.cpu_seconds, self._wait())  # fmt: skip
        if answer.error is not None:
            raise RuntimeError(f"the planner's plan failed: {answer.error}")
        if answer.how == "kept":  # nothing the plan reads changed
            return answer
        self.answer, self.plans = answer, self.plans + 1
        self.wake()
        return answer

    def _forget(self) -> None:
        """Send everything again (a new planner, or one that missed changes)."""
        self.planner.kill()
        self.book.changed = set(self.book.jobs)
        self._sent = {}
        self._learned_sent = False

    async def write(self, actions: Actions) -> int:
        """Write the moved estimates of the first jobs of each queue; how many."""
        answer = self.answer
        if answer is None or self._written_plan == self.plans:
            return 0
        assert answer.computed_at is not None
        self._written_plan = self.plans
        shown: dict[JobKey, Estimate | None] = {}
        for job in positioned(self.book, limit=self.settings.rules.exact_positions):
            if job.key in answer.estimates:  # positioned since the plan: the next one
                shown[job.key] = answer.estimates[job.key]
        # Whoever else shows one (fell behind, suspended, cancelled, or written by an
        # earlier leader) loses it (the book keeps who shows one).
        for key in self.book.estimated:
            if key not in shown:
                shown[key] = None
        writes = []
        for key, estimate in shown.items():
            found = self.book.jobs.get(key)
            if found is None or not _moved(found, estimate, now=answer.computed_at):
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


def learned_from(rows: list[tuple[str, str, int, float]]) -> Learned:
    durations: dict[tuple[str, str, int], list[float]] = {}
    for namespace, image, gpus, seconds in rows:
        durations.setdefault((namespace, image, gpus), []).append(seconds)
    return Learned({k: sorted(v) for k, v in durations.items()})
