"""The serialized reconcile loop: one pass over all jobs at a time, on the leader only.

kopf's handlers only wake this loop (and feed the mirror); the loop reads kopf's
indexes (populated in full before any handler runs, so a restarted operator sees
every job before deciding anything), asks `planning.plan_pass` what to do and does it.
Running passes one at a time is what makes admission safe: parallel per-job
"if running < limit then start" checks would over-admit.

Two memories cover the lag between a write and its watch event:
- `_written`: the status this operator last wrote per job. The operator is the only
  writer of status, so until the index shows that status the written one is the
  truth (without it, a job just admitted would still look queued and be admitted a
  second time, over the limit).
- `_expected`: Pods created but not yet seen; they count as present (neither
  created twice nor reported vanished) until seen or until EXPECTATION_TTL passes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from shunter.operator.decisions import Decision, Event
from shunter.operator.kube import Invalid, Kube, KubeError, NotFound
from shunter.operator.model import Job, JobKey, JobStatus, Phase, PodView
from shunter.operator.planning import plan_pass
from shunter.operator.settings import Settings

log = logging.getLogger("shunter.operator")

EXPECTATION_TTL = 30.0
RETRY_AFTER_ERROR = 2.0
CONCURRENCY = 32
EVENT_BACKLOG = 10_000
EVENT_WORKERS = 4


Index = Mapping[JobKey, Iterable[Any]]


def status_patch(old: JobStatus, new: JobStatus) -> dict[str, Any]:
    """A merge patch turning old into new (None deletes a field)."""
    before, after = old.to_raw(), new.to_raw()
    return {k: v for k, v in after.items() if before.get(k) != v}


@dataclass
class _Written:
    uid: str
    status: JobStatus


class Controller:
    def __init__(self, kube: Kube, settings: Settings) -> None:
        self.kube = kube
        self.settings = settings
        self.leader: Callable[[], bool] = lambda: True
        self._jobs: Index | None = None
        self._pods: Index | None = None
        self._wake = asyncio.Event()
        self._written: dict[JobKey, _Written] = {}
        self._expected: dict[JobKey, float] = {}
        self._next_sequence: int | None = None
        self._semaphore = asyncio.Semaphore(CONCURRENCY)
        # Events are posted off the reconcile path: a slow or failing Event never
        # delays the next decision. A job's Events always go to the same worker, so
        # they are posted in the order decided; each carries the time it was decided.
        self._events: list[asyncio.Queue[tuple[Job, Event, datetime]]] = [
            asyncio.Queue(maxsize=EVENT_BACKLOG // EVENT_WORKERS) for _ in range(EVENT_WORKERS)
        ]
        self._last_event_at = datetime.min.replace(tzinfo=UTC)
        self.last_pass = time.monotonic()
        self.passes = 0

    # -- inputs ----------------------------------------------------------------

    def attach(self, jobs: Index, pods: Index) -> None:
        """Called by every handler with kopf's live indexes (the same objects each time)."""
        self._jobs, self._pods = jobs, pods
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    def forget(self) -> None:
        """Drop write memories: after a leadership change they may be stale."""
        self._written.clear()
        self._expected.clear()
        self._next_sequence = None
        self._wake.set()

    def _current_jobs(self) -> list[Job]:
        assert self._jobs is not None
        jobs = []
        for key, store in list(self._jobs.items()):
            for job in store:
                written = self._written.get(key)
                if written is not None and written.uid == job.uid:
                    if written.status == job.status:
                        del self._written[key]
                    else:
                        job = replace(job, status=written.status)
                jobs.append(job)
                break
        live = {job.key for job in jobs}
        for key in [k for k in self._written if k not in live]:
            del self._written[key]
        return jobs

    def _current_pods(self, jobs: list[Job]) -> dict[JobKey, PodView]:
        assert self._pods is not None
        uids = {job.key: job.uid for job in jobs}
        pods: dict[JobKey, PodView] = {}
        for key, store in list(self._pods.items()):
            candidates = list(store)
            own = [p for p in candidates if p.job_uid == uids.get(key)]
            if own or candidates:
                pods[key] = (own or candidates)[0]
        now = time.monotonic()
        for key in list(self._expected):
            if key in pods or self._expected[key] < now:
                del self._expected[key]
        return pods

    # -- the loop --------------------------------------------------------------

    async def run(self) -> None:
        timeout = self.settings.resync.total_seconds()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)
            self._wake.clear()
            timeout = self.settings.resync.total_seconds()
            if self._jobs is None or self._pods is None or not self.leader():
                continue
            try:
                wake_at = await self.reconcile_once()
            except Exception:
                log.exception("reconcile pass failed; retrying")
                wake_at = None
                timeout = RETRY_AFTER_ERROR
            if wake_at is not None:
                delay = (wake_at - datetime.now(UTC)).total_seconds()
                timeout = max(0.05, min(timeout, delay))

    async def reconcile_once(self) -> datetime | None:
        jobs = self._current_jobs()
        pods = self._current_pods(jobs)
        if self._next_sequence is None:
            self._next_sequence = 1 + max((j.status.sequence or 0 for j in jobs), default=0)
        result = plan_pass(
            jobs,
            pods,
            now=datetime.now(UTC),
            limits=self.settings.limits,
            grace_margin=self.settings.grace_margin,
            unobserved=set(self._expected),
            next_sequence=self._next_sequence,
            exact_positions=self.settings.exact_positions,
        )
        self._next_sequence = result.next_sequence
        by_key = {job.key: job for job in jobs}
        outcomes = await asyncio.gather(
            *(self._carry_out(by_key[key], d) for key, d in result.decisions.items())
        )
        self.last_pass = time.monotonic()
        self.passes += 1
        if not all(outcomes):
            self._wake.set()
        return result.wake_at

    # -- outputs ---------------------------------------------------------------

    async def _carry_out(self, job: Job, decision: Decision) -> bool:
        """Status first (the step is recorded before it is taken), then the Pod call.

        The decision's log lines go out before either, so whoever sees the new
        status (a client polling for `cancelled`) finds them already in the log.
        """
        async with self._semaphore:
            for line in decision.logs:
                log.info(line)
            try:
                await self._write_status(job, decision.status)
                if decision.create_pod is not None:
                    await self._create_pod(job, decision)
                if decision.delete_pod is not None:
                    target = decision.delete_pod
                    await self.kube.delete_pod(
                        target.namespace, target.name, grace_seconds=target.grace_seconds
                    )
            except NotFound:
                return True  # the job was deleted meanwhile; its Pod goes with it
            except KubeError as exc:
                log.warning("job %s: %s (will retry)", job.key, exc)
                return False
            if decision.released:
                log.info("[Slot] Job %s released its slot (%s)", job.key, decision.status.phase)
            events = self._events[hash(job.key) % EVENT_WORKERS]
            for event in decision.events:
                try:
                    events.put_nowait((job, event, self._event_time()))
                except asyncio.QueueFull:
                    log.warning("job %s: event %s dropped (backlog full)", job.key, event.reason)
            return True

    def _event_time(self) -> datetime:
        """Now, but strictly after the previous Event (two Events of one decision
        must not tie, or `kubectl describe` could list them in either order)."""
        at = max(datetime.now(UTC), self._last_event_at + timedelta(microseconds=1))
        self._last_event_at = at
        return at

    async def post_events(self, worker: int) -> None:
        """Post the Events of worker's queue, in the order they were decided."""
        events = self._events[worker]
        while True:
            job, event, at = await events.get()
            try:
                await self.kube.post_event(job.key, job.uid, event, at=at)
            except KubeError as exc:
                log.warning("job %s: event %s not posted: %s", job.key, event.reason, exc)

    async def _write_status(self, job: Job, status: JobStatus) -> None:
        patch = status_patch(job.status, status)
        if not patch:
            return
        await self.kube.patch_job_status(job.key, patch)
        # The mirror is fed by the watch event of this write (handlers.job_event).
        self._written[job.key] = _Written(job.uid, status)

    async def _create_pod(self, job: Job, decision: Decision) -> None:
        assert decision.create_pod is not None
        try:
            await self.kube.create_pod(decision.create_pod)
        except Invalid as exc:
            # The API server will never accept this Pod: fail the job, do not retry.
            failed = replace(
                decision.status,
                phase=Phase.FAILED,
                reason="PodRejected",
                message=f"The trainer Pod was rejected by the API server: {exc}",
                completed_at=datetime.now(UTC),
            )
            await self._write_status(replace(job, status=decision.status), failed)
            return
        self._expected[job.key] = time.monotonic() + EXPECTATION_TTL
