"""The operator's writes to the cluster, through the one Kubernetes layer, fenced.

Job status (merge patch on the status subresource), trainer Pods (create with a
deterministic name, delete with a grace period) and Events. Reads come from the
informers (they feed the book), with one exception: the checkpoint claim a create
found already there is read back at once (`claim`), since the informer may not have
shown it yet and the Pods must not be created before it is judged
(shunter.domain.claims).

Every write is fenced by leadership (shunter.operator.leadership): right before it is
sent, `budget()` says how long it may take, and None when this replica must not write
at all (`Fenced`). The write's timeout is that budget, so it is abandoned before a
successor could hold the Lease. Status writes also carry the resourceVersion the
decision was based on: a write that lands late anyway (held up in the network) after
anyone else wrote the job is refused with 409 instead of undoing newer state.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

from shunter.domain.model import API_VERSION, KIND, Job, JobKey, Uid
from shunter.kube import Body, Conflict, Forbidden, Invalid, Kube, NotFound
from shunter.kube.client import REQUEST_TIMEOUT
from shunter.kube.errors import policy_denial
from shunter.kube.events import event_body
from shunter.kube.resources import EVENTS, PODS, PVCS, SERVICES, TRAINING_JOBS, TRAINING_QUEUES
from shunter.operator.decisions import Event

_KINDS = {"Pod": PODS, "Service": SERVICES, "PersistentVolumeClaim": PVCS, KIND: TRAINING_JOBS}
# Below this, a write is not even tried: it could not complete in time.
MIN_BUDGET = 0.2


class Fenced(Exception):
    """This replica may not write now: it is not the leader (any more)."""


class Actions:
    def __init__(
        self, kube: Kube, *, budget: Callable[[], float | None] = lambda: REQUEST_TIMEOUT
    ) -> None:
        self.kube = kube
        self.budget = budget

    def _seconds(self, what: str) -> float:
        """The timeout of a write about to be sent; Fenced when it must not be sent."""
        budget = self.budget()
        if budget is None or budget < MIN_BUDGET:
            raise Fenced(f"not the leader: {what} not sent")
        return min(REQUEST_TIMEOUT, budget)

    async def patch_job_status(self, key: JobKey, patch: dict[str, Any], *, version: str) -> Body:
        """Merge-patch the status if the job is still at `version` (else Conflict);
        returns the job as written (its new resourceVersion)."""
        body: dict[str, Any] = {"status": patch}
        if version:
            body["metadata"] = {"resourceVersion": version}
        return await self.kube.patch(
            TRAINING_JOBS, key.name, body, namespace=key.namespace, sub="status",
            seconds=self._seconds(f"status of {key}"),
        )  # fmt: skip

    async def patch_queue_status(self, name: str, patch: dict[str, Any]) -> Body:
        """Merge-patch a TrainingQueue's status (its decayed usage; only this operator
        writes it, so no precondition)."""
        return await self.kube.patch(TRAINING_QUEUES, name, {"status": patch}, sub="status",
                                     seconds=self._seconds(f"status of queue {name}"))  # fmt: skip

    async def create(self, manifest: Body) -> bool:
        """Create a Pod, Service or PersistentVolumeClaim; False when it already exists
        (a retried create: every name is deterministic)."""
        resource = _KINDS[manifest["kind"]]
        meta = manifest["metadata"]
        seconds = self._seconds(f"create {manifest['kind']} {meta['namespace']}/{meta['name']}")
        try:
            await self.kube.create(resource, manifest, namespace=meta["namespace"], seconds=seconds)
        except Conflict:
            return False
        return True

    async def job(self, key: JobKey) -> Body | None:
        """The TrainingJob as the API server has it now (an array's stored spec, which
        its runs copy); None when it does not exist."""
        try:
            return await self.kube.get(TRAINING_JOBS, key.name, namespace=key.namespace)
        except NotFound:
            return None

    async def patch_job(self, key: JobKey, patch: dict[str, Any]) -> bool:
        """Merge-patch a TrainingJob (an array's cancel, suspend or resume carried to
        one of its runs); False when it is gone."""
        seconds = self._seconds(f"patch of {key}")
        try:
            await self.kube.patch(TRAINING_JOBS, key.name, patch, namespace=key.namespace,
                                  seconds=seconds)  # fmt: skip
        except NotFound:
            return False
        return True

    async def claim(self, namespace: str, name: str) -> Body | None:
        """The claim as the API server has it now; None when it does not exist."""
        try:
            return await self.kube.get(PVCS, name, namespace=namespace)
        except NotFound:
            return None

    async def delete_pod(self, namespace: str, name: str, *, grace_seconds: int) -> bool:
        """Delete the Pod with a grace period; False when it is already gone."""
        seconds = self._seconds(f"delete pod {namespace}/{name}")
        try:
            await self.kube.delete(
                PODS, name, namespace=namespace, grace_seconds=grace_seconds, seconds=seconds
            )
        except NotFound:
            return False
        return True

    async def post_event(self, key: JobKey, uid: Uid, event: Event, *, at: datetime) -> None:
        body = event_body(
            namespace=key.namespace, name=key.name, uid=uid, type=event.type,
            reason=event.reason, message=event.message, at=at,
        )  # fmt: skip
        seconds = self._seconds(f"event {event.reason} of {key}")
        await self.kube.create(EVENTS, body, namespace=key.namespace, seconds=seconds)

    async def policy_refusal(self, job: Job, policies: Collection[str]) -> str | None:
        """Would the API server accept this job now? A server-side dry run of its spec
        as stored (read first: the book keeps parsed jobs, not their bodies; nothing
        is stored): the installer's policies judge it exactly as they judge a new
        submission, so a job that waited since before a policy changed meets today's
        rules. The rule's message when one of `policies` refuses; None otherwise
        (another refusal, e.g. a ResourceQuota counting the dry run itself, is not the
        installer's policy)."""
        seconds = self._seconds(f"policy check of {job.key}")
        stored = await self.kube.get(TRAINING_JOBS, job.key.name, namespace=job.key.namespace)
        body = {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": {"generateName": "policy-check-", "namespace": job.key.namespace},
            "spec": stored.get("spec") or {},
        }
        try:
            await self.kube.create(
                TRAINING_JOBS, body, namespace=job.key.namespace, seconds=seconds, dry_run=True
            )
        except (Invalid, Forbidden) as exc:
            denial = policy_denial(exc)
            return denial.message if denial is not None and denial.policy in policies else None
        return None
