"""What the API serves reads from: watch-backed caches of TrainingJobs and their Events.

Two informers (shunter.kube.informer): every TrainingJob in scope, and every Event
about a TrainingJob, indexed by job. GET /status, /events, /live and /queue answer
from them. The queue's order is kept as the watch delivers changes (one
`admission.QueueOrder` per namespace, the operator's own structure): GET /queue reads
the head of it, and nothing is sorted again per change, at 50,000 jobs as at 50.

Reading your own writes: after a submit or a cancel the API offers the object its
write returned to the job cache, which applies it at once when it is newer than what
the cache holds (shunter.kube.informer `offer`), so the next GET from the same
client sees the write without waiting for the watch to deliver it. Where the cache
cannot order versions, the API waits instead (event-driven, bounded) until the watch
has delivered the resourceVersion its write returned. A read of a job the cache does not
hold falls back to a live GET, so "not found" is always the API server's answer.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from shunter.api.shares import QueueFairness
from shunter.domain import admission
from shunter.domain.capacity import Capacity
from shunter.domain.model import Job, JobKey, revision
from shunter.domain.nodes import NodeView
from shunter.domain.queues import QueueView as QueueSpec
from shunter.kube import Body, Informer, Kube
from shunter.kube.events import JOB_EVENTS_SELECTOR, event_time
from shunter.kube.resources import EVENTS, NODES, TRAINING_JOBS, TRAINING_QUEUES

# How long a write waits for the cache to show it before answering anyway.
READ_YOUR_WRITES_SECONDS = 5.0


def by_admission(jobs: Iterable[Job]) -> list[Job]:
    """Slot holders in the order they were admitted."""
    return sorted(jobs, key=lambda j: (j.status.admitted_at or j.created_at, j.key.name))


@dataclass(frozen=True)
class Lineup:
    """A namespace's slot holders and the head of its queue (in admission order)."""

    active: list[Job]
    head: list[Job]  # the first waiting jobs, at most the limit asked for
    waiting_count: int
    waiting_by_queue: dict[str, int]

    @classmethod
    def of(cls, jobs: Iterable[Job], *, limit: int, queue: str | None = None) -> Lineup:
        """From a list of jobs (a live LIST), sorted once."""
        mine = [j for j in jobs if queue is None or j.spec.queue == queue]
        waiting = admission.waiting(mine)
        counts: dict[str, int] = defaultdict(int)
        for job in waiting:
            counts[job.spec.queue] += 1
        return cls(by_admission(j for j in mine if j.holds_slot), waiting[:limit], len(waiting),
                   dict(counts))  # fmt: skip


@dataclass(frozen=True, slots=True)
class SeenEvent:
    """What the API serves of an Event (the whole object is ten times the memory, and
    Events outlive their jobs by an hour: at thousands of jobs that is most of the
    API's heap)."""

    uid: str
    job: JobKey
    job_uid: str | None
    type: str | None
    reason: str | None
    message: str | None
    time: str | None
    count: int

    @classmethod
    def parse(cls, body: Body) -> SeenEvent:
        involved = body.get("involvedObject") or {}
        return cls(
            uid=str(body["metadata"]["uid"]),
            job=JobKey(str(involved.get("namespace", "")), str(involved.get("name", ""))),
            job_uid=involved.get("uid"),
            type=body.get("type"),
            reason=body.get("reason"),
            message=body.get("message"),
            time=event_time(body),
            count=body.get("count") or 1,
        )


