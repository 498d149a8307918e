"""What one reconcile of one job decides: a new status plus the side effects.

Decision modules (lifecycle, cancellation) return these values; the controller
carries them out (logs, then the status write, then the Pod call, then Events), so
the decisions themselves stay pure and unit-testable.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from shunter.operator.model import JobStatus


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class DeletePod:
    namespace: str
    name: str
    grace_seconds: int


@dataclass(frozen=True)
class Decision:
    status: JobStatus
    create_pod: dict[str, Any] | None = None
    delete_pod: DeletePod | None = None
    events: tuple[Event, ...] = ()
    logs: tuple[str, ...] = ()
    # When the job needs another look even if nothing changes (e.g. a grace deadline).
    wake_at: datetime | None = None
    # The GPU slot is free again (for the log line explaining why).
    released: bool = False
