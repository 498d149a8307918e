"""`/api/training`: accounting, like Slurm's sacct/sreport (GET /usage) and sshare
(GET /shares).

Both read one namespace (the guard's `list` there) or, with `namespace=*`, every one:
the guard then asks `list` on trainingjobs cluster-wide, which a ClusterRole bound by
a ClusterRoleBinding grants and a namespace's RoleBinding does not
(shunter.api.dependencies).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import Query

from shunter.api.dependencies import ALL_NAMESPACES, ALL_NAMESPACES_KEY, Namespace, Service
from shunter.api.errors import Unavailable
from shunter.api.routes.common import ERRORS, guarded_router
from shunter.api.schemas import SharesReport, UsageReport
from shunter.api.shares import queue_shares, weighted_shares
from shunter.api.usage import Window, allocated_by_queue, summarize

router = guarded_router()
EVERY_NAMESPACE: dict[str, Any] = {ALL_NAMESPACES_KEY: True}


@router.get("/usage", response_model=UsageReport, responses=ERRORS,
            openapi_extra=EVERY_NAMESPACE)  # fmt: skip
async def usage(
    service: Service,
    namespace: Namespace,
    by: Annotated[Literal["namespace", "user", "queue"], Query(description="Group by")] = (
        "namespace"
    ),
    since: Annotated[datetime | None, Query(description="Default: `until` less 7 days")] = None,
    until: Annotated[datetime | None, Query(description="Default: now")] = None,
    step: Annotated[Literal["hour", "day"], Query(description="Bucket width (UTC)")] = "day",
) -> UsageReport:
    """GPU-hours allocated, run and lost, runs, waits and outcomes of the runs in a
    window, per namespace, user or queue and per bucket, from PostgreSQL. `gaps`
    counts the runs the mirror never wrote (they left status.history while PostgreSQL
    was unreachable). `namespace=*`: every namespace (needs a cluster-wide role)."""
    window = Window.of(since=since, until=until, step=step, now=datetime.now(UTC))
    rows, gaps = await service.history.runs(
        namespace=None if namespace == ALL_NAMESPACES else namespace,
        since=window.since, until=window.until,
    )  # fmt: skip
    return summarize(rows, by=by, window=window, namespace=namespace, gaps=gaps, step=step)


@router.get("/shares", response_model=SharesReport, responses=ERRORS,
            openapi_extra=EVERY_NAMESPACE)  # fmt: skip
async def shares(
    service: Service,
    namespace: Namespace,
    window_hours: Annotated[
        float, Query(gt=0, le=24 * 366, description="The usage window (hours)")
    ] = 24 * 7,
) -> SharesReport:
    """Each queue's weight, its weight normalized in its cohort, its share and
    weighted share and decayed usage (as the operator keeps them in the queue's
    status), the GPUs its jobs hold now and the GPU-hours they were allocated over the
    window, and the same per namespace."""
    visible = None if namespace == ALL_NAMESPACES else namespace
    now = datetime.now(UTC)
    since = now - timedelta(hours=window_hours)
    used: dict[tuple[str, str], float] | None
    try:
        rows, _ = await service.history.runs(namespace=visible, since=since, until=now)
    except Unavailable:
        used = None  # the shares are the cluster's: they do not wait for PostgreSQL
    else:
        used = allocated_by_queue(rows, since=since, until=now)
    cache = service.cache
    jobs = cache.jobs.store.values()
    weighted = weighted_shares(dict(cache.queues.store), jobs)
    lines = queue_shares(cache.fairness.store.values(), jobs=jobs, usage=used, visible=visible,
                         weighted=weighted)  # fmt: skip
    return SharesReport(namespace=namespace, window_hours=window_hours,
                        usage_available=used is not None, queues=lines)  # fmt: skip
