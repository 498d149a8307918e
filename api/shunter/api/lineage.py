"""A job's place in its chain, as GET /status and the UI's job page show it.

Upstream: each of its dependencies with its state, judged by the operator's own rule
(shunter.domain.dependencies.judge_condition) on what the API's watch cache holds, or
for a job whose TrainingJob is gone, on its last row in the history. Downstream: the
jobs of its namespace that name it, from the cache (an index kept as the watch
delivers changes, shunter.api.jobcache). Both stay in the job's namespace: a job can
only name jobs of its own, so nothing of another namespace is ever shown.

Frozen and hashable: the rendered body of a job is cached per version of the job and
of its lineage (shunter.api.rendering).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from shunter.domain.dependencies import Absent, Upstream, judge_condition
from shunter.domain.model import Job


@dataclass(frozen=True)
class UpstreamView:
    name: str
    condition: str
    step: int | None
    state: str  # met, waiting, impossible, or unknown (the history could not be read)
    why: str
    status: str | None
    deleted: bool


@dataclass(frozen=True)
class DownstreamView:
    name: str
    condition: str
    step: int | None
    status: str


@dataclass(frozen=True)
class Lineage:
    upstream: tuple[UpstreamView, ...] = ()
    downstream: tuple[DownstreamView, ...] = ()


UNKNOWN = "unknown"


def lineage_of(
    job: Job,
    *,
    found: Mapping[str, Upstream | Absent | None],
    dependents: Iterable[Job],
) -> Lineage:
    """`found`: each upstream name's job (live, or from the history), MISSING, or None
    when the history could not be read."""
    upstream = []
    for dependency in job.spec.depends_on:
        known = found.get(dependency.name)
        if known is None or known is Absent.PENDING:
            upstream.append(UpstreamView(dependency.name, dependency.condition, dependency.step,
                                         UNKNOWN, "the history cannot be read now", None,
                                         deleted=True))  # fmt: skip
            continue
        judged = judge_condition(dependency, known)
        live = isinstance(known, Upstream) and known.live
        phase = known.phase.value if isinstance(known, Upstream) and known.phase else None
        upstream.append(UpstreamView(dependency.name, dependency.condition, dependency.step,
                                     judged.state.value, judged.why, phase,
                                     deleted=not live))  # fmt: skip
    downstream = []
    for other in sorted(dependents, key=lambda j: j.key.name):
        for dependency in other.spec.depends_on:
            if dependency.name == job.key.name:
                phase = other.status.phase.value if other.status.phase else "queued"
                downstream.append(DownstreamView(other.key.name, dependency.condition,
                                                 dependency.step, phase))  # fmt: skip
    return Lineage(tuple(upstream), tuple(downstream))
