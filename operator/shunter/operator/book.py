"""The operator's in-memory view of every job and trainer Pod, kept incrementally.

Watch events update the book one object at a time; a reconcile pass then looks only
at what changed (the dirty set and due timers) plus the head of the queue, so a pass
at 10,000 queued jobs costs about what it costs at 100. The book keeps:

- every job, with the status this operator last wrote laid over it until the watch
  shows that write (the resourceVersion the write returned says when): without it, a
  job just admitted would still look queued and be admitted a second time;
- the queued jobs in admission order (a sorted list per queue, updated as jobs enter,
  leave or change priority), the jobs holding a slot, and the queued jobs whose
  status carries an exact position;
- Pods per job, and Pods created but not yet seen (they count as present);
- timers: when a job needs another look even if nothing changes (grace deadlines).

Pure data: no I/O, no clock of its own (times are passed in). Everything runs on the
event loop, so no locks.
"""

from __future__ import annotations

import bisect
import heapq
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime

from shunter.operator.admission import queue_order
from shunter.operator.model import Job, JobKey, JobStatus, PodView

OrderKey = tuple[int, float, int, str, str]


@dataclass(frozen=True)
class _Written:
    uid: str
    resource_version: int
    status: JobStatus
    base: Job  # the job as the watch last showed it


def _number(resource_version: str) -> int:
    try:
        return int(resource_version)
    except ValueError:
        return 0


class JobBook:
    def __init__(self) -> None:
        self.jobs: dict[JobKey, Job] = {}
        self.pods: dict[JobKey, PodView] = {}
        self.active: dict[JobKey, Job] = {}
        self.positioned: set[JobKey] = set()
        self.dirty: set[JobKey] = set()
        self.max_sequence = 0
        self._queue: list[tuple[OrderKey, JobKey]] = []
        self._order: dict[JobKey, OrderKey] = {}
        self._written: dict[JobKey, _Written] = {}
        self._expected: dict[JobKey, float] = {}
        self._timers: list[tuple[datetime, JobKey]] = []
        self._timer_at: dict[JobKey, datetime] = {}

    @classmethod
    def of(cls, jobs: Iterable[Job], pods: Iterable[PodView] = ()) -> JobBook:
        """A book holding these (for tests and tools); every job is dirty."""
        book = cls()
        for job in jobs:
            book.put_job(job)
        for pod in pods:
            book.put_pod(pod)
        return book

    # -- jobs --------------------------------------------------------------------

    def put_job(self, job: Job) -> None:
        """A job as the watch shows it (ADDED or MODIFIED)."""
        written = self._written.get(job.key)
        if written is not None:
            if written.uid != job.uid or _number(job.resource_version) >= written.resource_version:
                del self._written[job.key]
            else:
                self._written[job.key] = replace(written, base=job)
                job = replace(job, status=written.status)
        self._index(job)

    def remove_job(self, key: JobKey) -> None:
        self.jobs.pop(key, None)
        self._written.pop(key, None)
        self._unqueue(key)
        self.active.pop(key, None)
        self.positioned.discard(key)
        self.dirty.discard(key)

    def written(self, job: Job, status: JobStatus, resource_version: str) -> None:
        """This operator wrote status; the watch will show it at resource_version."""
        current = self.jobs.get(job.key)
        if current is None or current.uid != job.uid:
            return  # deleted meanwhile
        previous = self._written.get(job.key)
        base = previous.base if previous is not None else current
        self._written[job.key] = _Written(job.uid, _number(resource_version), status, base)
        self._index(replace(current, status=status))

    def _index(self, job: Job) -> None:
        key = job.key
        self.jobs[key] = job
        self.max_sequence = max(self.max_sequence, job.status.sequence or 0)
        if job.queued and not job.spec.cancelled:
            order = queue_order(job)
            if self._order.get(key) != order:
                self._unqueue(key)
                bisect.insort(self._queue, (order, key))
                self._order[key] = order
        else:
            self._unqueue(key)
        if job.phase is not None and job.phase.holds_slot:
            self.active[key] = job
        else:
            self.active.pop(key, None)
        if job.queued and job.status.queue_position is not None:
            self.positioned.add(key)
        else:
            self.positioned.discard(key)
        self.dirty.add(key)

    def _unqueue(self, key: JobKey) -> None:
        order = self._order.pop(key, None)
        if order is None:
            return
        i = bisect.bisect_left(self._queue, (order, key))
        if i < len(self._queue) and self._queue[i] == (order, key):
            del self._queue[i]

    def waiting(self) -> Iterator[Job]:
        """Queued, not cancelled jobs in admission order."""
        for _, key in self._queue:
            yield self.jobs[key]

    @property
    def queued_count(self) -> int:
        return len(self._queue)

    # -- pods --------------------------------------------------------------------

    def put_pod(self, pod: PodView) -> None:
        key = pod.job_key
        current = self.pods.get(key)
        job = self.jobs.get(key)
        # Two Pods under one job name: the one of the current job (same uid) wins.
        if current is None or current.name == pod.name or (job and pod.job_uid == job.uid):
            self.pods[key] = pod
        self._expected.pop(key, None)
        self.dirty.add(key)

    def remove_pod(self, pod: PodView) -> None:
        key = pod.job_key
        current = self.pods.get(key)
        if current is not None and current.uid == pod.uid:
            del self.pods[key]
        self.dirty.add(key)

    def expect_pod(self, key: JobKey, *, until: float) -> None:
        """A Pod was created and is not seen yet: count it as present until `until`."""
        self._expected[key] = until

    def unobserved(self, *, now: float) -> set[JobKey]:
        for key in [k for k, until in self._expected.items() if until < now]:
            del self._expected[key]
        return set(self._expected)

    # -- what a pass must look at -------------------------------------------------

    def wake_at(self, key: JobKey, at: datetime) -> None:
        """Look at key again at `at` (an earlier pending look is kept; each look
        decides its own next one)."""
        pending = self._timer_at.get(key)
        if pending is not None and pending <= at:
            return
        self._timer_at[key] = at
        heapq.heappush(self._timers, (at, key))

    def next_timer(self) -> datetime | None:
        return self._timers[0][0] if self._timers else None

    def take_due(self, now: datetime) -> set[JobKey]:
        """The dirty jobs plus those whose timers are due; both are cleared."""
        due = self.dirty
        self.dirty = set()
        while self._timers and self._timers[0][0] <= now:
            at, key = heapq.heappop(self._timers)
            if self._timer_at.get(key) == at:
                del self._timer_at[key]
                due.add(key)
        return due

    def mark_all(self) -> None:
        """Every unfinished job needs a look (leadership change, periodic resync)."""
        self.dirty.update(k for k, j in self.jobs.items() if not (j.phase and j.phase.terminal))

    def forget_writes(self) -> None:
        """After a leadership change, what this replica wrote may be stale: back to
        what the watch shows."""
        written, self._written = self._written, {}
        for entry in written.values():
            self._index(entry.base)
        self._expected.clear()
        self.mark_all()
