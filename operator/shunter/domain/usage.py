"""Accounting: what one run of a job held, ran, lost and waited, and how runs add up.

One attempt (status.history[], shunter.domain.model.Attempt) is the unit, as one
job step is in Slurm's sacct:

- **allocated**: GPU-seconds from its admission to its end (the GPUs were the job's,
  whether its Pods were running, starting, or stopping);
- **run**: GPU-seconds from when all its Pods were running to its end (0 when it never
  ran);
- **lost**: GPU-seconds of work thrown away: from its last complete checkpoint to the
  stop where the trainer reports checkpoints, else the whole attempt (the operator
  records the seconds when the attempt ends; a completed attempt loses nothing);
- **wait**: seconds from when it began to wait for its GPUs to its admission;
- **outcome**: how it ended, one of OUTCOMES.

`spread` cuts an interval over fixed buckets (an hour, a day), so a run of three days
counts a third in each of them, not all on the day it ended; lost work is counted
where the attempt ended (the moment it was lost), waits where they ended (the
admission). The API sums rows with these (shunter.api.usage); this module has no I/O.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from shunter.domain.model import Attempt

# An attempt's reason (shunter.operator.stopping) -> its outcome.
OUTCOMES = {
    "Completed": "completed",
    "Failed": "failed",
    "PodVanished": "failed",
    "DeadlineExceeded": "deadline",
    "StartTimeout": "start-timeout",
    "Cancelled": "cancelled",
    "Preempted": "preempted",
    "TimeSliced": "time-sliced",
    "Suspended": "suspended",
}
OTHER = "other"

STEPS = {"hour": timedelta(hours=1), "day": timedelta(days=1)}

# Upper bounds (seconds) of the wait-time histogram, the API's and the metric's alike:
# from "admitted at once" to "waited a day".
WAIT_BOUNDS = (10.0, 60.0, 300.0, 900.0, 3600.0, 4 * 3600.0, 12 * 3600.0, 86400.0)


def outcome_of(reason: str | None) -> str:
    return OUTCOMES.get(reason or "", OTHER)


@dataclass(frozen=True, kw_only=True)
class AttemptUsage:
    """One finished attempt, as the accounting keeps it (GPUs: every Pod's together)."""

    gpus: int
    queued_at: datetime | None
    admitted_at: datetime | None
    running_at: datetime | None
    finished_at: datetime
    lost_seconds: float | None
    outcome: str

    @property
    def allocated_seconds(self) -> float:
        return _seconds(self.admitted_at, self.finished_at)

    @property
    def run_seconds(self) -> float:
        return _seconds(self.running_at, self.finished_at)

    @property
    def wait_seconds(self) -> float | None:
        if self.queued_at is None or self.admitted_at is None:
            return None
        return _seconds(self.queued_at, self.admitted_at)

    @property
    def lost_gpu_seconds(self) -> float:
        """The work lost; the whole attempt when the operator recorded no figure."""
        lost = self.lost_seconds if self.lost_seconds is not None else self.run_seconds
        if self.outcome == "completed":
            lost = 0.0
        return self.gpus * lost


def usage_of(attempt: Attempt, *, gpus: int) -> AttemptUsage | None:
    """A finished attempt's accounting; None while it runs. Attempts recorded before
    the accounting fields existed count from their start (admitted and ran then)."""
    if attempt.finished_at is None:
        return None
    return AttemptUsage(
        gpus=gpus,
        queued_at=attempt.queued_at,
        admitted_at=attempt.admitted_at or attempt.started_at,
        running_at=attempt.running_at if attempt.admitted_at else attempt.started_at,
        finished_at=attempt.finished_at,
        lost_seconds=attempt.lost_seconds,
        outcome=outcome_of(attempt.reason),
    )


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())


def bucket_of(moment: datetime, step: timedelta) -> datetime:
    """The start of the bucket holding `moment`: buckets are aligned on UTC midnight."""
    moment = moment.astimezone(UTC)
    midnight = moment.replace(hour=0, minute=0, second=0, microsecond=0)
    whole = (moment - midnight) // step
    return midnight + whole * step


def buckets(since: datetime, until: datetime, step: timedelta) -> list[datetime]:
    """Every bucket start that overlaps [since, until)."""
    found, start = [], bucket_of(since, step)
    while start < until and since < until:
        found.append(start)
        start += step
    return found


def spread(
    start: datetime, end: datetime, step: timedelta, *, since: datetime, until: datetime
) -> Iterator[tuple[datetime, float]]:
    """(bucket start, seconds of [start, end) in it), clipped to [since, until)."""
    start, end = max(start, since), min(end, until)
    while start < end:
        bucket = bucket_of(start, step)
        stop = min(bucket + step, end)
        yield bucket, (stop - start).total_seconds()
        start = stop


def wait_bucket(seconds: float) -> int:
    """The index of the histogram bucket (WAIT_BOUNDS, then +Inf) holding a wait."""
    for index, bound in enumerate(WAIT_BOUNDS):
        if seconds <= bound:
            return index
    return len(WAIT_BOUNDS)
