"""kopf registrations: start-up, shutdown and probes; the informers feed the book.

kopf runs the operator (signals, liveness endpoint, probes, logging); the watches are
Shunter's own informers (shunter.kube.informer), the same implementation the API's
cache uses: a watch event costs a JSON parse and a dict update, where a kopf resource
handler costs a per-object worker, diffing and handler dispatch (bench/RESULTS.md,
"operator"). Every handler is async and runs on kopf's event loop; nothing touches
loop state from another thread.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from shunter.kube import Informer, Kube, connect
from shunter.kube.resources import PODS, TRAINING_JOBS
from shunter.operator.actions import Actions
from shunter.operator.book import JobBook
from shunter.operator.controller import EVENT_WORKERS, Controller
from shunter.operator.leadership import LeaderElector
from shunter.operator.mirror import Mirror
from shunter.operator.model import JOB_NAME_LABEL, Job, JobKey, PodView
from shunter.operator.settings import Settings

log = logging.getLogger("shunter.operator")


@kopf.on.login()
async def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    # kopf's own watches are unused (no resource handlers); it still wants a login.
    return kopf.login_via_client(**kwargs)


def _on_job(book: JobBook, mirror: Mirror, controller: Controller) -> Any:
    def changed(kind: str, job: Job) -> None:
        if kind == "DELETED":
            book.remove_job(job.key)
            mirror.offer_deleted(job)
        else:
            book.put_job(job)
            mirror.offer(job)
        controller.wake()

    return changed


def _on_pod(book: JobBook, controller: Controller) -> Any:
    def changed(kind: str, pod: PodView) -> None:
        if kind == "DELETED":
            book.remove_pod(pod)
        else:
            book.put_pod(pod)
        controller.wake()

    return changed


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: Settings = memo.config  # parsed and checked by main()
    settings.networking.request_timeout = 60
    settings.posting.level = logging.WARNING
    kube = Kube(connect())
    book = JobBook()
    mirror = Mirror(config.database_url)
    controller = Controller(Actions(kube), book, config)
    jobs: Informer[JobKey, Job] = Informer(
        kube, TRAINING_JOBS, namespace=config.namespace, parse=Job.parse,
        key=lambda job: job.key, on_change=_on_job(book, mirror, controller),
    )  # fmt: skip
    pods: Informer[str, PodView] = Informer(
        kube, PODS, namespace=config.namespace, label_selector=JOB_NAME_LABEL,
        parse=PodView.parse, key=lambda pod: pod.uid, on_change=_on_pod(book, controller),
    )  # fmt: skip
    informers = (jobs, pods)
    elector = LeaderElector(
        kube,
        namespace=config.lease_namespace,
        name=config.lease_name,
        identity=config.identity,
        on_change=lambda _leader: controller.forget(),
    )
    controller.leader = lambda: elector.is_leader
    controller.synced = lambda: all(i.synced.is_set() for i in informers)
    memo.kube, memo.mirror, memo.controller, memo.elector = kube, mirror, controller, elector
    memo.informers = informers
    for informer in informers:
        informer.start()
    memo.tasks = [
        asyncio.create_task(controller.run(), name="controller"),
        *(
            asyncio.create_task(controller.post_events(i), name=f"events-{i}")
            for i in range(EVENT_WORKERS)
        ),
        asyncio.create_task(elector.run(), name="leader-election"),
        asyncio.create_task(mirror.run(), name="mirror"),
    ]
    log.info(
        "shunter operator %s: max running %d, GPU budget %s, grace margin %ss, %s",
        config.identity,
        config.limits.max_running,
        config.limits.gpu_budget or "none",
        int(config.grace_margin.total_seconds()),
        f"namespace {config.namespace}" if config.namespace else "all namespaces",
    )


@kopf.on.cleanup()
async def stop(memo: kopf.Memo, **_: Any) -> None:
    tasks = memo.get("tasks", [])
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for informer in memo.get("informers", ()):
        await informer.stop()
    if "mirror" in memo:
        await memo.mirror.close()
    if "kube" in memo:
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
