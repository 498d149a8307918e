"""What each endpoint does, between the HTTP layer and the cluster.

Routes call one method here; these methods raise domain errors (shunter.api.errors)
and never build HTTP responses themselves. Reads come from the watch cache
(shunter.api.jobcache) unless the caller asks for `consistent=true`; writes go to the
API server and wait until the cache shows them, so a client reads its own writes.

Who did it: with auth on, every write is made as the caller (impersonation,
`SHUNTER_API_IDENTITY=impersonate`): the API server authorizes it with the caller's
own RBAC, its audit log names the caller, and the chart's identity policy stamps
`shunter.dev/submitted-by` / `cancelled-by` from the request's user, as it does for
kubectl. The API also names the caller in those annotations in the same write (what
an API server without the mutating policy checks instead of stamping). The request
body has no way to set them. With auth off (the demo) the API writes as itself.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from shunter.api.appraisal import Appraisal
from shunter.api.auth import Principal
from shunter.api.claims import check_claim
from shunter.api.errors import (
    AlreadyExists,
    DependencyCycle,
    InvalidJob,
    InvalidRequest,
    Unavailable,
)
from shunter.api.errors import Forbidden as Refused
from shunter.api.errors import NotFound as JobNotFound
from shunter.api.history import History
from shunter.api.jobcache import JobCache, Lineup
from shunter.api.lineage import Lineage, lineage_of
from shunter.api.logs import Logs, PodLogs
from shunter.api.plans import Plans
from shunter.api.rendering import Renderer
from shunter.api.schemas import (
    JobCreate,
    JobEvent,
    JobList,
    JobPublic,
    QueueUsage,
    QueueView,
    SecretEnvIn,
    WhatIf,
)
from shunter.api.settings import ApiSettings
from shunter.api.whatif import answer_what_if
from shunter.domain.actions import (
    Answer,
    decide_cancel,
    decide_resume,
    decide_suspend,
    guarded_patch,
)
from shunter.domain.admission import waits
from shunter.domain.arrays import is_run_of, run_name
from shunter.domain.capacity import Capacity
from shunter.domain.dependencies import Absent, Upstream, judge, submit_cycle
from shunter.domain.model import (
    API_VERSION,
    CANCELLED_BY,
    KIND,
    SUBMITTED_BY,
    EnvVar,
    Job,
    JobKey,
    JobSpec,
    Phase,
)
from shunter.domain.nodes import NodeView
from shunter.domain.queues import DEFAULT_QUEUE, QuotaUse, queue_of
from shunter.domain.queues import QueueView as QueueSpec
from shunter.kube import Conflict, Forbidden, Invalid, Kube, KubeError, NotFound
from shunter.kube.client import JSON_PATCH, MERGE_PATCH
from shunter.kube.errors import reason_of
from shunter.kube.resources import NODES, TRAINING_JOBS

log = logging.getLogger("shunter.api")
CANCEL_RETRIES = 5


def _env(name: str, value: str | SecretEnvIn) -> EnvVar:
    if isinstance(value, str):
        return EnvVar(name=name, value=value)
    return EnvVar(name=name, secret=value.secret, key=value.key, optional=value.optional)


def manifest_of(request: JobCreate, *, default_image: str, submitter: str) -> dict[str, Any]:
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
        "env": [_env(name, v).to_raw() for name, v in request.env.items()] or None,
        "cpu": request.cpu,
        "memory": request.memory,
        "maxRuntimeSeconds": request.max_runtime_seconds,
        "nodeSelector": dict(request.node_selector) or None,
        "tolerations": [t.model_dump(exclude_none=True) for t in request.tolerations] or None,
        "nodes": request.nodes if request.nodes != 1 else None,
        "procsPerNode": request.procs_per_node,
        "backoffLimit": request.backoff_limit or None,
        "array": {
            "count": request.array.count,
            "maxParallel": request.array.max_parallel or request.array.count,
        }
        if request.array
        else None,
        "dependsOn": [d.model_dump(exclude_none=True) for d in request.depends_on] or None,
        "cancelDependents": request.cancel_dependents or None,
    }
    checkpoint = {
        "claimName": request.checkpoint_claim,
        "size": request.checkpoint_size,
        "storageClassName": request.checkpoint_storage_class,
    }
    if any(checkpoint.values()):
        optional["checkpoint"] = {k: v for k, v in checkpoint.items() if v}
    spec.update({k: v for k, v in optional.items() if v is not None})
    if request.pod_labels or request.pod_annotations:
        spec["podMetadata"] = {
            "labels": dict(request.pod_labels),
            "annotations": dict(request.pod_annotations),
        }
    name = request.name or f"job-{uuid.uuid4().hex[:10]}"
    metadata = {"name": name, "annotations": {SUBMITTED_BY: submitter}}
    return {"apiVersion": API_VERSION, "kind": KIND, "metadata": metadata, "spec": spec}


class TrainingService:
    def __init__(
        self, kube: Kube, cache: JobCache, history: History, settings: ApiSettings,
        *, log_kube: Kube | None = None,
    ) -> None:  # fmt: skip
        self.renderer = Renderer()
        self.kube = kube
        self.cache = cache
        self.history = history
        self.settings = settings
        self.pod_logs = PodLogs(kube, streams=log_kube or kube)
        self.plans = Plans(history)

    async def _live(self, key: JobKey) -> Job | None:
        """The job as the API server has it now."""
        try:
            body = await self.kube.get(TRAINING_JOBS, key.name, namespace=key.namespace)
        except NotFound:
            return None
        return Job.parse(body)

    async def _read(self, key: JobKey, *, consistent: bool) -> Job | None:
        """From the cache; live when asked, or when the cache does not hold it (so a
        404 is always the API server's answer, never a cache's lag)."""
        job = None if consistent else self.cache.get(key)
        return job if job is not None else await self._live(key)

    def writer(self, caller: Principal) -> Kube:
        """The client a write of `caller` goes through: acting as them, unless auth is
        off or the installer chose to write as the API's own account."""
        if not self.settings.impersonates or caller.anonymous:
            return self.kube
        return self.kube.as_user(caller.identity)

    async def submit(self, request: JobCreate, *, namespace: str, caller: Principal) -> Job:
        job = await self._create(request, namespace=namespace, caller=caller)
        await self.cache.written(job)
        return job

    async def what_if(self, request: JobCreate, *, namespace: str, caller: Principal) -> WhatIf:
        """POST /submit?dry_run=true: judged exactly as a submit (the same checks and
        the API server's own dry run: the same 4xx), then placed in the operator's
        kept plan (shunter.api.whatif). Nothing is created, anywhere."""
        job = await self._create(request, namespace=namespace, caller=caller, dry_run=True)
        job = replace(job, created_at=datetime.now(UTC))

        async def allowed(queue: str) -> bool:
            """Whether the API server would take the job in another queue: its dry run
            only (the checks before it do not read the queue, and passed above)."""
            moved = request.model_copy(update={"queue": queue, "name": job.key.name})
            manifest = self._manifest(moved, namespace=namespace, caller=caller)
            try:
                await self._send(manifest, namespace=namespace, caller=caller, dry_run=True)
            except (Refused, InvalidJob, AlreadyExists, JobNotFound):
                return False
            return True

        found = await self._upstreams(namespace, job.spec)
        dependencies = judge(
            job, lambda name: found.get(name) or Absent.MISSING, now=job.created_at
        )
        return await answer_what_if(
            job, await self.plans.whole(), now=datetime.now(UTC), queues=self.cache.queues.store,
            holders=self.cache.holders(), allowed=allowed,
            waiting=self.cache.waiting_by_queue(),
            max_sized_grace=self.settings.max_sized_grace_seconds, dependencies=dependencies,
        )  # fmt: skip

    async def _create(self, request: JobCreate, *, namespace: str, caller: Principal,
                      dry_run: bool = False) -> Job:  # fmt: skip
        manifest = self._manifest(request, namespace=namespace, caller=caller)
        spec = JobSpec.parse(manifest["spec"])
        await self._check_dependencies(namespace, manifest["metadata"]["name"], spec)
        await check_claim(
            self.kube, namespace=namespace, name=manifest["metadata"]["name"], spec=spec,
            default_size=self.settings.checkpoint_size, allowed=self.settings.claims_allowed,
        )  # fmt: skip
        return await self._send(manifest, namespace=namespace, caller=caller, dry_run=dry_run)

    def _manifest(self, request: JobCreate, *, namespace: str,
                  caller: Principal) -> dict[str, Any]:  # fmt: skip
        refusal = self.settings.scope.refusal(namespace)
        if refusal is not None:
            raise Refused(f"Not submitted: {refusal}")
        return manifest_of(request, default_image=self.settings.default_image,
                           submitter=caller.user)  # fmt: skip

    async def _send(self, manifest: dict[str, Any], *, namespace: str, caller: Principal,
                    dry_run: bool) -> Job:  # fmt: skip
        """The create (or its dry run) as the caller: the API server's answer."""
        try:
            body = await self.writer(caller).create(
                TRAINING_JOBS, manifest, namespace=namespace, dry_run=dry_run
            )
        except Invalid as exc:
            raise InvalidJob(f"The job was rejected: {reason_of(exc)}") from exc
        except Forbidden as exc:
            raise Refused(f"The job was refused: {reason_of(exc)}") from exc
        except Conflict as exc:
            name = manifest["metadata"]["name"]
            raise AlreadyExists(f"A job named {name!r} already exists") from exc
        except NotFound as exc:
            raise JobNotFound(f"Namespace {namespace!r} not found") from exc
        if dry_run:  # the object as it would be: no uid or version of its own
            meta = body.setdefault("metadata", {})
            meta.setdefault("uid", "")
            meta.setdefault("namespace", namespace)
        return Job.parse(body)

    async def _upstream(self, key: JobKey) -> Upstream | Absent | None:
        """A dependency's job: live (the cache, else the API server), else its last row
        in the history; MISSING when neither has it, None when the history cannot say."""
        job = await self._read(key, consistent=False)
        if job is not None:
            return Upstream.of(job)
        if self.history.url is None:
            return Absent.MISSING  # no history kept: what is not live is missing
        try:
            row = await self.history.last_state(namespace=key.namespace, name=key.name)
        except Unavailable:
            return None
        if row is None:
            return Absent.MISSING
        phase = Phase(row[0]) if row[0] in Phase.__members__.values() else None
        return Upstream.gone(key.name, phase, row[1])

    async def _upstreams(self, namespace: str,
                         spec: JobSpec) -> dict[str, Upstream | Absent | None]:  # fmt: skip
        """Each dependency's job, by name (`_upstream`)."""
        return {d.name: await self._upstream(JobKey(namespace, d.name)) for d in spec.depends_on}

    async def _check_dependencies(self, namespace: str, name: str, spec: JobSpec) -> None:
        """Refused before anything is created: a name that is no job of the namespace
        (422), or dependencies that close a cycle (409, with its path)."""
        if not spec.depends_on:
            return
        names = [d.name for d in spec.depends_on]
        found = await self._upstreams(namespace, spec)
        missing = [n for n in names if found[n] is Absent.MISSING]
        if missing:
            raise InvalidRequest(
                f"Invalid request: depends_on: no job named {', '.join(missing)} in namespace"
                f" {namespace} (nor in its history)"
            )
        unknown = [n for n in names if found[n] is None]
        if unknown:
            raise Unavailable(
                f"depends_on: no job named {', '.join(unknown)} in namespace {namespace}, and"
                " its history cannot be read now to tell whether it existed; try again"
            )
        jobs = {j.key.name: j for j in await self._jobs(namespace)}
        cycle = submit_cycle(name, names, jobs)
        if cycle is not None:
            raise DependencyCycle(
                f"depends_on would close a cycle of jobs waiting on each other: "
                f"{' -> '.join(cycle)}",
                detail={"cycle": cycle},
            )

    async def lineage(self, job: Job) -> Lineage:
        """Its upstream with each condition's state, and its downstream (GET /status)."""
        found = await self._upstreams(job.key.namespace, job.spec)
        if self.cache.covers(job.key.namespace):
            dependents = self.cache.dependents(job.key)
        else:
            dependents = [j for j in await self._jobs(job.key.namespace)
                          if any(d.name == job.key.name for d in j.spec.depends_on)]  # fmt: skip
        return lineage_of(job, found=found, dependents=dependents)

    def appraisal(self) -> Appraisal:
        """What live views judge time-dependent fields against: now (whole seconds),
        the queues' bounds and the operator's cap on a sized grace."""
        return Appraisal(
            now=datetime.now(UTC).replace(microsecond=0), queues=self.cache.queues.store,
            max_sized_grace=self.settings.max_sized_grace_seconds,
            version=self.cache.queues.version, plan=self.plans.latest,
        )  # fmt: skip

    async def status(self, key: JobKey, *, consistent: bool = False) -> Job:
        job = await self._read(key, consistent=consistent)
        if job is None:
            raise JobNotFound("Job not found")
        return job

    async def queue_json(
        self, namespace: str, *, limit: int = 100, queue: str | None = None
    ) -> bytes:
        """GET /queue's body, rendered once per version of the cache (and queues)."""
        if not self.cache.covers(namespace):
            view = await self.queue(namespace, limit=limit, queue=queue)
            return view.model_dump_json().encode()
        at = self.appraisal()
        # Its running jobs' work lost moves on with the time: once a second at most.
        version = ("queue", namespace, limit, queue, self.cache.jobs.version,
                   self.cache.queues.version, at.now,
                   at.plan.version if at.plan else None)  # fmt: skip

        def render() -> bytes:
            lineup = self.cache.lineup(namespace, limit=limit, queue=queue)
            usage = queue_usage(self.cache.holders(), self.cache.waiting_by_queue(),
                                self.cache.queues.store, only=queue)  # fmt: skip
            return _queue_view(namespace, lineup, usage, at=at).model_dump_json().encode()

        return self.renderer.view(version, render)

    async def queue(
        self, namespace: str, *, limit: int = 100, queue: str | None = None
    ) -> QueueView:
        """GET /queue outside the cache's scope: from a live LIST of the namespace."""
        lineup = Lineup.of(await self._jobs(namespace), limit=limit, queue=queue)
        usage = queue_usage(lineup.active, lineup.waiting_by_queue, self.cache.queues.store,
                            only=queue)  # fmt: skip
        return _queue_view(namespace, lineup, usage, at=self.appraisal())

    async def _jobs(self, namespace: str) -> list[Job]:
        """Every job of the namespace: the cache's, or a live LIST outside its scope."""
        if self.cache.covers(namespace):
            return self.cache.in_namespace(namespace)
        listing = await self.kube.list(TRAINING_JOBS, namespace=namespace)
        return [Job.parse(body) for body in listing.get("items") or ()]

    async def live_json(self, namespace: str, *, limit: int) -> bytes:
        """GET /live's body (and /stream's `live` event), rendered once per version of
        the cache (and namespace, limit, second and plan), then served as kept bytes.
        The key holds the namespace: a body is only ever served to a caller the guard
        allowed to list that namespace, and shows nothing of any other."""
        if not self.cache.covers(namespace):
            return (await self.live(namespace, limit=limit)).model_dump_json().encode()
        at = self.appraisal()
        version = ("live", namespace, limit, self.cache.jobs.version,
                   self.cache.queues.version, at.now,
                   at.plan.computed_at if at.plan else None)  # fmt: skip

        def render() -> bytes:
            return self._live_view(
                namespace, self.cache.in_namespace(namespace),
                self.cache.lineup(namespace, limit=limit), limit=limit, at=at,
            ).model_dump_json().encode()  # fmt: skip

        return self.renderer.view(version, render)

    async def live(self, namespace: str, *, limit: int) -> JobList:
        """Slot holders, then the queue in order, then the rest newest first: a long
        running job never drops out of the first `limit` behind newer finished ones."""
        jobs = await self._jobs(namespace)
        if self.cache.covers(namespace):
            lineup = self.cache.lineup(namespace, limit=limit)
        else:
            lineup = Lineup.of(jobs, limit=limit)
        return self._live_view(namespace, jobs, lineup, limit=limit, at=self.appraisal())

    @staticmethod
    def _live_view(
        namespace: str, jobs: list[Job], lineup: Lineup, *, limit: int, at: Appraisal
    ) -> JobList:
        rest = sorted(
            (j for j in jobs if not j.holds_slot and not waits(j)),
            key=lambda j: (j.created_at, j.key.name),
            reverse=True,
        )
        items = [JobPublic.of(j, at=at) for j in lineup.active[:limit]]
        items += [JobPublic.of(j, at=at) for j in lineup.head[: limit - len(items)]]
        items += [JobPublic.of(j, at=at) for j in rest[: limit - len(items)]]
        return JobList(
            namespace=namespace,
            count=len(jobs),
            running_count=len(lineup.active),
            queued_count=lineup.waiting_count,
            items=items,
        )

    async def run_of(self, key: JobKey, index: int) -> JobKey:
        """The run of array `key` at `index` (GET/POST .../{name}/index/{i}): a job named
        NAME-INDEX that the array controls (shunter.domain.arrays); JobNotFound saying
        why otherwise."""
        array = await self.status(key)
        spec = array.spec.array
        if spec is None:
            raise JobNotFound(f"Job {key.name!r} is not an array")
        if index >= spec.count:
            raise JobNotFound(f"Array {key.name!r} has no index {index} (count {spec.count})")
        run = JobKey(key.namespace, run_name(key.name, index))
        found = await self._read(run, consistent=False)
        if found is None:
            raise JobNotFound(f"Index {index} of array {key.name!r} has not been created yet"
                              f" (at most {spec.max_parallel} runs at once)")  # fmt: skip
        if not is_run_of(found, array):
            raise JobNotFound(f"Index {index} of array {key.name!r}: {run.name!r} is not a run"
                              " of this array")  # fmt: skip
        return run

    async def events(self, key: JobKey) -> list[JobEvent]:
        job = await self.status(key)
        rows = [
            JobEvent(type=e.type, reason=e.reason, message=e.message, time=e.time, count=e.count)
            for e in self.cache.events_of(job)
        ]  # fmt: skip
        return sorted(rows, key=lambda r: (r.time is None, r.time, r.reason or ""))

    async def logs(self, key: JobKey, *, tail: int, follow: bool) -> Logs:
        return await self.pod_logs.open(await self.status(key), tail=tail, follow=follow)

    async def cancel(
        self, key: JobKey, *, caller: Principal, cancel_dependents: bool = False
    ) -> Answer:
        """Cancel, recording who (the annotation goes in the same write); with
        cancel_dependents, the jobs waiting on it go too (in the same write)."""
        spec: dict[str, Any] = {"cancelled": True}
        if cancel_dependents:
            spec["cancelDependents"] = True
        return await self._change(key, decide_cancel, spec, caller=caller,
                                  annotations={CANCELLED_BY: caller.user},
                                  guarded=True)  # fmt: skip

    async def suspend(self, key: JobKey, *, caller: Principal) -> Answer:
        return await self._change(key, decide_suspend, {"suspended": True}, caller=caller)

    async def resume(self, key: JobKey, *, caller: Principal) -> Answer:
        return await self._change(key, decide_resume, {"suspended": False}, caller=caller)

    async def _change(
        self,
        key: JobKey,
        decide: Callable[[Job | None], Answer],
        spec: dict[str, Any],
        *,
        caller: Principal,
        annotations: dict[str, str] | None = None,
        guarded: bool = False,
    ) -> Answer:
        """Decide on the job; patch its spec only if it is unchanged since the read.

        The first read is the cache's; if the job changed meanwhile (finished,
        admitted...) the resourceVersion precondition fails and the next read is live.
        `guarded` (a cancel, whose answer reads only the phase and the spec): only the
        job's uid, spec and phase are held to the read (domain.actions.guarded_patch).
        """
        job = await self._read(key, consistent=False)
        for _ in range(CANCEL_RETRIES):
            outcome = decide(job)
            if not outcome.send_patch or job is None:
                return outcome
            metadata: dict[str, Any] = {"resourceVersion": job.resource_version}
            if annotations:
                metadata["annotations"] = annotations
            patch: Any = {"metadata": metadata, "spec": spec}
            kind = MERGE_PATCH
            if guarded and (ops := guarded_patch(job, spec, annotations or {})) is not None:
                patch, kind = ops, JSON_PATCH
            try:
                body = await self.writer(caller).patch(
                    TRAINING_JOBS, key.name, patch, namespace=key.namespace, content_type=kind
                )
            except Forbidden as exc:
                raise Refused(f"The change was refused: {reason_of(exc)}") from exc
            except (Conflict, Invalid):
                # Changed since the read (a finished job's CEL rule, and a guarded
                # patch's failed test, answer 422).
                job = await self._live(key)
                continue
            except NotFound:
                return decide(None)
            await self.cache.written(Job.parse(body))
            return outcome
        raise Unavailable("The job kept changing; try again")

    async def await_final(self, key: JobKey) -> None:
        """Give the operator a moment to finish, so a second cancel sees `cancelled`.
        Woken by the watch when the job changes, not by polling."""
        await self.cache.until(
            key,
            lambda job: job is None or (job.phase is not None and job.phase.terminal),
            within=self.settings.cancel_wait_seconds,
        )

    async def await_suspended(self, key: JobKey) -> None:
        """Likewise for a suspend: until the job's Pods are gone and it is `suspended`."""

        def settled(job: Job | None) -> bool:
            return (
                job is None
                or job.phase is Phase.SUSPENDED
                or bool(job.phase and job.phase.terminal)
            )

        await self.cache.until(key, settled, within=self.settings.cancel_wait_seconds)

    async def submit_message(self, job: Job) -> str:
        """'Job submitted', and why it cannot run if no node of its pool could hold it
        (it is accepted all the same: nodes may come)."""
        never = self.cache.never_fits(job)
        if never is not None:
            never = await self._never_fits_live(job, cached=never)
        if never is None:
            return "Job submitted"
        return (
            f"Job submitted, but it cannot run on this cluster as it is: {never};"
            " it waits until a node that fits appears"
        )

    async def _never_fits_live(self, job: Job, *, cached: str) -> str | None:
        """The cache's warning confirmed by the API server's Nodes: the watch may not
        have delivered a node that came a moment ago, and a job is not told it cannot
        run because of a lag. (Only jobs the cache warns about cost this read.)"""
        selector = ",".join(f"{k}={v}" for k, v in job.spec.node_selector)
        try:
            listing = await self.kube.list(NODES, label_selector=selector or None)
        except KubeError as exc:
            # No permission or unreachable: the cache's answer stands (logged: a
            # warning given from the cache alone may be a lag, see the tests).
            log.warning("submit: the nodes could not be read to confirm %r: %s", cached, exc)
            return cached
        nodes = [NodeView.parse(item) for item in listing.get("items") or ()]
        return Capacity.build(nodes, (), ()).never_fits(job)


