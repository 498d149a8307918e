"""What the admitted jobs hold, kept as they come and go (pure).

A pass starts from what every admitted job (starting, running or stopping) holds: the
slots and GPUs the global limits count (Usage), each queue's jobs and GPUs (QuotaUse),
each node's free resources (Capacity), and the jobs by victim group (Grouped). Counted
again in every pass, that was a third of a pass at 2,000 running jobs on 889 nodes
(issue 26's large shape). `Holdings` keeps them instead: the operator's book tells it
of each job that starts or stops holding, or changes while it holds, and of each
foreign Pod; a pass takes a copy (`state`) and lays its own decisions over it.

What each job was counted with is kept with it (`_Share`), so taking it back takes
back exactly that. The order of the jobs in a group is the order they became active,
which is the order the book's `active` dict keeps (what a count from scratch sees).
The queues and the nodes are read as they were when it was made: the book makes a new
one when either changes. `of` counts from scratch (what a kept one must equal; the
tests compare them).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from shunter.domain.admission import AdmissionState, Limits, Usage
from shunter.domain.capacity import Capacity, NodeIndex, pod_need
from shunter.domain.model import Job, JobKey
from shunter.domain.nodes import PodUsage, Resources
from shunter.domain.queues import QueueView, QuotaUse, group_of
from shunter.domain.victims import Grouped, being_preempted

Group = tuple[str, str]


@dataclass(frozen=True, slots=True)
class _Share:
    job: Job
    nodes: tuple[str, ...]  # the nodes its Pods hold (in the index)
    need: Resources
    group: Group
    order: int  # when it became active


@dataclass
class Holdings:
    index: NodeIndex
    queues: Mapping[str, QueueView]
    free: dict[str, Resources] = field(default_factory=dict)
    # Per node, how many Pods (foreign or of admitted jobs) hold part of it: the nodes
    # with any are Capacity's `touched`.
    holders: dict[str, int] = field(default_factory=dict)
    running: int = 0
    gpus: int = 0
    by_namespace: dict[str, int] = field(default_factory=dict)
    _namespace_jobs: dict[str, int] = field(default_factory=dict)
    quota: QuotaUse = field(init=False)
    shares: dict[JobKey, _Share] = field(default_factory=dict)
    foreign: dict[str, PodUsage] = field(default_factory=dict)
    groups: dict[Group, dict[JobKey, Job]] = field(default_factory=dict)
    stopping: dict[JobKey, Job] = field(default_factory=dict)
    _lists: dict[Group, list[Job]] = field(default_factory=dict)
    _order: int = 0

    def __post_init__(self) -> None:
        self.quota = QuotaUse(self.queues).warm()  # its copies share what depends on queues
        self.free = dict(self.index.allocatable)

    @classmethod
    def of(cls, index: NodeIndex, queues: Mapping[str, QueueView], foreign: Iterable[PodUsage],
           active: Iterable[tuple[Job, tuple[str, ...]]]) -> Holdings:  # fmt: skip
        """From scratch: `active` as (job, the nodes its Pods hold), in the book's order."""
        holdings = cls(index, queues)
        for usage in foreign:
            holdings.put_foreign(usage)
        for job, nodes in active:
            holdings.put(job, nodes)
        return holdings

    # -- what the book tells it ----------------------------------------------------

    def put(self, job: Job, nodes: tuple[str, ...]) -> None:
        """The job holds (it became active, or changed while active): `nodes`, those
        of its placement (or of its bound Pods where it has none)."""
        old = self.shares.get(job.key)
        order = self._next() if old is None else old.order
        group = group_of(job, self.queues)
        if old is not None:
            self._count(old, -1)
        share = _Share(job, tuple(n for n in nodes if n in self.free), pod_need(job), group, order)
        self.shares[job.key] = share
        self._count(share, 1)
        if old is not None and old.group != group:  # another queue, another group
            self._leave(old)
            members = {**self.groups.get(group, {}), job.key: job}
            self.groups[group] = dict(sorted(members.items(),
                                             key=lambda kv: self.shares[kv[0]].order))  # fmt: skip
        else:
            self.groups.setdefault(group, {})[job.key] = job
        self._lists.pop(group, None)
        if being_preempted(job):
            self.stopping[job.key] = job
        else:
            self.stopping.pop(job.key, None)

    def remove(self, key: JobKey) -> None:
        """The job holds nothing any more."""
        share = self.shares.pop(key, None)
        if share is None:
            return
        self._count(share, -1)
        self._leave(share)
        self.stopping.pop(key, None)

    def _leave(self, share: _Share) -> None:
        members = self.groups.get(share.group)
        if members is not None:
            members.pop(share.job.key, None)
            if not members:
                del self.groups[share.group]
        self._lists.pop(share.group, None)

    def put_foreign(self, usage: PodUsage) -> None:
        self.remove_foreign(usage.uid)
        self.foreign[usage.uid] = usage
        self._hold(usage.node, usage.requests, 1)

    def remove_foreign(self, uid: str) -> None:
        usage = self.foreign.pop(uid, None)
        if usage is not None:
            self._hold(usage.node, usage.requests, -1)

    # -- what a pass takes ---------------------------------------------------------

    def state(self, limits: Limits) -> AdmissionState:
        """A copy a pass may consume (admissions take from it, stops give back)."""
        capacity = Capacity(self.index, dict(self.free), set(self.holders))  # no zero counts
        usage = Usage(self.running, self.gpus, dict(self.by_namespace))
        return AdmissionState(limits, usage, self.quota.copy(), capacity, self.queues)

    def grouped(self, overlay: Mapping[JobKey, Job | None]) -> Grouped:
        """The jobs by victim group, with `overlay` laid over them: a pass's decisions
        about active jobs (None: it holds nothing any more)."""
        touched: dict[Group, None] = {}
        for key in overlay:
            share = self.shares.get(key)
            if share is not None:
                touched[share.group] = None
        groups: _Groups = _Groups(self, overlay, touched)
        stopping = dict(self.stopping)
        for key, job in overlay.items():
            if key not in self.shares:
                continue
            stopping.pop(key, None)
            if job is not None and being_preempted(job):
                stopping[key] = job
        ordered = sorted(stopping.items(), key=lambda item: self.shares[item[0]].order)
        return Grouped(groups, [job for _, job in ordered])

    def members(self, group: Group) -> list[Job]:
        found = self._lists.get(group)
        if found is None:
            found = self._lists[group] = list(self.groups.get(group, {}).values())
        return found

    # -- the counts ----------------------------------------------------------------

    def _next(self) -> int:
        self._order += 1
        return self._order

    def _count(self, share: _Share, sign: int) -> None:
        job = share.job
        gpus = job.spec.total_gpus
        self.running += sign
        self.gpus += sign * gpus
        # A count from scratch has a namespace, or a queue, only while it has a job.
        namespace = job.key.namespace
        jobs = self._namespace_jobs.get(namespace, 0) + sign
        if jobs:
            self._namespace_jobs[namespace] = jobs
            self.by_namespace[namespace] = self.by_namespace.get(namespace, 0) + sign * gpus
        else:
            self._namespace_jobs.pop(namespace, None)
            self.by_namespace.pop(namespace, None)
        self.quota.add(job, sign)
        name = job.spec.queue
        if not self.quota.running.get(name):
            self.quota.running.pop(name, None)
            self.quota.gpus.pop(name, None)
        for node in share.nodes:
            self._hold(node, share.need, sign)

    def _hold(self, node: str, need: Resources, sign: int) -> None:
        if node not in self.free:
            return
        self.free[node] = self.free[node] - need if sign > 0 else self.free[node] + need
        count = self.holders.get(node, 0) + sign
        if count:
            self.holders[node] = count
        else:
            self.holders.pop(node, None)


class _Groups(Mapping[Group, Sequence[Job]]):
    """Grouped's groups, each made when first asked for: the kept list, or for a group
    a pass decided about, the kept one with the decisions laid over it."""

    def __init__(self, holdings: Holdings, overlay: Mapping[JobKey, Job | None],
                 touched: Mapping[Group, None]) -> None:  # fmt: skip
        self.holdings, self.overlay, self.touched = holdings, overlay, touched
        self._made: dict[Group, Sequence[Job]] = {}

    def __getitem__(self, group: Group) -> Sequence[Job]:
        found = self._made.get(group)
        if found is not None:
            return found
        if group not in self.holdings.groups:
            raise KeyError(group)
        members = self.holdings.members(group)
        if group in self.touched:
            overlay = self.overlay
            members = [j for job in members
                       if (j := overlay.get(job.key, job)) is not None]  # fmt: skip
        self._made[group] = members
        return members

    def __iter__(self) -> Iterator[Group]:
        return iter(self.holdings.groups)

    def __len__(self) -> int:
        return len(self.holdings.groups)
