"""Chainable builders: `a_training_job("j1").with_gpus(2).running_for("30s")`.

One builder serves both kinds of test: `.manifest()` is the body to create on a
cluster, `.job()` the parsed view (with metadata and status) for the pure decision
code.
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

from shunter.api.appraisal import Appraisal
from shunter.domain.model import (
    API_VERSION,
    CANCELLED_BY,
    KIND,
    SUBMITTED_BY,
    Job,
    PodView,
    format_time,
)
from shunter.domain.nodes import NodeView, Resources, Taint
from shunter.domain.queues import QueueView


class TrainingJobBuilder:
    def __init__(self, name: str, namespace: str = "default") -> None:
        self._name = name
        self._namespace = namespace
        self._spec: dict[str, Any] = {"image": "shunter/trainer:test", "gpus": 1}
        self._status: dict[str, Any] = {}
        self._reports: dict[str, Any] = {}  # status.progress and status.checkpoint
        self._annotations: dict[str, str] = {}
        self._created = datetime(2026, 1, 1, tzinfo=UTC)
        self._uid = str(uuid.uuid4())

    def _pod_meta(self, kind: str, key: str, value: str) -> TrainingJobBuilder:
        meta = self._spec.setdefault("podMetadata", {})
        meta.setdefault(kind, {})[key] = value
        return self

    def with_gpus(self, gpus: int) -> TrainingJobBuilder:
        self._spec["gpus"] = gpus
        return self

    def with_priority(self, priority: int) -> TrainingJobBuilder:
        self._spec["priority"] = priority
        return self

    def with_grace(self, seconds: int) -> TrainingJobBuilder:
        self._spec["terminationGracePeriodSeconds"] = seconds
        return self

    def with_spec(self, **fields: Any) -> TrainingJobBuilder:
        self._spec.update(fields)
        return self

    def running_for(self, duration: str) -> TrainingJobBuilder:
        """On kwok, the Pod succeeds after this long."""
        return self._pod_meta("annotations", "sim.shunter.dev/run-for", duration)

    def failing_after(self, duration: str) -> TrainingJobBuilder:
        return self._pod_meta("annotations", "sim.shunter.dev/fail-after", duration)

    def hanging_on_delete(self) -> TrainingJobBuilder:
        """On kwok, a graceful delete of the Pod never finishes."""
        return self._pod_meta("labels", "sim.shunter.dev/hang-on-delete", "true")

    def cancelled(self, *, by: str | None = None) -> TrainingJobBuilder:
        self._spec["cancelled"] = True
        if by is not None:
            self._annotations[CANCELLED_BY] = by
        return self

    def submitted_by(self, user: str) -> TrainingJobBuilder:
        self._annotations[SUBMITTED_BY] = user
        return self

    def created_at(self, when: datetime) -> TrainingJobBuilder:
        self._created = when
        return self

    def in_phase(self, phase: str, **status: Any) -> TrainingJobBuilder:
        self._status = {"phase": phase, **status}
        if phase in ("starting", "running", "cancelling") and "podName" not in status:
            self._status["podName"] = f"{self._name}-trainer"
        return self

    def with_progress(self, step: int, **raw: Any) -> TrainingJobBuilder:
        """status.progress as the operator writes it (camelCase fields), whatever the phase."""
        self._reports["progress"] = {"step": step, "reportedAt": format_time(self._created),
                                     **raw}  # fmt: skip
        return self

    def with_checkpoint(self, step: int, *, at: datetime, **raw: Any) -> TrainingJobBuilder:
        self._reports["checkpoint"] = {"step": step, "time": format_time(at), **raw}
        return self

    def manifest(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self._name, "namespace": self._namespace}
        if self._annotations:
            meta["annotations"] = dict(self._annotations)
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": meta,
            "spec": copy.deepcopy(self._spec),
        }

    def body(self) -> dict[str, Any]:
        body = self.manifest()
        body["metadata"].update(
            uid=self._uid, resourceVersion="100", creationTimestamp=format_time(self._created)
        )
        body["status"] = copy.deepcopy({**self._status, **self._reports})
        return body

    def job(self) -> Job:
        return Job.parse(self.body())


def a_training_job(name: str, namespace: str = "default") -> TrainingJobBuilder:
    return TrainingJobBuilder(name, namespace)


def a_pod_of(job: Job, *, phase: str = "Running", deleting: bool = False, **fields: Any) -> PodView:
    return PodView(
        namespace=job.key.namespace,
        name=f"{job.key.name}-trainer",
        uid=str(uuid.uuid4()),
        job_name=job.key.name,
        job_uid=job.uid,
        phase=phase,
        deleting=deleting,
        node_name=fields.pop("node_name", "gpu-node-0"),
        **fields,
    )


def pods(*found: PodView | None) -> dict[int, PodView]:
    """A job's Pods by index, as the book hands them to the lifecycle."""
    return {p.index: p for p in found if p is not None}


def a_node(
    name: str,
    *,
    gpus: int = 8,
    cpu: int = 64,
    memory_gib: int = 512,
    labels: dict[str, str] | None = None,
    taints: tuple[Taint, ...] = (),
    ready: bool = True,
) -> NodeView:
    """A GPU node as the operator sees it (the local cluster's kwok nodes by default)."""
    return NodeView(
        name=name,
        labels=tuple(sorted({"shunter.dev/node-pool": "gpu", **(labels or {})}.items())),
        taints=taints,
        allocatable=Resources(gpus=gpus, cpu=cpu * 1000, memory=memory_gib * 2**30),
        ready=ready,
        unschedulable=False,
    )


def gpu_nodes(count: int = 4, *, gpus: int = 8) -> list[NodeView]:
    return [a_node(f"gpu-node-{i}", gpus=gpus) for i in range(count)]


def an_appraisal(
    now: datetime = datetime(2026, 1, 1, tzinfo=UTC), *queues: QueueView,
    max_sized_grace: int = 600,
) -> Appraisal:  # fmt: skip
    """What the API judges a live view against: the time, the queues, the sizing cap."""
    return Appraisal(now=now, queues={q.name: q for q in queues},
                     max_sized_grace=max_sized_grace)  # fmt: skip
