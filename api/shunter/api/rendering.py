"""JSON bodies of the hot GETs, rendered once per version of what they show.

GET /status renders a job's JSON once per (uid, resourceVersion): every later read of
an unchanged job sends the same bytes without building or validating a model again.
A running job or one with a checkpoint says how old its checkpoint is and what a stop
would lose now (shunter.api.appraisal): its body is rendered again at most once a
second. GET /queue and GET /live (the UI's list, which every /stream of the namespace
pushes too) render once per version of the job cache (and namespace and limit, and
second). A view's key always holds its namespace: a kept body is served only to
callers the guard allowed to read that namespace. Both caches are bounded; what they
hold is derived from the watch cache only, so they are never staler than it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from shunter.api.appraisal import Appraisal
from shunter.api.lineage import Lineage
from shunter.api.schemas import JobPublic
from shunter.domain.model import Job

JOBS_KEPT = 50_000
VIEWS_KEPT = 64


class Renderer:
    def __init__(self) -> None:
        self._jobs: OrderedDict[tuple[str, str], tuple[object, bytes]] = OrderedDict()
        self._views: OrderedDict[tuple[object, ...], bytes] = OrderedDict()

    def job(self, job: Job, *, at: Appraisal, lineage: Lineage | None = None) -> bytes:
        """`lineage`: its upstream and downstream (GET /status), part of the version."""
        key = (job.uid, job.resource_version)
        stamp = (at.key_of(job), lineage)
        found = self._jobs.get(key)
        if found is None or found[0] != stamp:  # one body per job: the latest second's
            public = JobPublic.of(job, at=at, lineage=lineage)
            found = (stamp, public.model_dump_json().encode())
            self._jobs[key] = found
            if len(self._jobs) > JOBS_KEPT:
                self._jobs.popitem(last=False)
        return found[1]

    def view(self, key: tuple[object, ...], render: Callable[[], bytes]) -> bytes:
        """A whole response body, rendered again only when key (a version) changes."""
        found = self._views.get(key)
        if found is None:
            found = render()
            self._views[key] = found
            if len(self._views) > VIEWS_KEPT:
                self._views.popitem(last=False)
        return found
