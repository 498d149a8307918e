"""Leader election on a coordination.k8s.io Lease: one replica admits at a time.

kopf's peering pauses operators by priority and freezes them all when priorities are
equal, so Shunter uses the Lease protocol of client-go instead: the holder renews
`renewTime` every RENEW seconds; anyone may take a Lease whose `renewTime` is older
than its `leaseDurationSeconds`; every write carries the read resourceVersion, so two
candidates never both win. A leader that cannot renew for RENEW_DEADLINE (shorter
than the lease duration) stops acting before anyone else may take over.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from shunter.kube import Conflict, Kube, KubeError, NotFound
from shunter.kube.events import format_micro_time
from shunter.kube.resources import LEASES
from shunter.operator.model import parse_time

log = logging.getLogger("shunter.operator.leadership")

LEASE_SECONDS = 15
RENEW = 2.0
RENEW_DEADLINE = 10.0


@dataclass(frozen=True)
class LeaseState:
    holder: str | None
    renewed_at: datetime | None
    duration: timedelta
    transitions: int


def may_acquire(lease: LeaseState, *, me: str, now: datetime) -> bool:
    """Pure rule: the Lease is ours, unheld, or expired."""
    if lease.holder in (None, "", me) or lease.renewed_at is None:
        return True
    return now >= lease.renewed_at + lease.duration


def _state(body: dict[str, Any]) -> LeaseState:
    spec = body.get("spec") or {}
    return LeaseState(
        holder=spec.get("holderIdentity"),
        renewed_at=parse_time(spec.get("renewTime")),
        duration=timedelta(seconds=spec.get("leaseDurationSeconds") or LEASE_SECONDS),
        transitions=spec.get("leaseTransitions") or 0,
    )


class LeaderElector:
    def __init__(
        self,
        kube: Kube,
        *,
        namespace: str,
        name: str,
        identity: str,
        on_change: Callable[[bool], None] = lambda _: None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.on_change = on_change
        self._leader = False
        self._last_renew = 0.0

    @property
    def is_leader(self) -> bool:
        return self._leader and time.monotonic() - self._last_renew < RENEW_DEADLINE

    async def run(self) -> None:
        try:
            while True:
                try:
                    renewed = await self._try_once()
                except KubeError as exc:
                    log.warning("lease %s/%s: %s", self.namespace, self.name, exc)
                    renewed = False
                except Exception:
                    # Whatever happens, the loop goes on: a dead elector is a dead operator.
                    log.exception("lease %s/%s: unexpected error", self.namespace, self.name)
                    renewed = False
                if renewed:
                    self._last_renew = time.monotonic()
                self._set(renewed or self.is_leader)
                await asyncio.sleep(RENEW)
        finally:
            if self._leader:
                await asyncio.shield(self._release())

    async def _release(self) -> None:
        """On shutdown, hand the Lease back so a successor need not wait for expiry."""
        self._leader = False
        try:
            body = await self.kube.get(LEASES, self.name, namespace=self.namespace)
            if body["spec"].get("holderIdentity") != self.identity:
                return
            body["spec"]["holderIdentity"] = ""
            body["spec"]["leaseDurationSeconds"] = 1
            await self.kube.replace(LEASES, self.name, body, namespace=self.namespace)
            log.info("released lease %s/%s", self.namespace, self.name)
        except KubeError as exc:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, exc)

    def _set(self, leader: bool) -> None:
        if leader != self._leader:
            self._leader = leader
            log.info(
                "%s leadership of lease %s/%s as %s",
                "acquired" if leader else "lost",
                self.namespace,
                self.name,
                self.identity,
            )
            self.on_change(leader)

    async def _try_once(self) -> bool:
        now = datetime.now(UTC)
        try:
            body = await self.kube.get(LEASES, self.name, namespace=self.namespace)
        except NotFound:
            try:
                await self.kube.create(
                    LEASES,
                    self._body(now, acquired=now, transitions=0, version=None),
                    namespace=self.namespace,
                )
            except Conflict:
                return False
            return True
        state = _state(body)
        if not may_acquire(state, me=self.identity, now=now):
            return False
        taking_over = state.holder != self.identity
        acquired = None if taking_over else parse_time(body["spec"].get("acquireTime"))
        try:
            await self.kube.replace(
                LEASES,
                self.name,
                self._body(
                    now,
                    acquired=acquired or now,
                    transitions=state.transitions + (1 if taking_over else 0),
                    version=body["metadata"]["resourceVersion"],
                ),
                namespace=self.namespace,
            )
        except Conflict:
            return False
        return True

    def _body(
        self, now: datetime, *, acquired: datetime, transitions: int, version: str | None
    ) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if version:
            metadata["resourceVersion"] = version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.identity,
                "leaseDurationSeconds": LEASE_SECONDS,
                "acquireTime": format_micro_time(acquired),
                "renewTime": format_micro_time(now),
                "leaseTransitions": transitions,
            },
        }
