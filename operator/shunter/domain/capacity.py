"""Where a job's Pods can go: free resources per node, and placement (pure).

The operator places every Pod itself (Slurm allocates nodes, Kueue's topology-aware
scheduling assigns domains; the kube-scheduler still binds and re-checks): a job is
admitted only with a node for each of its Pods, chosen now from what is free, and its
Pods are pinned there (podspec). That is what makes a multi-node job all-or-nothing:
it never holds part of the cluster while waiting for the rest.

A node's free resources are its allocatable minus what is held there by
- foreign Pods (bound, unfinished, not Pods of the jobs this operator manages), and
- admitted jobs, at the nodes of their placement (held from admission until their
  Pods are gone, whether the Pods are bound yet or not).

A job's pool is the nodes it may use: matching its nodeSelector, tolerating every
NoSchedule/NoExecute taint, and with GPUs when it asks for GPUs. Of those, the usable
ones are Ready, not cordoned, and free of the taints that follow a node's conditions
(node.kubernetes.io/not-ready and the like: a new node has one until its first
heartbeat is seen, so it is in the pool, not yet usable).
Placement is best fit (the fullest nodes that still fit first), one Pod per node.
Its cost follows the busy part of the cluster, not its size: a node nothing holds has
its allocatable free, so among those the best fit is the first that fits in an order
kept while the nodes are unchanged (NodeIndex.order); only the nodes something holds
(Capacity.touched) are looked at one by one.
"""

from __future__ import annotations

import bisect
import functools
import heapq
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from shunter.domain.model import GPU_RESOURCE, Job
from shunter.domain.nodes import NodeView, PodUsage, Resources, quantity, tolerates

POOL_LABEL = "shunter.dev/node-pool"


def pod_need(job: Job) -> Resources:
    """What each Pod of the job requests."""
    spec = job.spec
    return Resources(
        gpus=spec.gpus,
        cpu=quantity(spec.cpu, milli=True) if spec.cpu else 0,
        memory=quantity(spec.memory) if spec.memory else 0,
    )


def pool_name(job: Job) -> str:
    selected = dict(job.spec.node_selector).get(POOL_LABEL)
    if selected:
        return selected
    return "gpu" if job.spec.gpus else "any"


def in_pool(node: NodeView, job: Job) -> bool:
    """Whether the job's Pods may run on node at all (readiness and the taints that
    follow a node's conditions aside: see usable_now)."""
    labels = dict(node.labels)
    if any(labels.get(k) != v for k, v in job.spec.node_selector):
        return False
    if job.spec.gpus and node.allocatable.gpus <= 0:
        return False
    return _tolerated(node, job, condition=False)


def usable_now(node: NodeView, job: Job) -> bool:
    """Whether a node of the job's pool can take its Pods now."""
    return node.ready and not node.unschedulable and _tolerated(node, job, condition=True)


def _tolerated(node: NodeView, job: Job, *, condition: bool) -> bool:
    return all(
        tolerates(_tolerations(job), taint)
        for taint in node.taints
        if taint.effect in ("NoSchedule", "NoExecute") and taint.condition == condition
    )


def _tolerations(job: Job) -> tuple:  # type: ignore[type-arg]
    # The Pod always tolerates the GPU taint (podspec adds it).
    from shunter.domain.model import Toleration

    return (
        Toleration(key=GPU_RESOURCE, operator="Exists", effect="NoSchedule"),
        *job.spec.tolerations,
    )


# A shape's usable nodes as best-fit keys of their allocatable, (GPUs, CPU, name,
# memory) in order, and their names.
Order = tuple[list[tuple[int, int, str, int]], frozenset[str]]


