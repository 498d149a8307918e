"""The operator's writes to the cluster, through the one Kubernetes layer.

Job status (merge patch on the status subresource), trainer Pods (create with a
deterministic name, delete with a grace period) and Events. Reads never come from
here: the informers feed the book.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shunter.kube import Body, Conflict, Kube, NotFound
from shunter.kube.events import event_body, post_event
from shunter.kube.resources import PODS, TRAINING_JOBS
from shunter.operator.decisions import Event
from shunter.operator.model import JobKey, Uid


class Actions:
    def __init__(self, kube: Kube) -> None:
        self.kube = kube

    async def patch_job_status(self, key: JobKey, patch: dict[str, Any]) -> Body:
        """Merge-patch the status; returns the job as written (its resourceVersion)."""
        return await self.kube.patch(
            TRAINING_JOBS, key.name, {"status": patch}, namespace=key.namespace, sub="status"
        )

    async def create_pod(self, manifest: Body) -> bool:
        """Create the Pod; False when it already exists (a retried create)."""
        try:
            await self.kube.create(PODS, manifest, namespace=manifest["metadata"]["namespace"])
        except Conflict:
            return False
        return True

    async def delete_pod(self, namespace: str, name: str, *, grace_seconds: int) -> bool:
        """Delete the Pod with a grace period; False when it is already gone."""
        try:
            await self.kube.delete(PODS, name, namespace=namespace, grace_seconds=grace_seconds)
        except NotFound:
            return False
        return True

    async def post_event(self, key: JobKey, uid: Uid, event: Event, *, at: datetime) -> None:
        await post_event(
            self.kube,
            event_body(
                namespace=key.namespace, name=key.name, uid=uid, type=event.type,
                reason=event.reason, message=event.message, at=at,
            ),
        )  # fmt: skip