def _queue_view(
    namespace: str, lineup: Lineup, usage: list[QueueUsage], *, at: Appraisal
) -> QueueView:
    # Each job's position is the one the operator recorded in its status (README:
    # "Queue positions"): every view shows that one, never a count of its own.
    return QueueView(
        namespace=namespace,
        running_count=len(lineup.active),
        queued_count=lineup.waiting_count,
        running=[JobPublic.of(j, at=at) for j in lineup.active],
        queued=[JobPublic.of(j, at=at) for j in lineup.head],
        queues=usage,
    )


def queue_usage(
    holders: Iterable[Job],
    waiting: Mapping[str, int],
    queues: Mapping[str, QueueSpec],
    *,
    only: str | None = None,
) -> list[QueueUsage]:
    """Each queue's limits, what its slot holders hold of them, and how many wait."""
    held = QuotaUse.of(queues, holders)
    names = sorted({*queues, *held.running, *waiting, DEFAULT_QUEUE})
    usages = []
    for name in names:
        if only is not None and name != only:
            continue
        spec = queue_of(name, queues)
        usages.append(QueueUsage(
            name=name, exists=spec is not None, running=held.running.get(name, 0),
            gpus=held.gpus.get(name, 0), waiting=waiting.get(name, 0),
            max_running=spec.max_running if spec else None,
            gpu_quota=spec.gpu_quota if spec else None, borrowed=held.borrowed(name),
            borrowing_limit=spec.borrowing_limit if spec else None,
            cohort=spec.cohort if spec else None,
            preemption=spec.preemption if spec else "never",
            queueing_strategy=spec.strategy if spec else "StrictFIFO",
        ))  # fmt: skip
    return usages
