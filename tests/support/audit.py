"""A second observer beside the API server's audit log (shunter.devcluster.audit), for
the writes it cannot settle."""

from __future__ import annotations

from shunter.devcluster.audit import epoch
from tests.support.recorder import Change


def written_since(changes: list[Change], *, manager: str, since: float) -> list[str]:
    """Object versions showing a change by `manager` at `since` or later, from their
    managedFields: the second observer, for writes the audit log cannot settle (a 504
    whose handler may still have completed). managedFields times have one-second
    resolution, so a write at `since - 1` or earlier never shows."""
    found = []
    for change in changes:
        for entry in change.object["metadata"].get("managedFields") or ():
            stamp = entry.get("time")
            if entry.get("manager") == manager and stamp and epoch(stamp) > since - 1:
                found.append(
                    f"{change.object.get('kind')} {change.name} at resourceVersion"
                    f" {change.object['metadata']['resourceVersion']}: {entry}"
                )
    return found
