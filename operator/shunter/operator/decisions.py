"""What one reconcile of one job decides: a new status plus the side effects.

Decision modules (lifecycle, stopping, planning) return these values; the controller
carries them out (logs, then the status write, then the object calls, then Events),
so the decisions themselves stay pure and unit-testable.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shunter.domain.model import JobKey, JobStatus


@dataclass(frozen=True, slots=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True, slots=True)
class DeletePod:
    namespace: str
    name: str
    grace_seconds: int


@dataclass(frozen=True, slots=True)
class Decision:
    status: JobStatus
    # Objects to create, in order (a checkpoint claim and a Service before the Pods);
    # each has a deterministic name, so a retried create answers 409 and is done.
    # (podspec.Objects: built when read, so a decision waiting for its write holds
    # the job it is built from, not the manifests.)
    create: Sequence[dict[str, Any]] = ()
    delete_pods: tuple[DeletePod, ...] = ()
    events: tuple[Event, ...] = ()
    logs: tuple[str, ...] = ()
    # When the job needs another look even if nothing changes (e.g. a grace deadline).
    wake_at: datetime | None = None
    # The slot is free again (for the log line explaining why).
    released: bool = False
    # An array's (shunter.domain.arrays): the indexes of the runs to create, and the
    # merge patches carrying its cancel, suspend or resume to its runs.
    runs: tuple[int, ...] = ()
    patch_jobs: tuple[tuple[JobKey, dict[str, Any]], ...] = ()

    @property
    def create_pods(self) -> tuple[dict[str, Any], ...]:
        return tuple(m for m in self.create if m.get("kind") == "Pod")
