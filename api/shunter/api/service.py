"""What each endpoint does, between the HTTP layer and the cluster.

Routes authenticate and call one method here; these methods raise domain errors
(shunter.api.errors) and never build HTTP responses themselves.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

from shunter.api.cancelling import CancelOutcome, decide_cancel
from shunter.api.cluster import Cluster, ClusterError, Conflict, JobCache, NotFound, Rejected
from shunter.api.errors import AlreadyExists, InvalidJob, Unavailable
from shunter.api.errors import NotFound as JobNotFound
from shunter.api.history import History
from shunter.api.schemas import JobCreate, JobEvent, JobList, JobPublic, QueueView
from shunter.api.settings import ApiSettings
from shunter.operator import admission
from shunter.operator.model import API_VERSION, KIND, Job, JobKey

CANCEL_RETRIES = 5


def manifest_of(request: JobCreate, *, default_image: str) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "image": request.image or default_image,
        "gpus": request.gpus,
        "priority": request.priority,
        "queue": request.queue,
        "terminationGracePeriodSeconds": request.termination_grace_period_seconds,
    }
    optional = {
        "command": request.command or None,
        "args": request.args or None,
        "env": [{"name": k, "value": v} for k, v in request.env.items()] or None,
        "cpu": request.cpu,
        "memory": request.memory,
        "maxRuntimeSeconds": request.max_runtime_seconds,
        "checkpoint": {"claimName": request.checkpoint_claim} if request.checkpoint_claim else None,
        "nodeSelector": dict(request.node_selector) or None,
        "tolerations": [t.model_dump(exclude_none=True) for t in request.tolerations] or None,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    if request.pod_labels or request.pod_annotations:
        spec["podMetadata"] = {
            "labels": dict(request.pod_labels),
            "annotations": dict(request.pod_annotations),
        }
    name = request.name or f"job-{uuid.uuid4().hex[:10]}"
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": {"name": name}, "spec": spec}


class TrainingService:
    def __init__(
        self, cluster: Cluster, cache: JobCache, history: History, settings: ApiSettings
    ) -> None:
        self.cluster = cluster
        self.cache = cache
        self.history = history
        self.settings = settings
        self._queue_cache: dict[str, tuple[int, list[Job], list[Job]]] = {}

    def _live(self, key: JobKey) -> Job | None:
        """The job as the API server has it now (and the cache learns it too)."""
        try:
            return self.cache.put(self.cluster.get_job(key))
        except NotFound:
            return None
        except ClusterError as exc:
            raise Unavailable(f"Kubernetes API unavailable: {exc}") from exc

    def submit(self, request: JobCreate, *, namespace: str) -> Job:
        manifest = manifest_of(request, default_image=self.settings.default_image)
        try:
            body = self.cluster.create_job(namespace, manifest)
        except Rejected as exc:
            raise InvalidJob(f"The job was rejected: {_reason(exc)}") from exc
        except Conflict as exc:
            name = manifest["metadata"]["name"]
            raise AlreadyExists(f"A job named {name!r} already exists") from exc
        except NotFound as exc:
            raise JobNotFound(f"Namespace {namespace!r} not found") from exc
        except ClusterError as exc:
            raise Unavailable(f"Kubernetes API unavailable: {exc}") from exc
        return self.cache.put(body)

    def status(self, key: JobKey) -> Job:
        job = self._live(key)
        if job is None:
            raise JobNotFound("Job not found")
        return job

    def _ordered(self, namespace: str) -> tuple[list[Job], list[Job]]:
        """Slot holders and waiting jobs in order, recomputed only when the cache changed."""
        version = self.cache.version
        cached = self._queue_cache.get(namespace)
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        jobs = self.cache.jobs(namespace)
        active = sorted(
            (j for j in jobs if j.phase is not None and j.phase.holds_slot),
            key=lambda j: (j.status.admitted_at or j.created_at, j.key.name),
        )
        waiting = admission.waiting(jobs)
        self._queue_cache[namespace] = (version, active, waiting)
        return active, waiting

    def queue(self, namespace: str, *, limit: int = 100) -> QueueView:
        active, waiting = self._ordered(namespace)
        return QueueView(
            namespace=namespace,
            running_count=len(active),
            queued_count=len(waiting),
            running=[JobPublic.of(j) for j in active],
            # Positions from the live order: status carries only the first few.
            queued=[
                JobPublic.of(j).model_copy(update={"queue_position": i})
                for i, j in enumerate(waiting[:limit], start=1)
            ],
        )

    def live(self, namespace: str, *, limit: int) -> JobList:
        """Slot holders, then the queue in order, then the rest newest first: a long
        running job never drops out of the first `limit` behind newer finished ones."""
        active, waiting = self._ordered(namespace)
        current = {j.key for j in active} | {j.key for j in waiting}
        jobs = self.cache.jobs(namespace)
        rest = sorted(
            (j for j in jobs if j.key not in current),
            key=lambda j: (j.created_at, j.key.name),
            reverse=True,
        )
        items = [JobPublic.of(j) for j in active[:limit]]
        items += [
            JobPublic.of(j).model_copy(update={"queue_position": i})
            for i, j in enumerate(waiting[: limit - len(items)], start=1)
        ]
        items += [JobPublic.of(j) for j in rest[: limit - len(items)]]
        return JobList(
            namespace=namespace,
            count=len(jobs),
            running_count=len(active),
            queued_count=len(waiting),
            items=items,
        )

    def events(self, key: JobKey) -> list[JobEvent]:
        if self._live(key) is None:
            raise JobNotFound("Job not found")
        try:
            return [JobEvent(**row) for row in self.cluster.job_events(key)]
        except ClusterError as exc:
            raise Unavailable(f"Kubernetes API unavailable: {exc}") from exc

    def cancel(self, key: JobKey) -> CancelOutcome:
        """Decide on the live job; patch only if it is unchanged since the read."""
        for _ in range(CANCEL_RETRIES):
            job = self._live(key)
            outcome = decide_cancel(job)
            if not outcome.send_patch or job is None:
                return outcome
            try:
                body = self.cluster.request_cancel(key, resource_version=job.resource_version)
            except Conflict:
                continue  # it changed (finished, admitted...) meanwhile: decide again
            except NotFound:
                return decide_cancel(None)
            except Rejected as exc:
                raise InvalidJob(f"Cancel rejected: {_reason(exc)}") from exc
            except ClusterError as exc:
                raise Unavailable(f"Kubernetes API unavailable: {exc}") from exc
            self.cache.put(body)
            return outcome
        raise Unavailable("The job kept changing; try again")

    async def await_final(self, key: JobKey) -> None:
        """Give the operator a moment to finish, so a second cancel sees `cancelled`.

        Waits on the event loop (a cache lookup every 50 ms), not in a worker thread:
        a burst of cancels must not take the threads every other request needs.
        """
        deadline = time.monotonic() + self.settings.cancel_wait_seconds
        while time.monotonic() < deadline:
            current = self.cache.get(key)
            if current is None or (current.phase is not None and current.phase.terminal):
                return
            await asyncio.sleep(0.05)


def _reason(exc: ClusterError) -> str:
    """The API server's own message from a Status body."""
    try:
        return str(json.loads(exc.body).get("message", exc))
    except (ValueError, AttributeError):
        return str(exc)
