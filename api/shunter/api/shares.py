"""GET /shares: each queue's weight, share and usage, like Slurm's sshare.

The weights and the decayed usage are the operator's (fair sharing lives in the
cluster, so admission never waits for PostgreSQL): read from the TrainingQueue
objects the API watches. They are read defensively, field by field, and what a queue
does not carry is shown as unknown (None), never made up:

- `spec.fairSharing.weight` (1 when the queue sets no weight);
- `status.usage` as the operator writes it for admission fair sharing
  (shunter.domain.fairshare.Ledger): `namespaces`, a map namespace ->
  `{gpuSeconds, users}` of GPU-seconds decayed to `decayedAt`; a queue's decayed usage
  is the sum over its namespaces;
- in `status.fairSharing` (or at the top of `status`), should the operator report
  them: `share`, `weightedShare`, `decayedUsage`, and `namespaces` (a list of
  `{namespace, decayedUsage}` or a map). The operator computes a queue's weighted
  share in each pass (GPUs above its gpuQuota over its weight) without writing it (to
  keep its writes down); the API computes it with the same rule from the jobs it
  watches (`shunter.domain.queues.QuotaUse.share`, the one owner), unless the queue's
  status carries one. None for a queue of weight 0 that borrows (an infinite share).

What the API adds: the GPUs each queue's jobs hold now (the watch cache) and the
GPU-hours allocated over a recent window (the accounting in PostgreSQL; when it is
unreachable the answer says so and keeps the rest). Per-namespace figures are only
those of the namespaces the caller may list (one, or every one with `namespace=*`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from shunter.api.schemas import NamespaceShare, QueueShare
from shunter.domain.model import Job
from shunter.domain.queues import QueueView, QuotaUse


@dataclass(frozen=True)
class QueueFairness:
    """What a TrainingQueue says about fair sharing (None: it does not say)."""

    name: str
    cohort: str | None
    weight: float
    fair_sharing: bool
    share: float | None
    weighted_share: float | None
    decayed_usage: float | None
    namespaces: tuple[tuple[str, float | None], ...]

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> QueueFairness:
        spec = body.get("spec") or {}
        wanted = spec.get("fairSharing")
        status = body.get("status") or {}
        reported = status.get("fairSharing")
        if not isinstance(reported, Mapping):
            reported = status
        weight = _number(wanted.get("weight")) if isinstance(wanted, Mapping) else None
        namespaces = _namespaces(reported.get("namespaces"))
        decayed = _number(reported.get("decayedUsage"))
        ledger = status.get("usage")
        if isinstance(ledger, Mapping) and isinstance(ledger.get("namespaces"), Mapping):
            namespaces = tuple(
                (str(ns), _number(entry.get("gpuSeconds")) if isinstance(entry, Mapping) else None)
                for ns, entry in ledger["namespaces"].items()
            )
            if decayed is None:
                decayed = sum(v for _, v in namespaces if v is not None)
        return cls(
            name=body["metadata"]["name"],
            cohort=spec.get("cohort") or None,
            weight=weight if weight is not None and weight >= 0 else 1.0,
            fair_sharing=isinstance(wanted, Mapping),
            share=_number(reported.get("share")),
            weighted_share=_number(reported.get("weightedShare")),
            decayed_usage=decayed,
            namespaces=namespaces,
        )


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):  # a Kubernetes quantity written as a string
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _namespaces(raw: object) -> tuple[tuple[str, float | None], ...]:
    if isinstance(raw, Mapping):
        return tuple((str(k), _number(v)) for k, v in raw.items())
    if isinstance(raw, list):
        return tuple(
            (str(item["namespace"]), _number(item.get("decayedUsage")))
            for item in raw
            if isinstance(item, Mapping) and item.get("namespace")
        )
    return ()


def weighted_shares(specs: Mapping[str, QueueView], jobs: Iterable[Job]) -> dict[str, float]:
    """Each queue's weighted share now, by the operator's rule (finite ones only)."""
    use = QuotaUse.of(specs, [j for j in jobs if j.holds_slot])
    shares = {name: use.share(spec) for name, spec in specs.items()}
    return {name: round(v, 4) for name, v in shares.items() if math.isfinite(v)}


def current_weighted_shares(
    queues: Iterable[QueueFairness], specs: Mapping[str, QueueView], jobs: Iterable[Job]
) -> dict[str, float]:
    """Each queue's weighted share as GET /shares shows it: the one its status
    reports, else the operator's rule over the jobs holding GPUs (weighted_shares)."""
    shares = weighted_shares(specs, jobs)
    shares.update({q.name: q.weighted_share for q in queues if q.weighted_share is not None})
    return shares


