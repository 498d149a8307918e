"""Operator settings, read from the environment (the Helm chart sets them).

| variable | default | meaning |
| --- | --- | --- |
| SHUNTER_MAX_RUNNING | 1 | jobs holding a slot at once (starting, running, cancelling) |
| SHUNTER_GPU_BUDGET | 0 | GPUs all admitted jobs may request together; 0 = no budget |
| SHUNTER_GRACE_MARGIN_SECONDS | 10 | extra wait after a job's grace period before force-deleting |
| SHUNTER_NAMESPACE | (all) | watch one namespace instead of the whole cluster |
| SHUNTER_LEASE_NAMESPACE | default | where the leader-election Lease lives |
| SHUNTER_LEASE_NAME | shunter-operator | its name |
| SHUNTER_IDENTITY | hostname-random | this replica's identity in the Lease |
| DATABASE_URL | (none) | PostgreSQL for the mirror; unset: the mirror is off (logged) |
| SHUNTER_RESYNC_SECONDS | 30 | periodic reconcile even without events |
| SHUNTER_QUEUE_POSITIONS | 20 | how many queued jobs get their exact position in status |
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass
from datetime import timedelta

from shunter.operator.admission import Limits


class SettingsError(ValueError):
    """An environment variable has a value the operator cannot use."""


def _int(name: str, default: int, *, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name}={raw!r} is not an integer") from exc
    if value < minimum:
        raise SettingsError(f"{name}={value} must be at least {minimum}")
    return value


@dataclass(frozen=True)
class Settings:
    limits: Limits
    grace_margin: timedelta
    namespace: str | None
    lease_namespace: str
    lease_name: str
    identity: str
    database_url: str | None
    resync: timedelta
    exact_positions: int = 20

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            limits=Limits(
                max_running=_int("SHUNTER_MAX_RUNNING", 1, minimum=1),
                gpu_budget=_int("SHUNTER_GPU_BUDGET", 0, minimum=0),
            ),
            grace_margin=timedelta(seconds=_int("SHUNTER_GRACE_MARGIN_SECONDS", 10, minimum=0)),
            namespace=os.environ.get("SHUNTER_NAMESPACE") or None,
            lease_namespace=os.environ.get("SHUNTER_LEASE_NAMESPACE", "default"),
            lease_name=os.environ.get("SHUNTER_LEASE_NAME", "shunter-operator"),
            identity=os.environ.get("SHUNTER_IDENTITY")
            or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}",
            database_url=os.environ.get("DATABASE_URL") or None,
            resync=timedelta(seconds=_int("SHUNTER_RESYNC_SECONDS", 30, minimum=1)),
            exact_positions=_int("SHUNTER_QUEUE_POSITIONS", 20, minimum=1),
        )
