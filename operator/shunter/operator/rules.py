"""The operator's rules as plain values (pure): limits, timeouts, backoffs, preemption.

`settings` reads them from the environment; decision code takes them as arguments,
so tests can set any of them without touching the environment.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from shunter.domain.admission import Limits


@dataclass(frozen=True)
class Rules:
    limits: Limits = field(default_factory=Limits)
    # Extra wait after a job's grace period before its Pods are force-deleted.
    grace_margin: timedelta = timedelta(seconds=10)
    # Queued jobs per queue whose exact position is written to status.
    exact_positions: int = 20
    # A job still `starting` after this long releases its slot and is requeued.
    start_timeout: timedelta = timedelta(seconds=300)
    # After this many start timeouts the job fails.
    start_attempts: int = 3
    # Backoff before a requeued or retried job may start again: base * 2^n, capped.
    backoff_base: timedelta = timedelta(seconds=10)
    backoff_max: timedelta = timedelta(seconds=600)
    # Preemption anti-loop: a job preempted `preemption_limit` times within
    # `preemption_window` is not preempted again before it has run `min_run`.
    preemption_limit: int = 3
    preemption_window: timedelta = timedelta(seconds=600)
    min_run: timedelta = timedelta(seconds=60)
    # Victims are chosen by the work they would lose, from the trainers' reports
    # (shunter.operator.preemption); False: today's order (fewest, lowest priority,
    # most recently started) whatever they report. The bench compares the two.
    checkpoint_aware: bool = True
    # A stop's grace period is sized from the job's observed checkpoint writes
    # (shunter.operator.stopping.grace_of), up to this when its queue sets no bound.
    size_grace: bool = True
    max_sized_grace: timedelta = timedelta(seconds=600)
    # The report channel's address told to trainers (None: no reports, and the Pods
    # look exactly as before: no token volume, no variables).
    report_url: str | None = None
    # A checkpoint claim for every job that names none (None: an emptyDir).
    checkpoint_size: str | None = None
    checkpoint_storage_class: str | None = None
    # Claims any job of their namespace may mount besides the labelled ones
    # (`namespace/name` or `namespace/*`; see shunter.domain.claims).
    allowed_claims: frozenset[str] = frozenset()

    def backoff(self, count: int) -> timedelta:
        """The wait after the count-th requeue or failure (count >= 1)."""
        seconds = self.backoff_base.total_seconds() * 2 ** max(0, count - 1)
        return timedelta(seconds=min(seconds, self.backoff_max.total_seconds()))
