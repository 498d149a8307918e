"""The API server's audit log (ControlPlane.audit_log): which writes it finished, whose,
when by its own clock. One reader for the fault tests (the one observer a client
cannot fool: a write is accepted iff the server says so) and the benches (who wrote
how much; a stage's lag between two writes, with no client's watch in between)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class Write:
    user: str  # who the server authenticated
    impersonated: str | None  # whom it acted as, if the writer impersonated someone
    user_agent: str
    verb: str
    resource: str  # e.g. trainingjobs/status, pods, pods/status, pods/binding, leases
    namespace: str
    name: str
    code: int
    received: float  # epoch seconds, the server's clock
    completed: float

    @property
    def accepted(self) -> bool:
        return 200 <= self.code < 300

    @property
    def who(self) -> str:
        """The operator (user agent `shunter-operator/...`), the API (`Python/...`:
        shunter.kube's aiohttp client), anyone else by the name in its user agent."""
        agent = self.user_agent
        if agent.startswith("shunter-operator"):
            return "operator"
        return "api" if agent.startswith("Python/") else agent.split("/")[0]


def epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def parse(lines: Iterable[str], *, namespace: str | None = None) -> list[Write]:
    """The completed writes among `lines` (in namespace, if given), in the order the
    server finished them. A line cut by a reading's offset is skipped."""
    found: list[Write] = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        ref = entry.get("objectRef") or {}
        if entry.get("stage") != "ResponseComplete":
            continue
        if namespace is not None and ref.get("namespace") != namespace:
            continue
        resource = "/".join(filter(None, (ref.get("resource"), ref.get("subresource"))))
        found.append(
            Write(
                user=(entry.get("user") or {}).get("username", ""),
                impersonated=(entry.get("impersonatedUser") or {}).get("username"),
                user_agent=entry.get("userAgent", ""),
                verb=entry.get("verb", ""),
                resource=resource,
                namespace=ref.get("namespace", ""),
                name=ref.get("name", ""),
                code=int((entry.get("responseStatus") or {}).get("code") or 0),
                received=epoch(entry["requestReceivedTimestamp"]),
                completed=epoch(entry["stageTimestamp"]),
            )
        )
    return sorted(found, key=lambda w: w.completed)


def writes(log: Path, *, namespace: str | None = None) -> list[Write]:
    """The completed writes in the log (in namespace, if given), in finishing order."""
    return parse(log.read_text(errors="replace").splitlines(), namespace=namespace)
