"""What the operator knows of Nodes and of the Pods that hold their resources (pure).

Parsed once where they enter (the informers): a node's allocatable GPUs, CPU and
memory, its labels, taints, readiness and cordon; and, for every Pod bound to a node
that is not a trainer Pod, what it requests there (a foreign Pod holding GPUs takes
them from Shunter's jobs). Quantities become integers: GPUs, CPU millicores, bytes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from shunter.domain.model import GPU_RESOURCE, Toleration

_SUFFIX = {
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
}  # fmt: skip
# Decimal SI suffixes (k is lower case), binary ones (Ki is upper case), or an exponent.
_QUANTITY = re.compile(r"^([0-9.]+)(m|k|Ki|[MGTPE]i?|[eE][+-]?[0-9]+|)$")


def quantity(value: object, *, milli: bool = False) -> int:
    """A Kubernetes quantity as an integer (in thousandths when milli: CPU)."""
    match = _QUANTITY.match(str(value).strip())
    if not match:
        return 0
    number, suffix = Decimal(match.group(1)), match.group(2)
    scale = Decimal(1000) if milli else Decimal(1)
    if suffix[:1] in ("e", "E"):
        amount = number * Decimal(10) ** int(suffix[1:])
    else:
        amount = number / 1000 if suffix == "m" else number * _SUFFIX[suffix]
    return int((amount * scale).to_integral_value(rounding="ROUND_CEILING"))


@dataclass(frozen=True, slots=True)
class Resources:
    """GPUs, CPU millicores and memory bytes (allocatable, requested or free)."""

    gpus: int = 0
    cpu: int = 0
    memory: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.gpus + other.gpus, self.cpu + other.cpu, self.memory + other.memory)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.gpus - other.gpus, self.cpu - other.cpu, self.memory - other.memory)

    def covers(self, need: Resources) -> bool:
        return self.gpus >= need.gpus and self.cpu >= need.cpu and self.memory >= need.memory

    @classmethod
    def of(cls, raw: Mapping[str, Any] | None) -> Resources:
        raw = raw or {}
        return cls(
            gpus=quantity(raw.get(GPU_RESOURCE, 0)),
            cpu=quantity(raw.get("cpu", 0), milli=True),
            memory=quantity(raw.get("memory", 0)),
        )


# Taints the node lifecycle controller sets and clears as a node's conditions change
# (a new node has not-ready until its first Ready heartbeat is seen; a cordon adds
# unschedulable). They say what the node is now, not what it is: a node is in a job's
# pool whatever they say, and usable only when the job tolerates them.
CONDITION_TAINTS = frozenset(
    f"node.kubernetes.io/{name}"
    for name in (
        "not-ready", "unreachable", "unschedulable", "memory-pressure",
        "disk-pressure", "pid-pressure", "network-unavailable",
    )
)  # fmt: skip


@dataclass(frozen=True)
class Taint:
    key: str
    value: str | None
    effect: str

    @property
    def condition(self) -> bool:
        return self.key in CONDITION_TAINTS


def tolerates(tolerations: Sequence[Toleration], taint: Taint) -> bool:
    """The scheduler's rule for one taint (PreferNoSchedule never keeps a Pod off)."""
    if taint.effect == "PreferNoSchedule":
        return True
    for t in tolerations:
        if t.effect and t.effect != taint.effect:
            continue
        if t.operator == "Exists" and (not t.key or t.key == taint.key):
            return True
        if t.key == taint.key and (t.value or "") == (taint.value or ""):
            return True
    return False


@dataclass(frozen=True)
class NodeView:
    name: str
    labels: tuple[tuple[str, str], ...]
    taints: tuple[Taint, ...]
    allocatable: Resources
    ready: bool
    unschedulable: bool

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> NodeView:
        meta, spec, status = body["metadata"], body.get("spec") or {}, body.get("status") or {}
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions") or ()
        )
        return cls(
            name=meta["name"],
            labels=tuple(sorted((meta.get("labels") or {}).items())),
            taints=tuple(
                Taint(t.get("key", ""), t.get("value"), t.get("effect", "NoSchedule"))
                for t in spec.get("taints") or ()
            ),
            allocatable=Resources.of(status.get("allocatable")),
            ready=ready,
            unschedulable=bool(spec.get("unschedulable")),
        )

    def label(self, key: str) -> str | None:
        return dict(self.labels).get(key)


@dataclass(frozen=True)
class PodUsage:
    """A Pod that is not a trainer Pod, bound to a node and not finished."""

    uid: str
    node: str
    requests: Resources

    @classmethod
    def parse(cls, body: Mapping[str, Any]) -> PodUsage:
        spec = body.get("spec") or {}
        return cls(
            uid=body["metadata"].get("uid", ""),
            node=spec.get("nodeName") or "",
            requests=pod_requests(spec),
        )


def pod_requests(spec: Mapping[str, Any]) -> Resources:
    """What the scheduler counts for a Pod: the sum over its containers (a request, or
    the limit when only a limit is set), at least the largest init container."""

    def one(container: Mapping[str, Any]) -> Resources:
        resources = container.get("resources") or {}
        limits = resources.get("limits") or {}
        requests = {**limits, **(resources.get("requests") or {})}
        return Resources.of(requests)

    total = Resources()
    for container in spec.get("containers") or ():
        total = total + one(container)
    for init in spec.get("initContainers") or ():
        need = one(init)
        total = Resources(
            max(total.gpus, need.gpus), max(total.cpu, need.cpu), max(total.memory, need.memory)
        )
    return total


# Pods that hold a node's resources: bound and not finished. The operator watches them
# all and counts its own trainer Pods by their job's placement (shunter.operator.handlers).
BOUND_FIELD_SELECTOR = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed"
