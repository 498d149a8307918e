"""The operator's in-memory view of every job and trainer Pod, kept incrementally.

Watch events update the book one object at a time; a reconcile pass then looks only
at what changed (the dirty set and due timers) plus the head of the queue, so a pass
at 10,000 queued jobs costs about what it costs at 100. The book keeps:

- every job, with the status this operator last wrote laid over it until the watch
  shows that write (the resourceVersion the write returned says when): without it, a
  job just admitted would still look queued and be admitted a second time. A job's
  `resource_version` is the newest this replica knows (the watch's, or its own last
  write's): the precondition of its next status write;
- over that, the status a pass decided and whose write is still in flight (`assume`):
  the next pass starts without waiting for the writes of the last one, and must see
  them as done. When the write lands it becomes a written status (`written`); when it
  fails the job goes back to what is known of it (`settle`) and is decided again;
- the queued jobs in admission order (a sorted list per queue, updated as jobs enter,
  leave or change priority), the jobs holding a slot, and the queued jobs whose
  status carries an exact position;
- Pods per job (by index), and Pods created but not yet seen (they count as present);
- Nodes, the foreign Pods that hold resources on them, the TrainingQueues, and the
  PersistentVolumeClaims a job may name as its checkpoint volume;
- timers: when a job needs another look even if nothing changes (grace deadlines);
- what a pass may keep of its walks (shunter.operator.planning's memos): a version per
  queue, moved by every change to a queued job of it (a write in flight, or taken
  back, too), one per cohort (or queue without one: queues.group_of), moved by every
  change to any job of it, and one for what every walk reads (the queues, Nodes and
  claims);
- the arrays (shunter.domain.arrays), which never wait nor hold a slot, and for each
  the jobs named like its runs (`<array>-<n>`): a change to one marks the array. The
  runs are kept as written, not as assumed: an array says a run finished (and starts
  the next one in its place) once the run's own status says so.

Pure data: no I/O, no clock of its own (times are passed in). Everything runs on the
event loop, so no locks.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime

from shunter.domain.admission import LaneOrder, QueueOrder, Verdict
from shunter.domain.arrays import Named, index_in_name
from shunter.domain.capacity import NodeIndex
from shunter.domain.claims import ClaimView
from shunter.domain.dependencies import Absent, Upstream
from shunter.domain.fairshare import Entry, Ledger, Tenant
from shunter.domain.holdings import Holdings
from shunter.domain.model import Job, JobKey, JobStatus, PodView, revision
from shunter.domain.nodes import NodeView, PodUsage
from shunter.domain.ordering import fold, held_by
from shunter.domain.queues import QueueView, group_of
from shunter.operator.rules import Rules


@dataclass(frozen=True, slots=True)
class WalkMemo:
    """A queue's walk that decided nothing, and what it read (what the pass
    that takes it again checks: shunter.operator.planning's module doc)."""

    version: int  # the queue's version in the book (its queued jobs)
    structure: int  # the book's queues, Nodes and claims
    rules: Rules
    head: JobKey
    verdict: Verdict  # the head's, recomputed when the walk is taken again
    # The queue's running jobs and GPUs, and its cohort's idle GPUs (None: no cohort),
    # as every verdict of the walk saw them.
    quota: tuple[int, int, int | None]
    wakes: tuple[tuple[JobKey, datetime], ...]
    gpus: int  # the head's


@dataclass(frozen=True, slots=True)
class GroupMemo:
    """A cohort (or a queue without one: queues.group_of) whose queues' walks were
    all kept, in a pass that decided nothing for any job of it and looked at none:
    while none of its jobs changes, the next passes take those walks again without
    looking at its queues (shunter.operator.planning's `_Walk._quiet`)."""

    version: int  # the cohort's version in the book (any of its jobs)
    structure: int
    rules: Rules
    queues: tuple[str, ...]  # its queues with queued jobs
    gpus: int  # the most GPUs one of their heads asks for


@dataclass(frozen=True)
class _Written:
    uid: str
    resource_version: int
    version: str  # resource_version as the API server wrote it
    status: JobStatus
    base: Job  # the job as the watch last showed it


@dataclass(frozen=True, slots=True)
class _Assumed:
    uid: str
    status: JobStatus
    base: Job  # the job as known without this status (watched, or written)


