"""kopf registrations: start-up, shutdown and probes; the informers feed the book.

Two libraries share the work, each doing what it is good at:

- kopf runs the process: the event loop's lifetime, SIGTERM and SIGINT, `start`
  before anything else and `stop` on the way out, the liveness endpoint (`--liveness`)
  answering with the probes below, and the memo the handlers share. It registers no
  resource handler, so it watches nothing and writes nothing: no peering
  (`standalone`: leadership is our own Lease), no Events of its own, no webhooks
  (main.kopf_settings). Its one look at the cluster is the API discovery at start
  (`/api`, `/apis`: any authenticated user may). Its scanning (watching CRDs, and
  listing Namespaces when it serves a list of them, to start and stop watches as they
  come and go) is turned off: there are no watches of its own to start, and it would
  need cluster-wide rights on CRDs and Namespaces that the chart does not grant
  (without them kopf logs its 403s and retries).
- shunter.kube does all the Kubernetes work: every watch (an Informer per resource
  and watched namespace: TrainingJobs, trainer Pods, Nodes, the Pods bound to them,
  TrainingQueues, claims), every write (status patches, Pods, Services, claims,
  Events, dry-run creates, through shunter.operator.actions), and the Lease
  (shunter.kube.leases). It is the same client the API uses: a watch event costs a
  JSON parse and a dict update, where a kopf resource handler costs a per-object
  worker, diffing and handler dispatch (bench/RESULTS.md, "operator").

Every handler is async and runs on kopf's event loop; nothing touches loop state from
another thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from shunter.domain.claims import ClaimView
from shunter.domain.model import JOB_NAME_LABEL, Job, JobKey, PodView
from shunter.domain.nodes import BOUND_FIELD_SELECTOR, NodeView, PodUsage
from shunter.domain.queues import QueueView
from shunter.domain.reports import progress_only
from shunter.domain.scope import Scope
from shunter.kube import Connection, Informer, Kube, connect
from shunter.kube.leases import KubeLeaseStore
from shunter.kube.resources import NODES, PODS, PVCS, TRAINING_JOBS, TRAINING_QUEUES
from shunter.operator import memory
from shunter.operator.actions import Actions
from shunter.operator.book import JobBook
from shunter.operator.controller import EVENT_WORKERS, Controller
from shunter.operator.estimating import Estimator
from shunter.operator.leadership import ElectorThread, LeaderElector
from shunter.operator.mirror import Mirror
from shunter.operator.settings import Settings

log = logging.getLogger("shunter.operator")


@kopf.on.login()
async def login(**_: Any) -> kopf.ConnectionInfo:
    """The credentials of kopf's own calls (the discovery at start), as shunter.kube
    reads them (shunter.kube.connection): one reader of kubeconfigs, ServiceAccounts
    and exec plugins, and no Kubernetes client library in the operator's process
    (main.leave_out_client_libraries)."""
    return await connection_info(connect())


async def connection_info(connection: Connection) -> kopf.ConnectionInfo:
    credential = await connection.credentials.current()
    scheme, _, token = (credential.authorization or "").partition(" ")
    chain, key = credential.certificate or (None, None)
    return kopf.ConnectionInfo(
        server=connection.server, ca_data=connection.ca_data, insecure=connection.insecure,
        scheme=scheme or None, token=token or None, certificate_data=chain,
        private_key_data=key, proxy_url=connection.proxy_url, expiration=credential.expires,
    )  # fmt: skip


def _on_job(book: JobBook, mirror: Mirror, controller: Controller, scope: Scope) -> Any:
    def changed(kind: str, job: Job) -> None:
        if not scope.serves(job.key.namespace):
            return  # excluded: left alone, not even mirrored (see shunter.domain.scope)
        if kind == "DELETED":
            book.remove_job(job.key)
            mirror.offer_deleted(job)
        else:
            before = book.watched(job.key)
            quiet = progress_only(before, job)
            book.put_job(job, quiet=quiet)
            mirror.offer(job)
            controller.checkpointed(before, job)
            if quiet:
                return  # kept for the next pass, which nothing else needs now
        controller.wake()

    return changed


def _on_pod(book: JobBook, controller: Controller, scope: Scope) -> Any:
    def changed(kind: str, pod: PodView) -> None:
        if not scope.serves(pod.namespace):
            return
        if kind == "DELETED":
            book.remove_pod(pod)
        else:
            book.put_pod(pod)
        controller.wake()

    return changed


def _on_world(put: Any, remove: Any, controller: Controller) -> Any:
    """Nodes, foreign Pods and queues: admission looks again when they change."""

    def changed(kind: str, obj: Any) -> None:
        (remove if kind == "DELETED" else put)(obj)
        controller.wake()

    return changed


def _foreign(scope: Scope) -> Any:
    """Bound, unfinished Pods that are not this operator's trainer Pods (a trainer Pod
    of a namespace it does not serve holds GPUs like any other Pod)."""

    def parse(body: dict[str, Any]) -> PodUsage:
        meta = body["metadata"]
        ours = JOB_NAME_LABEL in (meta.get("labels") or {}) and scope.serves(
            str(meta.get("namespace", "")))  # fmt: skip
        usage = PodUsage.parse(body)
        return usage if not ours else PodUsage(usage.uid, "", usage.requests)

    return parse


@kopf.on.startup()
async def start(memo: kopf.Memo, **_: Any) -> None:
    config: Settings = memo.config  # parsed and checked by main()
    # This replica's name in the API server's audit log and in managedFields.
    writer = f"shunter-operator/{config.identity}"
    kube = Kube(connect(), user_agent=writer, field_manager=writer)
    # The Lease has a client, a connection and a thread of its own (ElectorThread): a
    # renewal never waits for a free connection behind a pool busy with a burst of
    # writes, nor for a loop busy with a pass over 60,000 jobs (either cost a loaded
    # leader its Lease), and it goes over a connection that is already open.
    lease_kube = Kube(connect(), connections=1, user_agent=writer, field_manager=writer)
    book = JobBook()
    mirror = Mirror(config.database_url, retention=config.usage_retention)
    elector = LeaderElector(
        KubeLeaseStore(lease_kube, namespace=config.lease_namespace, name=config.lease_name),
        identity=config.identity,
        timing=config.lease,
        name=f"lease {config.lease_namespace}/{config.lease_name}",
    )
    controller = Controller(Actions(kube, budget=elector.write_budget), book, config)
    elector.on_change = lambda _leader: controller.forget()
    controller.recall_from = mirror.last_states if config.database_url else None
    if config.estimates:
        controller.estimator = Estimator(book, mirror, config)
        controller.estimator.wake = controller.nudge
    # One informer per watched namespace (a single None: the whole cluster) for each
    # namespaced resource: with a list, the operator holds a Role in each namespace
    # and no right to a cluster-wide watch.
    scope, targets = config.scope, config.scope.watch_targets()
    jobs: list[Informer[JobKey, Job]] = [Informer(
        kube, TRAINING_JOBS, namespace=namespace, parse=Job.parse,
        key=lambda job: job.key, on_change=_on_job(book, mirror, controller, scope),
    ) for namespace in targets]  # fmt: skip
    pods: list[Informer[str, PodView]] = [Informer(
        kube, PODS, namespace=namespace, label_selector=JOB_NAME_LABEL,
        parse=PodView.parse, key=lambda pod: pod.uid, on_change=_on_pod(book, controller, scope),
    ) for namespace in targets]  # fmt: skip
    nodes: Informer[str, NodeView] = Informer(
        kube, NODES, parse=NodeView.parse, key=lambda node: node.name,
        on_change=_on_world(book.put_node, book.remove_node, controller),
    )  # fmt: skip
    # Our own trainer Pods come back with no node here: they are counted by their
    # job's placement, not twice.
    foreign: Informer[str, PodUsage] = Informer(
        kube, PODS, field_selector=BOUND_FIELD_SELECTOR, parse=_foreign(scope),
        key=lambda usage: usage.uid,
        on_change=_on_world(book.put_foreign, book.remove_foreign, controller),
    )  # fmt: skip
    queues: Informer[str, QueueView] = Informer(
        kube, TRAINING_QUEUES, parse=QueueView.parse, key=lambda queue: queue.name, optional=True,
        on_change=_on_world(book.put_queue, book.remove_queue, controller),
    )  # fmt: skip
    # The claims jobs may name as their checkpoint volume (whether they may mount them).
    # Optional: without the permission to list claims, jobs that name none still run
    # and those that do wait (ClaimMissing), with a warning in the log.
    claims: list[Informer[tuple[str, str], ClaimView]] = [Informer(
        kube, PVCS, namespace=namespace, parse=ClaimView.parse, optional=True,
        key=lambda claim: (claim.namespace, claim.name),
        on_change=_on_world(book.put_claim, book.remove_claim, controller),
    ) for namespace in targets]  # fmt: skip
    informers: tuple[Informer[Any, Any], ...] = (*jobs, *pods, nodes, foreign, queues, *claims)
    controller.leader = lambda: elector.is_leader
    controller.fresh = elector.fresh
    controller.synced = lambda: all(i.synced.is_set() for i in informers)
    memo.kube, memo.mirror, memo.controller, memo.elector = kube, mirror, controller, elector
    memo.informers = informers
    for informer in informers:
        informer.start()
    # Stopped in this order (see stop): the writers first, then the elector (which
    # hands the Lease back only once nothing of this replica writes any more), then
    # the mirror.
    memo.tasks = [
        asyncio.create_task(controller.run(), name="controller"),
        *(
            asyncio.create_task(controller.post_events(i), name=f"events-{i}")
            for i in range(EVENT_WORKERS)
        ),
    ]
    # glibc's free pages given back now and then (shunter.operator.memory).
    memo.tasks.append(asyncio.create_task(memory.keep_trimmed(), name="trim"))
    if controller.estimator is not None:
        acting = lambda: controller.synced() and controller.leader()  # noqa: E731
        memo.tasks.append(asyncio.create_task(controller.estimator.run(acting), name="estimates"))
    # The banner first: the elector's thread logs from its first attempt on, and its
    # "standing by" or "acquired" must follow the banner that names this replica.
    log.info(
        "shunter operator %s: max running %d, GPU budget %s, grace margin %ss, %s,"
        " lease %ss (renew %ss, deadline %ss)",
        config.identity,
        config.limits.max_running,
        config.limits.gpu_budget or "none",
        int(config.rules.grace_margin.total_seconds()),
        scope.describe(),
        config.lease.lease,
        config.lease.renew,
        config.lease.deadline,
    )
    memo.elector_thread = ElectorThread(elector, close=lease_kube.close)
    memo.elector_thread.start()
    memo.mirror_task = asyncio.create_task(mirror.run(), name="mirror")


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    for task in memo.get("tasks", []):  # the writers, one after the other
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    if "elector_thread" in memo:  # hands the Lease back once the writers have stopped
        await memo.elector_thread.stop()
    if "mirror_task" in memo:
        memo.mirror_task.cancel()
        await asyncio.gather(memo.mirror_task, return_exceptions=True)
    for informer in memo.get("informers", ()):
        await informer.stop()
    if "mirror" in memo:
        await memo.mirror.close()
    if "kube" in memo:  # (the Lease's client is closed by the elector's thread)
        await memo.kube.close()


@kopf.on.probe(id="controller_idle_seconds")
async def controller_idle(memo: kopf.Memo, **_: Any) -> float:
    """Seconds since the last reconcile pass (a liveness probe can alert on it)."""
    idle: float = time.monotonic() - memo.controller.last_pass
    return round(idle, 1)


@kopf.on.probe(id="leader")
async def leader(memo: kopf.Memo, **_: Any) -> bool:
    return bool(memo.elector.is_leader)


@kopf.on.probe(id="mirror_backlog")
async def mirror_backlog(memo: kopf.Memo, **_: Any) -> int:
    return int(memo.mirror.backlog)


@kopf.on.probe(id="informers_synced")
async def informers_synced(memo: kopf.Memo, **_: Any) -> bool:
    return all(i.synced.is_set() for i in memo.get("informers", ()))
