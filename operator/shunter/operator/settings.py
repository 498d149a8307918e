"""Operator settings, read from the environment (the Helm chart sets them).

| variable | default | meaning |
| --- | --- | --- |
| SHUNTER_MAX_RUNNING | 1 | jobs holding a slot at once (starting, running, stopping) |
| SHUNTER_GPU_BUDGET | 0 | GPUs all admitted jobs may hold together, a cap on top of the |
|  |  | nodes' capacity; 0 = no budget |
| SHUNTER_NAMESPACE_MAX_GPUS | 0 | GPUs the admitted jobs of one namespace may hold together; |
|  |  | a namespace at its cap waits (NamespaceQuota), blocking no one; 0 = no cap |
| SHUNTER_GRACE_MARGIN_SECONDS | 10 | extra wait after a job's grace period before force-deleting |
| SHUNTER_START_TIMEOUT_SECONDS | 300 | a job still `starting` this long after its admission was |
|  |  | written releases its slot and is requeued (StartTimeout) |
| SHUNTER_START_ATTEMPTS | 3 | start timeouts before the job fails |
| SHUNTER_BACKOFF_SECONDS | 10 | first backoff after a start timeout or a failed run; |
|  |  | doubles each time |
| SHUNTER_BACKOFF_MAX_SECONDS | 600 | longest backoff |
| SHUNTER_PREEMPTION_LIMIT | 3 | preemptions within the window after which a job is |
|  |  | protected ... |
| SHUNTER_PREEMPTION_WINDOW_SECONDS | 600 | ... (the window) ... |
| SHUNTER_PREEMPTION_MIN_RUN_SECONDS | 60 | ... until it has run this long since it last started |
| SHUNTER_CHECKPOINT_SIZE | (none) | a checkpoint claim of this size for every job that names |
|  |  | none; unset: an emptyDir |
| SHUNTER_CHECKPOINT_STORAGE_CLASS | (cluster default) | storage class of those claims |
| SHUNTER_ALLOWED_CLAIMS | (none) | claims jobs may mount besides those labelled |
|  |  | `shunter.dev/checkpoints: "true"`: `ns/name,ns/*` |
| SHUNTER_NAMESPACE | (all) | watch these namespaces (comma-separated) instead of the |
|  |  | whole cluster (shunter.domain.scope) |
| SHUNTER_EXCLUDE_NAMESPACES | kube-system | namespaces whose jobs are never served |
| SHUNTER_LEASE_NAMESPACE | default | where the leader-election Lease lives |
| SHUNTER_LEASE_NAME | shunter-operator | its name |
| SHUNTER_IDENTITY | hostname-random | this replica's identity in the Lease (unique per replica) |
| SHUNTER_LEASE_SECONDS | 15 | the Lease's duration: a standby takes over this long after |
|  |  | it last saw the leader renew |
| SHUNTER_RENEW_SECONDS | 2 | how often the leader renews (and a standby looks) |
| SHUNTER_RENEW_DEADLINE_SECONDS | 10 | the leader stops acting when it could not renew for this |
|  |  | long (renew < deadline < lease) |
| DATABASE_URL | (none) | PostgreSQL for the mirror; unset: the mirror is off (logged) |
| SHUNTER_RESYNC_SECONDS | 30 | periodic look at every unfinished job even without events |
| SHUNTER_USAGE_WRITE_SECONDS | 30 | how often the decayed usage of queues with admission fair |
|  |  | sharing is written to their status (at most one write per queue) |
| SHUNTER_QUEUE_POSITIONS | 20 | how many queued jobs per queue get their exact position in status |
| SHUNTER_POLICIES | (none) | the installer's ValidatingAdmissionPolicies (names, comma- |
|  |  | separated): a job is dry-run against them before its Pods are |
|  |  | created, and fails (PolicyViolation) if one refuses it now |
| SHUNTER_ESTIMATES | true | keep a plan of the queue with every queued job's estimated |
|  |  | start (shunter.domain.estimates); false: no plan, no estimates |
| SHUNTER_ESTIMATE_SECONDS | 5 | the plan is computed again at most this often (and at most |
|  |  | a fifth of the time: a slow plan waits longer) |
| SHUNTER_USAGE_RETENTION_DAYS | 90 | the mirror deletes accounting rows of runs that ended longer |
|  |  | ago than this, hourly (0: keep them for ever) |
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import timedelta

from shunter.domain.admission import Limits
from shunter.domain.claims import ALLOWED_SETTING, parse_allowed
from shunter.domain.scope import EXCLUDE_SETTING, WATCH_SETTING, Scope
from shunter.operator.leadership import Timing
from shunter.operator.rules import Rules

# Accounting rows are kept this long by default (the chart's usage.retentionDays).
RETENTION_DAYS = 90


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


def _seconds(name: str, default: int, *, minimum: int = 0) -> timedelta:
    return timedelta(seconds=_int(name, default, minimum=minimum))


def _bool(name: str, default: bool) -> bool:
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false"):
        raise SettingsError(f"{name}={raw!r} is not true or false")
    return raw == "true"


def _allowed_claims() -> frozenset[str]:
    try:
        return parse_allowed(os.environ.get(ALLOWED_SETTING))
    except ValueError as exc:
        raise SettingsError(str(exc)) from exc


@dataclass(frozen=True)
class Settings:
    rules: Rules
    scope: Scope
    lease_namespace: str
    lease_name: str
    identity: str
    database_url: str | None
    resync: timedelta
    lease: Timing = field(default_factory=Timing)
    # The installer's ValidatingAdmissionPolicies, by name (SHUNTER_POLICIES).
    policies: frozenset[str] = frozenset()
    # How long the mirror keeps a run's accounting row (SHUNTER_USAGE_RETENTION_DAYS;
    # 0: for ever).
    usage_retention: timedelta | None = None
    # How often queues' decayed usage is written to their status.
    usage_write: timedelta = timedelta(seconds=30)
    # The kept plan of start-time estimates (shunter.operator.estimating): on or off,
    # and how often at most it is computed again.
    estimates: bool = True
    estimate_every: timedelta = timedelta(seconds=5)

    @property
    def limits(self) -> Limits:
        return self.rules.limits

    @classmethod
    def from_env(cls) -> Settings:
        rules = Rules(
            limits=Limits(
                max_running=_int("SHUNTER_MAX_RUNNING", 1, minimum=1),
                gpu_budget=_int("SHUNTER_GPU_BUDGET", 0, minimum=0),
                namespace_gpus=_int("SHUNTER_NAMESPACE_MAX_GPUS", 0, minimum=0),
            ),
            grace_margin=_seconds("SHUNTER_GRACE_MARGIN_SECONDS", 10),
            exact_positions=_int("SHUNTER_QUEUE_POSITIONS", 20, minimum=1),
            start_timeout=_seconds("SHUNTER_START_TIMEOUT_SECONDS", 300, minimum=1),
            start_attempts=_int("SHUNTER_START_ATTEMPTS", 3, minimum=1),
            backoff_base=_seconds("SHUNTER_BACKOFF_SECONDS", 10),
            backoff_max=_seconds("SHUNTER_BACKOFF_MAX_SECONDS", 600),
            preemption_limit=_int("SHUNTER_PREEMPTION_LIMIT", 3, minimum=1),
            preemption_window=_seconds("SHUNTER_PREEMPTION_WINDOW_SECONDS", 600),
            min_run=_seconds("SHUNTER_PREEMPTION_MIN_RUN_SECONDS", 60),
            checkpoint_size=os.environ.get("SHUNTER_CHECKPOINT_SIZE") or None,
            checkpoint_storage_class=os.environ.get("SHUNTER_CHECKPOINT_STORAGE_CLASS") or None,
            allowed_claims=_allowed_claims(),
            report_url=_report_url(),
            max_sized_grace=_seconds("SHUNTER_MAX_SIZED_GRACE_SECONDS", 600, minimum=1),
        )
        try:
            lease = Timing(
                lease=_int("SHUNTER_LEASE_SECONDS", 15, minimum=2),
                renew=_int("SHUNTER_RENEW_SECONDS", 2, minimum=1),
                deadline=_int("SHUNTER_RENEW_DEADLINE_SECONDS", 10, minimum=1),
            )
        except ValueError as exc:
            raise SettingsError(str(exc)) from exc
        scope = Scope.parse(os.environ.get(WATCH_SETTING), os.environ.get(EXCLUDE_SETTING))
        if not scope.cluster_wide and not scope.namespaces:
            raise SettingsError(
                f"every namespace of {WATCH_SETTING} is in {EXCLUDE_SETTING}: nothing to serve"
            )
        return cls(
            rules=rules,
            lease=lease,
            scope=scope,
            lease_namespace=os.environ.get("SHUNTER_LEASE_NAMESPACE", "default"),
            lease_name=os.environ.get("SHUNTER_LEASE_NAME", "shunter-operator"),
            identity=os.environ.get("SHUNTER_IDENTITY")
            or f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}",
            database_url=os.environ.get("DATABASE_URL") or None,
            resync=_seconds("SHUNTER_RESYNC_SECONDS", 30, minimum=1),
            policies=frozenset(
                n.strip() for n in os.environ.get("SHUNTER_POLICIES", "").split(",") if n.strip()
            ),
            usage_retention=_retention(),
            usage_write=_seconds("SHUNTER_USAGE_WRITE_SECONDS", 30, minimum=1),
            estimates=_bool("SHUNTER_ESTIMATES", True),
            estimate_every=_seconds("SHUNTER_ESTIMATE_SECONDS", 5, minimum=1),
        )


def _retention() -> timedelta | None:
    days = _int("SHUNTER_USAGE_RETENTION_DAYS", RETENTION_DAYS, minimum=0)
    return timedelta(days=days) if days else None


def _report_url() -> str | None:
    """SHUNTER_REPORT_URL: where trainer Pods reach the API's report channel (for
    example http://shunter-api.shunter-system.svc:8000/api/trainer/v1/report); unset:
    trainers are not asked to report."""
    url = os.environ.get("SHUNTER_REPORT_URL", "").strip()
    if not url:
        return None
    if not url.startswith(("http://", "https://")):
        raise SettingsError(f"SHUNTER_REPORT_URL={url!r} is not an http(s) URL")
    return url