class JobBook:
    def __init__(self) -> None:
        self.jobs: dict[JobKey, Job] = {}
        self.pods: dict[JobKey, dict[str, PodView]] = {}
        self.active: dict[JobKey, Job] = {}
        # The queued jobs whose status shows an exact position, per queue.
        self.positioned_in: dict[str, set[JobKey]] = {}
        # The jobs whose status shows a start-time estimate (shunter.operator.estimating).
        self.estimated: set[JobKey] = set()
        self.dirty: set[JobKey] = set()
        # Of those, the ones the watches changed (a job or its Pods) since a pass or
        # the controller's quick look last took them (take_news).
        self.news: set[JobKey] = set()
        # The jobs that changed since the planner last heard (shunter.operator.planner);
        # None: no planner to tell.
        self.changed: set[JobKey] | None = None
        self.max_sequence = 0
        self.nodes: dict[str, NodeView] = {}
        self._node_index: NodeIndex | None = None
        self.foreign: dict[str, PodUsage] = {}
        self.queues: dict[str, QueueView] = {}
        self.claims: dict[tuple[str, str], ClaimView] = {}
        self._waiting = QueueOrder()
        self._lanes = LaneOrder()
        # Decayed usage of the queues with admission fair sharing, brought up to date
        # by each pass (fold_usage); seeded from, and written back to, their status.
        self.usage: dict[str, Ledger] = {}
        self._written: dict[JobKey, _Written] = {}
        self._assumed: dict[JobKey, _Assumed] = {}
        # The jobs with a flight (the controller's writes for them) not landed yet:
        # decisions about them wait for it (the estimates' writes too). The
        # controller's own view of its flights (Controller.__init__).
        self.in_flight: Collection[JobKey] = ()
        self._expected: dict[JobKey, dict[str, int]] = {}
        self._expected_until: dict[JobKey, float] = {}
        self._timers: list[tuple[datetime, JobKey]] = []
        self._timer_at: dict[JobKey, datetime] = {}
        self.arrays: set[JobKey] = set()
        self._named: dict[JobKey, Named] = {}
        # Dependencies (shunter.domain.dependencies): who names whom, and what is known
        # of names with no TrainingJob (their last state when deleted here, or the
        # mirror's answer); `recall`: names to ask the mirror about.
        self._upstreams: dict[JobKey, tuple[JobKey, ...]] = {}
        self._dependents: dict[JobKey, set[JobKey]] = {}
        self.gone: dict[JobKey, Upstream | Absent] = {}
        self.recall: set[JobKey] = set()
        # The walks a pass kept, per queue, and what says whether they still hold.
        self.walks: dict[str, WalkMemo] = {}
        self.group_walks: dict[tuple[str, str], GroupMemo] = {}
        self.queue_versions: dict[str, int] = {}
        self.group_versions: dict[tuple[str, str], int] = {}
        self.structure = 0
        # What the active jobs hold, kept as they change (shunter.domain.holdings);
        # None: made again when a pass asks (the nodes or queues changed).
        self._holdings: Holdings | None = None

    @classmethod
    def of(
        cls,
        jobs: Iterable[Job],
        pods: Iterable[PodView] = (),
        *,
        nodes: Iterable[NodeView] = (),
        foreign: Iterable[PodUsage] = (),
        queues: Iterable[QueueView] = (),
    ) -> JobBook:
        """A book holding these (for tests and tools); every job is dirty."""
        book = cls()
        for job in jobs:
            book.put_job(job)
        for pod in pods:
            book.put_pod(pod)
        for node in nodes:
            book.put_node(node)
        for usage in foreign:
            book.put_foreign(usage)
        for queue in queues:
            book.put_queue(queue)
        return book

    # -- jobs --------------------------------------------------------------------

    def put_job(self, job: Job, *, quiet: bool = False) -> None:
        """A job as the watch shows it (ADDED or MODIFIED); `quiet`: kept, but not
        marked for a decision (a change no decision reads: the trainer's progress)."""
        written = self._written.get(job.key)
        if written is not None:
            if written.uid != job.uid or job.revision >= written.resource_version:
                del self._written[job.key]
            else:
                self._written[job.key] = replace(written, base=job)
                job = replace(job, status=written.status, resource_version=written.version)
        assumed = self._assumed.get(job.key)
        if assumed is not None:
            if assumed.uid != job.uid:
                del self._assumed[job.key]
            else:
                self._assumed[job.key] = replace(assumed, base=job)
                self._name_run(job.key, job)  # its array sees it as known
                self._index(replace(job, status=assumed.status), mark=not quiet, assumed=True,
                            moved=not quiet)  # fmt: skip
                return
        self._index(job, mark=not quiet, moved=not quiet)

    def watched(self, key: JobKey) -> Job | None:
        """The job as the watch last showed it (without this operator's writes laid
        over it)."""
        written = self._written.get(key)
        if written is not None:
            return written.base
        assumed = self._assumed.get(key)
        return assumed.base if assumed is not None else self.jobs.get(key)

    def known(self, key: JobKey) -> Job | None:
        """The job without the status in flight: what the write of that status must
        be patched against, and on what version."""
        assumed = self._assumed.get(key)
        return assumed.base if assumed is not None else self.jobs.get(key)

    def assume(self, job: Job, status: JobStatus) -> None:
        """A pass decided `status` for the job (as `known` has it); its write is in
        flight. Not marked dirty: the job is decided again when the flight lands."""
        current = self.jobs.get(job.key)
        if current is None or current.uid != job.uid:
            return
        kept = self._assumed.get(job.key)
        base = kept.base if kept is not None else current
        self._assumed[job.key] = _Assumed(job.uid, status, base)
        self._index(replace(base, status=status), mark=False, assumed=True)

    def settle(self, key: JobKey) -> None:
        """The status in flight was written (`written` follows) or not at all: the job
        as known without it (not marked: what failed says when to look again)."""
        assumed = self._assumed.pop(key, None)
        if assumed is not None and key in self.jobs:
            self._index(assumed.base, mark=False)

    def remove_job(self, key: JobKey) -> None:
        job = self.jobs.get(key)
        if job is not None and key in self._dependents:
            # Its dependents judge it by its last state from now on (the mirror's
            # after a restart), and look again now.
            last = Upstream.of(job)
            self.gone[key] = Upstream.gone(key.name, last.phase, last.checkpoint_step)
            self.dirty.update(self._dependents[key])
        self._link(key, ())
        if job is not None:
            self._moved(job)
        self.jobs.pop(key, None)
        if self.changed is not None:
            self.changed.add(key)
        self.estimated.discard(key)
        self.arrays.discard(key)
        self._name_run(key, None)
        self._written.pop(key, None)
        self._assumed.pop(key, None)
        self._waiting.remove(key)
        self._lanes.remove(key)
        self._inactive(key)
        if job is not None:
            self._unposition(job)
        self.dirty.discard(key)
        self.news.discard(key)

    def written(self, job: Job, status: JobStatus, resource_version: str) -> None:
        """This operator wrote status; the watch will show it at resource_version."""
        self.settle(job.key)
        current = self.jobs.get(job.key)
        if current is None or current.uid != job.uid:
            return  # deleted meanwhile
        number = revision(resource_version) or 0
        if number and current.revision >= number:
            # The watch was quicker than the write's answer: it already shows this
            # write or a later change (a cancel right after an admission), which holds
            # this status too. Laying the write over it would put the older version
            # back, and every next write would meet a 409 with nothing to correct it.
            return
        previous = self._written.get(job.key)
        base = previous.base if previous is not None else current
        self._written[job.key] = _Written(job.uid, number, resource_version, status, base)
        # The next write's precondition is the version this one produced.
        self._index(replace(current, status=status, resource_version=resource_version))

    def _index(self, job: Job, *, mark: bool = True, assumed: bool = False,
               moved: bool = True) -> None:  # fmt: skip
        """Keep the job (`mark`: and look at it in the next pass; unmarked, it stays
        marked if it was; `assumed`: a status in flight, which its array does not see;
        `moved=False`: only its trainer's progress changed, which no kept walk reads)."""
        key = job.key
        old = self.jobs.get(key)
        if self.changed is not None:
            self.changed.add(key)
        if moved:
            if old is not None:
                self._moved(old)
            self._moved(job)
        self.jobs[key] = job
        if job.status.estimated_start or job.status.estimated_range:
            self.estimated.add(key)
        else:
            self.estimated.discard(key)
        if not assumed:
            self._name_run(key, job)
        self.gone.pop(key, None)
        if job.spec.depends_on or key in self._upstreams:
            self._link(key, tuple(JobKey(key.namespace, d.name) for d in job.spec.depends_on))
        if job.spec.array is not None:  # it runs nothing itself: never waits nor holds a slot
            self.arrays.add(key)
            self._waiting.remove(key)
            self._lanes.remove(key)
            if mark:
                self.dirty.add(key)
                self.news.add(key)
            return
        self.max_sequence = max(self.max_sequence, job.status.sequence or 0)
        self._waiting.put(job)
        self._lanes.put(job)
        if job.holds_slot:
            self.active[key] = job
            if self._holdings is not None:
                self._holdings.put(job, self.held_nodes(job))
        else:
            self._inactive(key)
        if old is not None and old.spec.queue != job.spec.queue:
            self._unposition(old)
        if job.queued and job.status.queue_position is not None:
            self.positioned_in.setdefault(job.spec.queue, set()).add(key)
        else:
            self._unposition(job)
        if mark:
            self.dirty.add(key)
            self.news.add(key)

    def _inactive(self, key: JobKey) -> None:
        if self.active.pop(key, None) is not None and self._holdings is not None:
            self._holdings.remove(key)

    def held_nodes(self, job: Job) -> tuple[str, ...]:
        """The nodes an active job's Pods hold: its placement's, or for a job admitted
        without one (by an earlier version), those its bound Pods were bound to."""
        placement = job.status.placement
        if len(placement) >= job.spec.nodes:
            return placement[: job.spec.nodes]
        bound = {pod.index: pod.node_name for pod in self.pods.get(job.key, {}).values()
                 if pod.node_name}  # fmt: skip
        found = []
        for i in range(job.spec.nodes):
            node = placement[i] if i < len(placement) else bound.get(i)
            if node:
                found.append(node)
        return tuple(found)

    def holdings(self) -> Holdings:
        """What the active jobs and foreign Pods hold (a pass takes a copy)."""
        if self._holdings is None:
            self._holdings = Holdings.of(
                self.node_index(), self.queues, self.foreign.values(),
                ((job, self.held_nodes(job)) for job in self.active.values()),
            )  # fmt: skip
        return self._holdings

    def _pods_moved(self, key: JobKey) -> None:
        """An active job without a whole placement counts its bound Pods' nodes."""
        job = self.active.get(key)
        held = self._holdings
        if held is not None and job is not None and len(job.status.placement) < job.spec.nodes:
            held.put(job, self.held_nodes(job))

    @property
    def positioned(self) -> Iterator[JobKey]:
        """The queued jobs whose status shows an exact position."""
        for keys in self.positioned_in.values():
            yield from keys

    def _unposition(self, job: Job) -> None:
        keys = self.positioned_in.get(job.spec.queue)
        if keys is not None:
            keys.discard(job.key)
            if not keys:
                del self.positioned_in[job.spec.queue]

    def _moved(self, job: Job) -> None:
        """The job changed (as it was, and as it is): the walks kept of its cohort, and
        of its queue when it is queued, are stale."""
        group = group_of(job, self.queues)
        self.group_versions[group] = self.group_versions.get(group, 0) + 1
        if job.queued:
            queue = job.spec.queue
            self.queue_versions[queue] = self.queue_versions.get(queue, 0) + 1

    def _name_run(self, key: JobKey, job: Job | None) -> None:
        """Keep a job named like a run of an array (`<array>-<n>`) under the array's
        name (None: it is gone), and mark the array (whether the job is one of its runs
        is the array's to say: shunter.domain.arrays)."""
        found = index_in_name(key)
        if found is None:
            return
        array, index = found
        named = self._named.get(array)
        if job is not None:
            if named is None:
                named = self._named[array] = Named()
            named.put(index, job)
        elif named is not None:
            named.remove(index)
            if not named:
                del self._named[array]
        if array in self.arrays:
            self.dirty.add(array)

    def named_runs(self, array: JobKey) -> Named:
        """The jobs named like runs of `array` (runs, or not: shunter.domain.arrays)."""
        return self._named.get(array) or Named()

    def _link(self, key: JobKey, upstreams: tuple[JobKey, ...]) -> None:
        """Record whom key depends on (its dependsOn), and so who depends on whom."""
        before = self._upstreams.get(key, ())
        if before == upstreams:
            return
        for up in before:
            named = self._dependents.get(up)
            if named is not None:
                named.discard(key)
                if not named:
                    del self._dependents[up]
                    if up not in self.jobs:
                        self.gone.pop(up, None)
        for up in upstreams:
            self._dependents.setdefault(up, set()).add(key)
        if upstreams:
            self._upstreams[key] = upstreams
        else:
            self._upstreams.pop(key, None)

    def dependents_of(self, key: JobKey) -> set[JobKey]:
        """The jobs whose dependsOn names key."""
        return self._dependents.get(key, set())

    def upstream(self, namespace: str, name: str) -> Upstream | Absent:
        """What a dependency knows of the job it names: the TrainingJob, else what the
        mirror said of it (asked for on first need: it stays PENDING meanwhile)."""
        key = JobKey(namespace, name)
        job = self.jobs.get(key)
        if job is not None:
            return Upstream.of(job)
        known = self.gone.get(key)
        if known is None:
            self.recall.add(key)
            return Absent.PENDING
        return known

    def recalled(self, found: Mapping[JobKey, Upstream | Absent]) -> None:
        """The mirror's answers: their dependents look again."""
        for key, upstream in found.items():
            self.recall.discard(key)
            if key in self.jobs or key not in self._dependents:
                continue
            self.gone[key] = upstream
            self.dirty.update(self._dependents[key])

    def waiting(self, queue: str | None = None) -> Iterator[Job]:
        """Queued, not cancelled or suspended jobs in admission order (of one queue, or
        of all queues merged)."""
        return (self.jobs[key] for key in self._waiting.keys(queue))

    def first_waiting(self, queue: str) -> Job | None:
        """The first of `waiting(queue)`."""
        key = self._waiting.first(queue)
        return None if key is None else self.jobs[key]

    def lanes(self, queue: str) -> Mapping[Tenant, list[Entry]]:
        """A queue's waiting jobs per tenant (namespace, user), each in admission order."""
        return self._lanes.lanes(queue)

    def smallest_waiting(self, queue: str) -> int | None:
        """The fewest GPUs a waiting job of the queue asks for."""
        return self._waiting.smallest(queue)

    def waiting_count(self, queue: str) -> int:
        return self._waiting.count(queue)

    def waiting_gpus(self, queue: str) -> int:
        return self._waiting.gpus(queue)

    def queue_names(self) -> list[str]:
        """Queues with waiting jobs."""
        return self._waiting.names()

    @property
    def queued_count(self) -> int:
        return self._waiting.count()

    # -- pods --------------------------------------------------------------------

    def put_pod(self, pod: PodView) -> None:
        key = pod.job_key
        self.pods.setdefault(key, {})[pod.name] = pod
        expected = self._expected.get(key)
        if expected is not None:
            expected.pop(pod.name, None)
            if not expected:
                del self._expected[key]
        self._pods_moved(key)
        self.dirty.add(key)
        self.news.add(key)

    def remove_pod(self, pod: PodView) -> None:
        key = pod.job_key
        pods = self.pods.get(key)
        if pods is not None and pods.get(pod.name) is not None and pods[pod.name].uid == pod.uid:
            del pods[pod.name]
            if not pods:
                del self.pods[key]
            self._pods_moved(key)
        self.dirty.add(key)
        self.news.add(key)

    def pods_of(self, job: Job) -> dict[int, PodView]:
        """The job's Pods of its current attempt, by index (an earlier job of the same
        name, or an earlier attempt, is not this job's)."""
        found: dict[int, PodView] = {}
        for pod in self.pods.get(job.key, {}).values():
            if pod.job_uid and pod.job_uid != job.uid:
                continue
            if pod.attempt and pod.attempt != job.status.attempts:
                continue
            found[pod.index] = pod
        return found

    def expect_pods(self, key: JobKey, names: dict[str, int], *, until: float) -> None:
        """Pods were created and are not seen yet: count them as present until `until`."""
        self._expected.setdefault(key, {}).update(names)
        self._expected_until[key] = until

    def unobserved(self, key: JobKey, *, now: float) -> set[int]:
        """Indexes of the job's Pods created but not seen yet."""
        expected = self._expected.get(key)
        if not expected:
            return set()
        if self._expected_until.get(key, 0.0) < now:
            del self._expected[key]
            return set()
        return set(expected.values())

    # -- the world around the jobs ------------------------------------------------

    def put_node(self, node: NodeView) -> None:
        if self.nodes.get(node.name) != node:  # a heartbeat alone changes no NodeView
            self._node_index = self._holdings = None
            self.structure += 1
        self.nodes[node.name] = node

    def remove_node(self, node: NodeView) -> None:
        if self.nodes.pop(node.name, None) is not None:
            self._node_index = self._holdings = None
            self.structure += 1

    def node_index(self) -> NodeIndex:
        """The nodes' pools, kept until a node changes (shunter.domain.capacity)."""
        if self._node_index is None:
            self._node_index = NodeIndex.of(self.nodes.values())
        return self._node_index

    def put_foreign(self, usage: PodUsage) -> None:
        self.foreign[usage.uid] = usage
        if self._holdings is not None:
            self._holdings.put_foreign(usage)

    def remove_foreign(self, usage: PodUsage) -> None:
        self.foreign.pop(usage.uid, None)
        if self._holdings is not None:
            self._holdings.remove_foreign(usage.uid)

    def put_queue(self, queue: QueueView) -> None:
        """A queue as the watch shows it. Its status.usage replaces the usage kept
        here when it is newer (written by another replica, or read at start); this
        replica's own writes come back older than what it has since folded."""
        if self.queues.get(queue.name) != queue:  # status.usage alone is not compared
            self.structure += 1
            self._holdings = None
        self.queues[queue.name] = queue
        seen = queue.usage
        if seen is None or seen.decayed_at is None:
            return
        kept = self.usage.get(queue.name)
        if kept is None or kept.decayed_at is None or seen.decayed_at > kept.decayed_at:
            self.usage[queue.name] = seen

    def held(self) -> dict[str, dict[Tenant, int]]:
        """GPUs held by admitted jobs, per queue and tenant."""
        return held_by(list(self.active.values()))

    def fold_usage(self, now: datetime) -> None:
        """Bring the decayed usage of every queue with admission fair sharing up to
        now, counting the GPUs its admitted jobs hold as held since the last fold
        (a pass runs at least every resync period, and after every change)."""
        if any(q.half_life for q in self.queues.values()):
            self.usage.update(fold(self.usage, self.queues, self.held(), now))

    def remove_queue(self, queue: QueueView) -> None:
        if self.queues.pop(queue.name, None) is not None:
            self.structure += 1
            self._holdings = None

    def put_claim(self, claim: ClaimView) -> None:
        key = (claim.namespace, claim.name)
        if self.claims.get(key) != claim:
            self.structure += 1
        self.claims[key] = claim

    def remove_claim(self, claim: ClaimView) -> None:
        if self.claims.pop((claim.namespace, claim.name), None) is not None:
            self.structure += 1

    def not_ready(self) -> frozenset[str]:
        return self.node_index().not_ready

    # -- what a pass must look at -------------------------------------------------

    def wake_at(self, key: JobKey, at: datetime) -> None:
        """Look at key again at `at` (an earlier pending look is kept; each look
        decides its own next one)."""
        pending = self._timer_at.get(key)
        if pending is not None and pending <= at:
            return
        self._timer_at[key] = at
        heapq.heappush(self._timers, (at, key))

    def next_timer(self) -> datetime | None:
        return self._timers[0][0] if self._timers else None

    def take_due(self, now: datetime) -> set[JobKey]:
        """The dirty jobs plus those whose timers are due; both are cleared."""
        due = self.dirty
        self.dirty = set()
        self.news = set()
        while self._timers and self._timers[0][0] <= now:
            at, key = heapq.heappop(self._timers)
            if self._timer_at.get(key) == at:
                del self._timer_at[key]
                due.add(key)
        return due

    def take_news(self) -> set[JobKey]:
        """What the watches changed since a pass or the last call took it (still
        dirty: the next pass looks at it too)."""
        news, self.news = self.news, set()
        return news

    def mark_all(self) -> None:
        """Every unfinished job needs a look (leadership change, periodic resync)."""
        self.dirty.update(k for k, j in self.jobs.items() if not (j.phase and j.phase.terminal))

    def forget_writes(self) -> None:
        """After a leadership change, what this replica wrote may be stale: back to
        what the watch shows."""
        for key in list(self._assumed):
            self.settle(key)
        written, self._written = self._written, {}
        for entry in written.values():
            self._index(entry.base)
        self._expected.clear()
        self._expected_until.clear()
        self.mark_all()