class JobCache:
    def __init__(self, kube: Kube, *, namespace: str | None) -> None:
        self.namespace = namespace
        self.jobs: Informer[JobKey, Job] = Informer(
            kube, TRAINING_JOBS, namespace=namespace, parse=Job.parse, key=lambda j: j.key,
            on_change=self._index_job, revision_of=lambda j: revision(j.resource_version),
        )  # fmt: skip
        # Per namespace: the waiting jobs in admission order, and the slot holders.
        self._waiting: dict[str, admission.QueueOrder] = defaultdict(admission.QueueOrder)
        self._active: dict[str, dict[JobKey, Job]] = defaultdict(dict)
        self._events_of: dict[JobKey, set[str]] = defaultdict(set)
        # Who names whom in spec.dependsOn (a job's downstream, shunter.api.lineage).
        self._upstreams: dict[JobKey, tuple[JobKey, ...]] = {}
        self._dependents: dict[JobKey, set[JobKey]] = defaultdict(set)
        self.events: Informer[str, SeenEvent] = Informer(
            kube, EVENTS, namespace=namespace, field_selector=JOB_EVENTS_SELECTOR,
            parse=SeenEvent.parse, key=lambda event: event.uid, on_change=self._index_event,
        )  # fmt: skip
        # Nodes, only to tell a submitter that a job fits no node (optional: an API
        # without the permission to read Nodes says nothing about it).
        self.nodes: Informer[str, NodeView] = Informer(
            kube, NODES, parse=NodeView.parse, key=lambda node: node.name, optional=True
        )
        # TrainingQueues, for GET /queue's usage per queue (optional like the nodes).
        self.queues: Informer[str, QueueSpec] = Informer(
            kube, TRAINING_QUEUES, parse=QueueSpec.parse, key=lambda q: q.name, optional=True
        )
        # The same TrainingQueues as GET /shares reads them: their fair-sharing fields,
        # parsed defensively (shunter.api.shares). A handful of objects: a second
        # watch costs less than widening the shared domain parser.
        self.fairness: Informer[str, QueueFairness] = Informer(
            kube, TRAINING_QUEUES, parse=QueueFairness.parse, key=lambda q: q.name,
            optional=True,
        )  # fmt: skip
        # Told of every job change after the cache applied it (the usage metrics).
        self.listeners: list[Callable[[str, Job], None]] = []

    def start(self) -> None:
        self.jobs.start()
        self.events.start()
        self.nodes.start()
        self.queues.start()
        self.fairness.start()

    async def stop(self) -> None:
        await self.jobs.stop()
        await self.events.stop()
        await self.nodes.stop()
        await self.queues.stop()
        await self.fairness.stop()

    def never_fits(self, job: Job) -> str | None:
        """Why no node could ever hold the job's Pods (None: some could, or unknown)."""
        if not self.nodes.store:
            return None
        return Capacity.build(self.nodes.store.values(), (), ()).never_fits(job)

    @property
    def synced(self) -> bool:
        return self.jobs.synced.is_set() and self.events.synced.is_set()

    def covers(self, namespace: str) -> bool:
        return self.namespace in (None, namespace)

    def count(self) -> int:
        return len(self.jobs)

    # -- jobs --------------------------------------------------------------------

    def get(self, key: JobKey) -> Job | None:
        return self.jobs.get(key) if self.covers(key.namespace) else None

    def in_namespace(self, namespace: str) -> list[Job]:
        return [j for j in self.jobs.store.values() if j.key.namespace == namespace]

    def _index_job(self, kind: str, job: Job) -> None:
        for listener in self.listeners:
            listener(kind, job)
        namespace, key = job.key.namespace, job.key
        if job.spec.depends_on or key in self._upstreams:
            names = () if kind == "DELETED" else job.spec.depends_on
            self._link(key, tuple(JobKey(namespace, d.name) for d in names))
        if kind == "DELETED":
            self._waiting[namespace].remove(key)
            self._active[namespace].pop(key, None)
            return
        self._waiting[namespace].put(job)
        if job.holds_slot:
            self._active[namespace][key] = job
        else:
            self._active[namespace].pop(key, None)

    def _link(self, key: JobKey, upstreams: tuple[JobKey, ...]) -> None:
        for up in self._upstreams.pop(key, ()):
            self._dependents[up].discard(key)
            if not self._dependents[up]:
                del self._dependents[up]
        for up in upstreams:
            self._dependents[up].add(key)
        if upstreams:
            self._upstreams[key] = upstreams

    def dependents(self, key: JobKey) -> list[Job]:
        """The jobs whose spec.dependsOn names key (all of its namespace)."""
        found = (self.jobs.store.get(k) for k in self._dependents.get(key, ()))
        return [j for j in found if j is not None]

    def lineup(self, namespace: str, *, limit: int, queue: str | None = None) -> Lineup:
        """The namespace's slot holders and the first `limit` waiting jobs, from the
        kept order (of one queue, or of all merged)."""
        active = self._active.get(namespace, {}).values()
        order = self._waiting.get(namespace) or admission.QueueOrder()
        keys = itertools.islice(order.keys(queue), limit)
        counts = order.counts()
        return Lineup(
            active=by_admission(j for j in active if queue is None or j.spec.queue == queue),
            head=[self.jobs.store[key] for key in keys],
            waiting_count=order.count(queue),
            waiting_by_queue=counts if queue is None else {queue: counts.get(queue, 0)},
        )

    def holders(self) -> list[Job]:
        """Every slot holder in scope (a TrainingQueue's quota spans namespaces)."""
        return [job for active in self._active.values() for job in active.values()]

    def waiting_by_queue(self) -> dict[str, int]:
        """Waiting jobs per queue, over every namespace in scope."""
        counts: dict[str, int] = defaultdict(int)
        for order in self._waiting.values():
            for name, count in order.counts().items():
                counts[name] += count
        return dict(counts)

    async def caught_up(self, namespace: str, resource_version: str) -> None:
        """Wait (bounded) until the cache shows a write that returned resource_version."""
        if self.covers(namespace):
            await self.jobs.wait_version(resource_version, within=READ_YOUR_WRITES_SECONDS)

    async def written(self, job: Job) -> None:
        """The job as a write of this API returned it: shown at once (offered to the
        cache), else waited for as the watch delivers it."""
        if not self.covers(job.key.namespace):
            return
        if not self.jobs.offer(job):
            await self.caught_up(job.key.namespace, job.resource_version)

    async def until(
        self, key: JobKey, predicate: Callable[[Job | None], bool], *, within: float
    ) -> bool:
        """Wait until the cached job satisfies predicate (woken by the watch, no polling)."""
        if not self.covers(key.namespace):
            return False
        return await self.jobs.wait_until(key, predicate, within=within)

    # -- events ------------------------------------------------------------------

    def _index_event(self, kind: str, event: SeenEvent) -> None:
        if kind == "DELETED":
            self._events_of[event.job].discard(event.uid)
            if not self._events_of[event.job]:
                del self._events_of[event.job]
        else:
            self._events_of[event.job].add(event.uid)

    def events_of(self, job: Job) -> list[SeenEvent]:
        """Events about this job (not an earlier job of the same name)."""
        uids = self._events_of.get(job.key, set())
        events = (self.events.get(uid) for uid in uids)
        return [e for e in events if e is not None and e.job_uid == job.uid]
