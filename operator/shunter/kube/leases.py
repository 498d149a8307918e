"""A coordination.k8s.io Lease as a plain record, and the store that reads and writes it.

Leader election (shunter.operator.leadership) works on `LeaseRecord`s through the
`LeaseStore` protocol, so its state machine can be unit-tested against a scripted
in-memory store; `KubeLeaseStore` is the real one. Every update carries the record's
resourceVersion, so of two candidates writing the same version only one succeeds
(the other gets `Conflict`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from shunter.kube.client import Body, Kube
from shunter.kube.errors import NotFound
from shunter.kube.resources import LEASES


@dataclass(frozen=True)
class LeaseRecord:
    holder: str  # "" once released
    lease_seconds: int
    acquired_at: datetime | None = None
    renewed_at: datetime | None = None
    transitions: int = 0
    # The resourceVersion read or written: the precondition of the next update.
    version: str = ""


class LeaseStore(Protocol):
    """One Lease. Calls raise `Conflict` when the version is stale (or, for create,
    when the Lease exists) and another `KubeError` when the store cannot be reached;
    `seconds` bounds each call."""

    async def read(self, *, seconds: float) -> LeaseRecord | None: ...

    async def create(self, record: LeaseRecord, *, seconds: float) -> LeaseRecord: ...

    async def update(self, record: LeaseRecord, *, seconds: float) -> LeaseRecord: ...


def _time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _micro(value: datetime | None) -> str | None:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


def record_of(body: Body) -> LeaseRecord:
    spec = body.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or "",
        lease_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquired_at=_time(spec.get("acquireTime")),
        renewed_at=_time(spec.get("renewTime")),
        transitions=int(spec.get("leaseTransitions") or 0),
        version=str((body.get("metadata") or {}).get("resourceVersion") or ""),
    )


class KubeLeaseStore:
    def __init__(self, kube: Kube, *, namespace: str, name: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.name = name

    def _body(self, record: LeaseRecord) -> Body:
        metadata: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if record.version:
            metadata["resourceVersion"] = record.version
        spec = {
            "holderIdentity": record.holder,
            "leaseDurationSeconds": record.lease_seconds,
            "acquireTime": _micro(record.acquired_at),
            "renewTime": _micro(record.renewed_at),
            "leaseTransitions": record.transitions,
        }
        return {
            "apiVersion": LEASES.api_version,
            "kind": "Lease",
            "metadata": metadata,
            "spec": {k: v for k, v in spec.items() if v is not None},
        }

    async def read(self, *, seconds: float) -> LeaseRecord | None:
        path = LEASES.path(namespace=self.namespace, name=self.name)
        try:
            body = await self.kube.request("GET", path, what=self._what("get"), seconds=seconds)
        except NotFound:
            return None
        return record_of(body)

    async def create(self, record: LeaseRecord, *, seconds: float) -> LeaseRecord:
        body = await self.kube.request(
            "POST", LEASES.path(namespace=self.namespace), body=self._body(record),
            what=self._what("create"), seconds=seconds,
        )  # fmt: skip
        return record_of(body)

    async def update(self, record: LeaseRecord, *, seconds: float) -> LeaseRecord:
        body = await self.kube.request(
            "PUT", LEASES.path(namespace=self.namespace, name=self.name), body=self._body(record),
            what=self._what("replace"), seconds=seconds,
        )  # fmt: skip
        return record_of(body)

    def _what(self, verb: str) -> str:
        return f"{verb} lease {self.namespace}/{self.name}"