@dataclass
class NodeIndex:
    """What depends on the nodes alone: each job shape's pool, its usable nodes and
    why it never fits. Kept for as long as the nodes are unchanged (the operator's book
    holds one), so a pass does not look at every node again for each of them: at
    5,000 nodes that, not the jobs, was most of a pass."""

    nodes: dict[str, NodeView]
    pools: dict[tuple[object, ...], list[NodeView]] = field(default_factory=dict)
    usable: dict[tuple[object, ...], list[NodeView]] = field(default_factory=dict)
    never: dict[tuple[object, ...], str | None] = field(default_factory=dict)
    orders: dict[tuple[object, ...], Order] = field(default_factory=dict)

    @classmethod
    def of(cls, nodes: Iterable[NodeView]) -> NodeIndex:
        return cls({n.name: n for n in nodes})

    @functools.cached_property
    def allocatable(self) -> dict[str, Resources]:
        return {n.name: n.allocatable for n in self.nodes.values()}

    @functools.cached_property
    def not_ready(self) -> frozenset[str]:
        return frozenset(n.name for n in self.nodes.values() if not n.ready)

    def order(self, key: tuple[object, ...], usable: list[NodeView]) -> Order:
        found = self.orders.get(key)
        if found is None:
            keys = sorted((n.allocatable.gpus, n.allocatable.cpu, n.name, n.allocatable.memory)
                          for n in usable)  # fmt: skip
            found = self.orders[key] = (keys, frozenset(n.name for n in usable))
        return found


