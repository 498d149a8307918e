"""GET /usage: the runs of a window summed per namespace, user or queue, per bucket.

The rows are the mirror's (shunter.api.history.History.runs), each run's figures the
domain's (shunter.domain.usage): allocated and run GPU-hours are spread over the
buckets they cover, lost work is counted in the bucket where its run ended, a wait
where it ended (the admission). The gap count says how many runs the mirror never
wrote, so a total that misses some says so instead of looking complete.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from shunter.api.errors import InvalidRequest
from shunter.api.schemas import OutcomeUsage, UsageGaps, UsageGroup, UsageReport
from shunter.domain.usage import (
    STEPS,
    WAIT_BOUNDS,
    AttemptUsage,
    bucket_of,
    buckets,
    outcome_of,
    spread,
    wait_bucket,
)

HOUR = 3600.0
# A report's width: a year of days, or two months of hours.
MAX_BUCKETS = 1_500
DEFAULT_WINDOW = timedelta(days=7)
# The window's bounds: its default start and its buckets stay inside what a datetime
# holds (a `until` in year 1 was a server error; schemathesis found it).
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
UNKNOWN_USER = "(unknown)"
GROUPINGS = ("namespace", "user", "queue")
BOUND = (
    "Runs are derived from each TrainingJob's status.history, which keeps its last 20"
    " runs: a run that left it while PostgreSQL was unreachable is missing, and counted"
    " here; so are runs of jobs whose history was never mirrored."
)


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime
    step: timedelta

    @classmethod
    def of(
        cls, *, since: datetime | None, until: datetime | None, step: str, now: datetime
    ) -> Window:
        for given in (since, until):
            if given is None:
                continue
            if given.tzinfo is None:
                raise InvalidRequest("since and until need a time zone (e.g. 2026-01-01T00:00:00Z)")
            if not EARLIEST <= given <= LATEST:
                raise InvalidRequest(f"since and until must be between {EARLIEST:%Y-%m-%d} and"
                                     f" {LATEST:%Y-%m-%d}")  # fmt: skip
        end = until or now
        start = since or end - DEFAULT_WINDOW
        if start >= end:
            raise InvalidRequest("since must be before until")
        window = cls(start, end, STEPS[step])
        if (end - start) / window.step > MAX_BUCKETS:
            raise InvalidRequest(f"at most {MAX_BUCKETS} buckets: widen the step or the window")
        return window


@dataclass
class _Sums:
    allocated: dict[datetime, float] = field(default_factory=lambda: defaultdict(float))
    run: dict[datetime, float] = field(default_factory=lambda: defaultdict(float))
    lost: dict[datetime, float] = field(default_factory=lambda: defaultdict(float))
    ended: dict[datetime, int] = field(default_factory=lambda: defaultdict(int))
    waits: list[float] = field(default_factory=list)
    outcomes: dict[str, list[float]] = field(default_factory=dict)

    def add(self, run: AttemptUsage, window: Window) -> None:
        since, until, step = window.since, window.until, window.step
        gpus = run.gpus
        if run.admitted_at is not None:
            for bucket, seconds in spread(run.admitted_at, run.finished_at, step,
                                          since=since, until=until):  # fmt: skip
                self.allocated[bucket] += gpus * seconds
        if run.running_at is not None:
            for bucket, seconds in spread(run.running_at, run.finished_at, step,
                                          since=since, until=until):  # fmt: skip
                self.run[bucket] += gpus * seconds
        if since <= run.finished_at < until:
            end = bucket_of(run.finished_at, step)
            self.lost[end] += run.lost_gpu_seconds
            self.ended[end] += 1
            counts = self.outcomes.setdefault(run.outcome, [0, 0.0, 0.0])
            counts[0] += 1
            counts[1] += run.allocated_seconds * gpus
            counts[2] += run.lost_gpu_seconds
        wait = run.wait_seconds
        if wait is not None and run.admitted_at is not None and since <= run.admitted_at < until:
            self.waits.append(wait)


def run_of(row: Mapping[str, Any]) -> AttemptUsage:
    """A mirror row as the domain's run (rows from before the accounting columns count
    from their start, as shunter.domain.usage.usage_of does)."""
    admitted = row["admitted_at"]
    return AttemptUsage(
        gpus=int(row["gpus"] or 0),
        queued_at=row["queued_at"],
        admitted_at=admitted or row["started_at"],
        running_at=row["running_at"] if admitted else row["started_at"],
        finished_at=row["finished_at"],
        lost_seconds=row["lost_seconds"],
        outcome=outcome_of(row["reason"]),
    )


def key_of(row: Mapping[str, Any], by: str) -> str:
    value = row.get(by)
    return str(value) if value else UNKNOWN_USER


def summarize(
    rows: Iterable[Mapping[str, Any]],
    *,
    by: str,
    window: Window,
    namespace: str,
    gaps: Mapping[str, int],
    step: str,
) -> UsageReport:
    sums: dict[str, _Sums] = defaultdict(_Sums)
    for row in rows:
        sums[key_of(row, by)].add(run_of(row), window)
    starts = buckets(window.since, window.until, window.step)
    groups = [_group(key, sums[key], starts) for key in sorted(sums)]
    groups.sort(key=lambda g: -g.total_allocated_gpu_hours)
    return UsageReport(
        namespace=namespace, by=by, step=step, since=window.since, until=window.until,
        buckets=starts, wait_bounds=list(WAIT_BOUNDS), groups=groups,
        gaps=UsageGaps(missing_attempts=gaps.get("missing", 0), jobs=gaps.get("jobs", 0),
                       bound=BOUND),
    )  # fmt: skip


def _group(key: str, sums: _Sums, starts: list[datetime]) -> UsageGroup:
    def hours(values: Mapping[datetime, float]) -> list[float]:
        return [round(values.get(b, 0.0) / HOUR, 4) for b in starts]

    histogram = [0] * (len(WAIT_BOUNDS) + 1)
    for wait in sums.waits:
        histogram[wait_bucket(wait)] += 1
    waits = sorted(sums.waits)
    return UsageGroup(
        key=key,
        allocated_gpu_hours=hours(sums.allocated),
        run_gpu_hours=hours(sums.run),
        lost_gpu_hours=hours(sums.lost),
        attempts=[sums.ended.get(b, 0) for b in starts],
        total_allocated_gpu_hours=round(sum(sums.allocated.values()) / HOUR, 4),
        total_run_gpu_hours=round(sum(sums.run.values()) / HOUR, 4),
        total_lost_gpu_hours=round(sum(sums.lost.values()) / HOUR, 4),
        total_attempts=sum(sums.ended.values()),
        wait_seconds_p50=percentile(waits, 0.5),
        wait_seconds_p90=percentile(waits, 0.9),
        wait_seconds_max=waits[-1] if waits else None,
        wait_histogram=histogram,
        outcomes={
            name: OutcomeUsage(
                attempts=int(c[0]),
                allocated_gpu_hours=round(c[1] / HOUR, 4),
                lost_gpu_hours=round(c[2] / HOUR, 4),
            )
            for name, c in sorted(sums.outcomes.items())
        },
    )


def percentile(ordered: list[float], q: float) -> float | None:
    """The nearest-rank percentile of sorted values (None: no values)."""
    if not ordered:
        return None
    rank = max(1, -(-int(q * 1000) * len(ordered) // 1000))
    return round(ordered[min(rank, len(ordered)) - 1], 3)


def allocated_by_queue(
    rows: Iterable[Mapping[str, Any]], *, since: datetime, until: datetime
) -> dict[tuple[str, str], float]:
    """GPU-hours allocated within [since, until), per (queue, namespace)."""
    used: dict[tuple[str, str], float] = defaultdict(float)
    for row in rows:
        run = run_of(row)
        if run.admitted_at is None:
            continue
        held = sum(s for _, s in spread(run.admitted_at, run.finished_at, STEPS["day"],
                                        since=since, until=until))  # fmt: skip
        used[(row["queue"], row["namespace"])] += run.gpus * held / HOUR
    return dict(used)
