"""What the API serves reads from: watch-backed caches of TrainingJobs and their Events.

Two informers (shunter.kube.informer): every TrainingJob in scope, and every Event
about a TrainingJob, indexed by job. GET /status, /events, /live and /queue answer
from them; the order of the queue is derived once per change of the job cache.

Reading your own writes: after a submit or a cancel the API waits (event-driven,
bounded) until the job cache has applied the resourceVersion its write returned, so
the next GET from the same client sees the write. A read of a job the cache does not
hold falls back to a live GET, so "not found" is always the API server's answer.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

from shunter.kube import Body, Informer, Kube
from shunter.kube.events import JOB_EVENTS_SELECTOR, event_time
from shunter.kube.resources import EVENTS, NODES, TRAINING_JOBS, TRAINING_QUEUES
from shunter.operator import admission
from shunter.operator.capacity import Capacity
from shunter.operator.model import Job, JobKey
from shunter.operator.nodes import NodeView
from shunter.operator.queues import QueueView as QueueSpec

# How long a write waits for the cache to show it before answering anyway.
READ_YOUR_WRITES_SECONDS = 5.0


def ordered(jobs: list[Job]) -> tuple[list[Job], list[Job]]:
    """Slot holders (by admission time) and waiting jobs (in admission order)."""
    active = sorted(
        (j for j in jobs if j.phase is not None and j.phase.holds_slot),
        key=lambda j: (j.status.admitted_at or j.created_at, j.key.name),
    )
    return active, admission.waiting(jobs)


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
            kube, TRAINING_JOBS, namespace=namespace, parse=Job.parse, key=lambda j: j.key
        )
        self._events_of: dict[JobKey, set[str]] = defaultdict(set)
        self.events: Informer[str, SeenEvent] = Informer(
            kube, EVENTS, namespace=namespace, field_selector=JOB_EVENTS_SELECTOR,
            parse=SeenEvent.parse, key=lambda event: event.uid, on_change=self._index_event,
        )  # fmt: skip
        self._ordered: dict[str, tuple[int, list[Job], list[Job]]] = {}
        # Nodes, only to tell a submitter that a job fits no node (optional: an API
        # without the permission to read Nodes says nothing about it).
        self.nodes: Informer[str, NodeView] = Informer(
            kube, NODES, parse=NodeView.parse, key=lambda node: node.name, optional=True
        )
        # TrainingQueues, for GET /queue's usage per queue (optional like the nodes).
        self.queues: Informer[str, QueueSpec] = Informer(
            kube, TRAINING_QUEUES, parse=QueueSpec.parse, key=lambda q: q.name, optional=True
        )

    def start(self) -> None:
        self.jobs.start()
        self.events.start()
        self.nodes.start()
        self.queues.start()

    async def stop(self) -> None:
        await self.jobs.stop()
        await self.events.stop()
        await self.nodes.stop()
        await self.queues.stop()

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

    def ordered(self, namespace: str) -> tuple[list[Job], list[Job]]:
        """Slot holders and waiting jobs in order, recomputed only when the cache changed."""
        version = self.jobs.version
        cached = self._ordered.get(namespace)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        active, waiting = ordered(self.in_namespace(namespace))
        self._ordered[namespace] = (version, active, waiting)
        return active, waiting

    async def caught_up(self, namespace: str, resource_version: str) -> None:
        """Wait (bounded) until the cache shows a write that returned resource_version."""
        if self.covers(namespace):
            await self.jobs.wait_version(resource_version, within=READ_YOUR_WRITES_SECONDS)

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
