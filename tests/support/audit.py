"""The API server's audit log (shunter.devcluster.controlplane.ControlPlane.audit_log):
which writes it accepted or refused, from whom, when. Fault tests use it as the one
observer that cannot be fooled by a client: a write is accepted iff the server says so."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from tests.support.recorder import Change


@dataclass(frozen=True)
class Write:
    user_agent: str
    verb: str
    resource: str  # e.g. trainingjobs/status, pods, leases
    name: str
    code: int
    received: float  # epoch seconds, the server's clock
    completed: float

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def writes(log: Path, *, namespace: str) -> list[Write]:
    """Completed writes in namespace, in the order the server finished them."""
    found: list[Write] = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line being written
        ref = entry.get("objectRef") or {}
        if entry.get("stage") != "ResponseComplete" or ref.get("namespace") != namespace:
            continue
        resource = ref.get("resource", "") + (
            f"/{ref['subresource']}" if ref.get("subresource") else ""
        )
        found.append(
            Write(
                user_agent=entry.get("userAgent", ""),
                verb=entry.get("verb", ""),
                resource=resource,
                name=ref.get("name", ""),
                code=int((entry.get("responseStatus") or {}).get("code") or 0),
                received=_epoch(entry["requestReceivedTimestamp"]),
                completed=_epoch(entry["stageTimestamp"]),
            )
        )
    return sorted(found, key=lambda w: w.completed)


def written_since(changes: list[Change], *, manager: str, since: float) -> list[str]:
    """Object versions showing a change by `manager` at `since` or later, from their
    managedFields: the second observer, for writes the audit log cannot settle (a 504
    whose handler may still have completed). managedFields times have one-second
    resolution, so a write at `since - 1` or earlier never shows."""
    found = []
    for change in changes:
        for entry in change.object["metadata"].get("managedFields") or ():
            stamp = entry.get("time")
            if entry.get("manager") == manager and stamp and _epoch(stamp) > since - 1:
                found.append(
                    f"{change.object.get('kind')} {change.name} at resourceVersion"
                    f" {change.object['metadata']['resourceVersion']}: {entry}"
                )
    return found
