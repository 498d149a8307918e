"""kopf registrations: thin handlers that feed the indexes, the mirror and the loop.

No handler decides anything. Indexes hold parsed views of every TrainingJob and
every trainer Pod; event handlers wake the controller and offer the job to the
mirror. Only `on.event` and `index` handlers are used: they need no finalizers and
no progress annotations, so a job stays deletable while the operator is down.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import kopf

from shunter.operator.controller import EVENT_WORKERS, Controller
from shunter.operator.kube import Kube, load_api_client
from shunter.operator.leadership import LeaderElector
from shunter.operator.mirror import Mirror
from shunter.operator.model import GROUP, JOB_NAME_LABEL, PLURAL, VERSION, Job, PodView
from shunter.operator.settings import Settings

log = logging.getLogger("shunter.operator")


@kopf.on.login()
def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    return kopf.login_via_client(**kwargs)


@kopf.on.startup()
async def start(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    config: Settings = memo.config  # parsed and checked by main()
    settings.watching.label_selectors["v1", "pods"] = JOB_NAME_LABEL
    settings.networking.request_timeout = 60
    settings.persistence.finalizer = "shunter.dev/operator"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix="shunter.dev")
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix="shunter.dev")
    settings.posting.level = logging.WARNING
    kube = Kube(load_api_client())
    mirror = Mirror(config.database_url)
    controller = Controller(kube, config)
    elector = LeaderElector(
        kube,
        namespace=config.lease_namespace,
        name=config.lease_name,
        identity=config.identity,
        on_change=lambda _leader: controller.forget(),
    )
    controller.leader = lambda: elector.is_leader
    memo.kube, memo.mirror, memo.controller, memo.elector = kube, mirror, controller, elector
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
    for task in memo.get("tasks", []):
        task.cancel()
    await asyncio.gather(*memo.get("tasks", []), return_exceptions=True)
    if "mirror" in memo:
        await memo.mirror.close()
    if "kube" in memo:
        memo.kube.close()


@kopf.index(GROUP, VERSION, PLURAL)
def trainingjobs(body: kopf.Body, **_: Any) -> dict[Any, Job]:
    job = Job.parse(body)
    return {job.key: job}


@kopf.index("v1", "pods", labels={JOB_NAME_LABEL: kopf.PRESENT})
def trainer_pods(body: kopf.Body, **_: Any) -> dict[Any, PodView]:
    pod = PodView.parse(body)
    return {pod.job_key: pod}


@kopf.on.event(GROUP, VERSION, PLURAL)
def job_event(type: str, body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    job = Job.parse(body)
    if type == "DELETED":
        memo.mirror.offer_deleted(job)
    else:
        memo.mirror.offer(job)
    memo.controller.attach(kwargs["trainingjobs"], kwargs["trainer_pods"])


@kopf.on.event("v1", "pods", labels={JOB_NAME_LABEL: kopf.PRESENT})
def pod_event(memo: kopf.Memo, **kwargs: Any) -> None:
    # kopf passes every index to every handler, by the indexing function's name.
    memo.controller.attach(kwargs["trainingjobs"], kwargs["trainer_pods"])


@kopf.on.probe(id="controller_idle_seconds")
def controller_idle(memo: kopf.Memo, **_: Any) -> float:
    """Seconds since the last reconcile pass (a liveness probe can alert on it)."""
    idle: float = time.monotonic() - memo.controller.last_pass
    return round(idle, 1)


@kopf.on.probe(id="leader")
def leader(memo: kopf.Memo, **_: Any) -> bool:
    return bool(memo.elector.is_leader)


@kopf.on.probe(id="mirror_backlog")
def mirror_backlog(memo: kopf.Memo, **_: Any) -> int:
    return int(memo.mirror.backlog)