@dataclass
class Capacity:
    """Free resources per node within one pass (admissions take from it)."""

    index: NodeIndex
    free: dict[str, Resources]
    # The nodes whose free resources may differ from their allocatable (something holds
    # them, or did in this pass); None: any node may (placement then looks at each).
    touched: set[str] | None = None

    @property
    def nodes(self) -> dict[str, NodeView]:
        return self.index.nodes

    def copy(self) -> Capacity:
        touched = None if self.touched is None else set(self.touched)
        return Capacity(self.index, dict(self.free), touched)

    @classmethod
    def build(
        cls,
        nodes: Iterable[NodeView] | NodeIndex,
        foreign: Iterable[PodUsage],
        active: Iterable[Job],
        bound: Mapping[tuple[str, int], str] | None = None,
    ) -> Capacity:
        """bound: (job key string, pod index) -> node, for Pods placed without a
        recorded placement (admitted by an earlier version). nodes: a NodeIndex kept
        while they are unchanged, or the nodes themselves."""
        index = nodes if isinstance(nodes, NodeIndex) else NodeIndex.of(nodes)
        free = dict(index.allocatable)
        touched: set[str] = set()
        for pod in foreign:
            if pod.node in free:
                free[pod.node] = free[pod.node] - pod.requests
                touched.add(pod.node)
        for job in active:
            need = pod_need(job)
            for i in range(job.spec.nodes):
                node = job.status.placement[i] if i < len(job.status.placement) else None
                if node is None and bound:
                    node = bound.get((str(job.key), i))
                if node in free:
                    free[node] = free[node] - need
                    touched.add(node)
        return cls(index, free, touched)

    @staticmethod
    def _shape(job: Job) -> tuple[object, ...]:
        """What a job's pool and usable nodes depend on."""
        return (job.spec.node_selector, job.spec.tolerations, job.spec.gpus > 0)

    def pool(self, job: Job) -> list[NodeView]:
        key = self._shape(job)
        pools = self.index.pools
        pool = pools.get(key)
        if pool is None:
            pool = pools[key] = [n for n in self.nodes.values() if in_pool(n, job)]
        return pool

    def usable(self, job: Job) -> list[NodeView]:
        # Kept per pool and tolerations, like the pools: they depend on the nodes alone
        # (the estimates' simulation asks thousands of times, a pass once per shape).
        key = self._shape(job)
        usable = self.index.usable
        found = usable.get(key)
        if found is None:
            found = usable[key] = [n for n in self.pool(job) if usable_now(n, job)]
        return found

    def place(self, job: Job) -> tuple[str, ...] | None:
        """A node for each Pod, best fit, one Pod per node; None if not now."""
        need, free = pod_need(job), self.free
        gpus, cpu, memory = need.gpus, need.cpu, need.memory
        count = job.spec.nodes
        usable, touched = self.usable(job), self.touched
        # Resources.covers inlined, and each node that fits as its best-fit key (the
        # fullest first): asked for thousands of times per estimates' plan, and over
        # thousands of nodes in a large cluster.
        if touched is None or 2 * len(touched) > len(usable):  # mostly busy: each node
            fits = [(f.gpus, f.cpu, n.name) for n in usable
                    if (f := free[n.name]).gpus >= gpus and f.cpu >= cpu
                    and f.memory >= memory]  # fmt: skip
        else:
            order, names = self.index.order(self._shape(job), usable)
            fits = [(f.gpus, f.cpu, n) for n in touched
                    if n in names and (f := free[n]).gpus >= gpus and f.cpu >= cpu
                    and f.memory >= memory]  # fmt: skip
            # The rest hold their allocatable: the first `count` in order that fit and
            # that nothing holds are the best of them.
            wanted = count
            for i in range(bisect.bisect_left(order, (gpus, cpu, "")), len(order)):
                g, c, name, m = order[i]
                if c >= cpu and m >= memory and name not in touched:
                    fits.append((g, c, name))
                    wanted -= 1
                    if not wanted:
                        break
        if len(fits) < count:
            return None
        if count == 1:  # without sorting thousands of free nodes
            return (min(fits)[2],)
        return tuple(name for _, _, name in heapq.nsmallest(count, fits))

    def take(self, job: Job, placement: Iterable[str]) -> None:
        need = pod_need(job)
        for node in placement:
            if node in self.free:
                self.free[node] = self.free[node] - need
                if self.touched is not None:
                    self.touched.add(node)

    def give(self, job: Job, placement: Iterable[str]) -> None:
        need = pod_need(job)
        for node in placement:
            if node in self.free:
                self.free[node] = self.free[node] + need
                if self.touched is not None:
                    self.touched.add(node)

    def never_fits(self, job: Job) -> str | None:
        """Why the job can never run on this cluster as it is (None: it could)."""
        key = (*self._shape(job), pod_need(job), job.spec.nodes)
        never = self.index.never
        if key not in never:
            never[key] = self._never_fits(job)
        return never[key]

    def _never_fits(self, job: Job) -> str | None:
        need, pool = pod_need(job), self.pool(job)
        name = pool_name(job)
        big_enough = [n for n in pool if n.allocatable.covers(need)]
        if len(big_enough) >= job.spec.nodes:
            return None
        if not pool:
            return f"no node in pool {name} matches its node selector and tolerations"
        what = _need_text(need)
        if job.spec.nodes == 1:
            largest = max(pool, key=lambda n: (n.allocatable.gpus, n.allocatable.cpu))
            return (
                f"needs {what} on one node; the largest node in pool {name} has"
                f" {_have_text(largest.allocatable, need)}"
            )
        return (
            f"needs {job.spec.nodes} nodes with {what} each; pool {name} has"
            f" {len(big_enough)} such node{'s' if len(big_enough) != 1 else ''}"
        )

    def why_not_now(self, job: Job) -> str:
        """Why a job that could run cannot start now (for the head of a queue)."""
        need, usable = pod_need(job), self.usable(job)
        name = pool_name(job)
        fits = [n for n in usable if self.free[n.name].covers(need)]
        if job.spec.nodes > 1:
            return (
                f"needs {job.spec.nodes} nodes with {_need_text(need)} free each;"
                f" {len(fits)} of pool {name} have that now"
            )
        most = max((self.free[n.name].gpus for n in usable), default=0)
        if need.gpus and most < need.gpus:
            return f"needs {need.gpus} GPUs on one node; the most free in pool {name} is {most}"
        return f"needs {_need_text(need)} on one node; no node of pool {name} has that free now"


def _need_text(need: Resources) -> str:
    parts = []
    if need.gpus:
        parts.append(f"{need.gpus} GPU{'s' if need.gpus != 1 else ''}")
    if need.cpu:
        parts.append(f"{need.cpu / 1000:g} CPUs")
    if need.memory:
        parts.append(f"{need.memory / 2**30:g} GiB memory")
    return ", ".join(parts) or "a Pod"


def _have_text(have: Resources, need: Resources) -> str:
    parts = []
    if need.gpus or not (need.cpu or need.memory):
        parts.append(f"{have.gpus}")
    if need.cpu:
        parts.append(f"{have.cpu / 1000:g} CPUs")
    if need.memory:
        parts.append(f"{have.memory / 2**30:g} GiB memory")
    return ", ".join(parts)