def queue_shares(
    queues: Iterable[QueueFairness],
    *,
    jobs: Iterable[Job],
    usage: Mapping[tuple[str, str], float] | None,
    visible: str | None,
    weighted: Mapping[str, float] | None = None,
) -> list[QueueShare]:
    """Every queue's line; `usage` is GPU-hours per (queue, namespace) (None: unknown),
    `visible` the one namespace the caller may see (None: every one), `weighted` each
    queue's weighted share computed from the jobs (shunter.domain.queues)."""
    known = {q.name: q for q in queues}
    for name, value in (weighted or {}).items():
        if name in known and known[name].weighted_share is None:
            known[name] = replace(known[name], weighted_share=value)
    held: dict[str, int] = defaultdict(int)
    for job in jobs:
        if job.holds_slot and visible in (None, job.key.namespace):
            held[job.spec.queue] += job.spec.total_gpus
    names = set(known) | set(held) | {q for q, _ in usage or {}}
    cohorts: dict[str | None, float] = defaultdict(float)
    for queue in known.values():
        cohorts[queue.cohort] += queue.weight
    lines = []
    for name in sorted(names):
        queue = known.get(name) or QueueFairness(name, None, 1.0, False, None, None, None, ())
        lines.append(_line(queue, held=held.get(name, 0), usage=usage, visible=visible,
                           cohort_weight=cohorts.get(queue.cohort, 0.0)))  # fmt: skip
    return _with_usage_shares(lines)


def _with_usage_shares(lines: list[QueueShare]) -> list[QueueShare]:
    """Each queue's part of its cohort's GPU-hours over the window (a queue alone: all
    of its own), to set against its normalized weight."""
    totals: dict[str, float] = defaultdict(float)
    for line in lines:
        totals[line.cohort or f"queue:{line.queue}"] += line.usage_gpu_hours or 0.0
    for line in lines:
        total = totals[line.cohort or f"queue:{line.queue}"]
        if line.usage_gpu_hours is not None and total > 0:
            line.usage_share = round(line.usage_gpu_hours / total, 4)
    return lines


def _line(
    queue: QueueFairness,
    *,
    held: int,
    usage: Mapping[tuple[str, str], float] | None,
    visible: str | None,
    cohort_weight: float,
) -> QueueShare:
    decayed = {ns: value for ns, value in queue.namespaces if visible in (None, ns)}
    used = {ns: h for (q, ns), h in (usage or {}).items()
            if q == queue.name and visible in (None, ns)}  # fmt: skip
    namespaces = [
        NamespaceShare(namespace=ns, decayed_usage=decayed.get(ns),
                       usage_gpu_hours=None if usage is None else round(used.get(ns, 0.0), 4))
        for ns in sorted(set(decayed) | set(used))
    ]  # fmt: skip
    alone = queue.cohort is None or not cohort_weight
    return QueueShare(
        queue=queue.name,
        cohort=queue.cohort,
        weight=queue.weight,
        fair_sharing=queue.fair_sharing,
        normalized_weight=1.0 if alone else round(queue.weight / cohort_weight, 4),
        share=queue.share,
        weighted_share=queue.weighted_share,
        decayed_usage=queue.decayed_usage,
        gpus=held,
        usage_gpu_hours=None if usage is None else round(sum(used.values()), 4),
        namespaces=namespaces,
    )
