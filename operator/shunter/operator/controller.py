"""The serialized reconcile loop: one pass at a time, on the leader only.

Informers feed the book (shunter.operator.book) and wake this loop; a pass asks
`planning.plan_pass` what to do about what changed and does it. Running passes one
at a time is what makes admission safe: parallel per-job "if running < limit then
start" checks would over-admit. A pass runs only once every informer has listed its
resource (a restarted operator sees every job before deciding anything).

A pass does not wait for its writes. Each decision is carried out by a flight of
its own (status, then Pods, then Events), at most CONCURRENCY at once through a gate
that lets the writes that carry out a user's cancel or suspend pass first, then those
that stop a job or settle its status (a preemption, `running`, a finish), then those
that start Pods (admissions), then those that only renumber waiting jobs
(shunter.operator.gate, `rank`). The decided status is laid
over the job in the book while its flight is out, so the next pass, which may start
at once, sees it as done; a job with a flight out is not decided again until it
lands (a decision the pass makes for it meanwhile is dropped, and the job looked at
again when the flight lands), with two exceptions. A renumbering not yet sent is
replaced by the newer decision (the two are written as one). A decision that moves a
job whose renumbering is already being written follows that write at once, on the
version it produced, unless anything else changed the job meanwhile: an admission
does not wait for another pass behind a position update (the busiest queues' heads
always have one out, and lost a tenth of their share to the wait). A flight that
fails puts the job back as it was known, to be decided again.

Between passes a quick look (`quick`) decides at once, for the jobs the watches
changed, what no queue's walk takes part in (`planning.decide_alone`): a cancel or
suspend, a finish, `running`, a Pod to create again. Passes are paced (at most half
the time, and none while many writes wait), and at 60,000 jobs a user's cancel waited
for the next one: 24 s at p50. The jobs stay marked, and the next pass looks at them
too (the slot a finish freed, the queue a cancel left), finding them decided.

The book covers the lag between a write and its watch event: the status written is
laid over the job until the watch shows the write's resourceVersion, and a Pod
created but not yet seen counts as present for EXPECTATION_TTL.

Every write is fenced (shunter.operator.actions): checked against leadership right
before it is sent, bounded in time, and a status write carries the resourceVersion
its decision saw. A 409 means someone wrote the job since (a user's patch, or a
newer leader): the decision is dropped, and the job is decided again from the newer
version as soon as the watch brings it (the watch event marks it dirty and wakes the
loop; RETRY_AFTER_CONFLICT is only a backstop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from shunter.domain.arrays import run_manifest
from shunter.domain.claims import (
    MISSING,
    NOT_ALLOWED,
    Claimant,
    ClaimVerdict,
    ClaimView,
    judge_claim,
)
from shunter.domain.dependencies import Absent, Upstream
from shunter.domain.fairshare import usage_patch
from shunter.domain.model import POD_INDEX_LABEL, Job, JobKey, JobStatus, Phase
from shunter.domain.reports import EVENT_EVERY_SECONDS, checkpoint_event
from shunter.kube import Body, Conflict, Forbidden, Invalid, KubeError, NotFound
from shunter.operator.actions import Actions, Fenced
from shunter.operator.book import JobBook
from shunter.operator.decisions import Decision, Event
from shunter.operator.estimating import Estimator
from shunter.operator.gate import Gate, Rank, Ticket
from shunter.operator.lifecycle import stale_stop, stamped_when_sent
from shunter.operator.planning import changes, decide_alone, plan_pass
from shunter.operator.settings import Settings

log = logging.getLogger("shunter.operator")

EXPECTATION_TTL = 30.0
RETRY_AFTER_ERROR = timedelta(seconds=2)
# A job leaving the queue that the installer's policy no longer allows.
POLICY_VIOLATION = "PolicyViolation"
RETRY_AFTER_CONFLICT = timedelta(seconds=0.5)
CONCURRENCY = 32
# Of those, at most this many renumberings (shunter.operator.gate).
RENUMBERINGS = 8
# No pass while more urgent writes than this wait for a slot (Controller._caught_up),
# unless they have for PACE_LIMIT (a safety net: the line always moves). A pass
# waiting also delays the cheap decisions (a finished job's slot): at 4x CONCURRENCY
# the 1,000-job reaction bench freed slots 2.5x later (bench/RESULTS.md); at this
# size only a backlog far beyond what a pass decides at once holds passes back.
AHEAD = 32 * CONCURRENCY
PACE_LIMIT = timedelta(seconds=10)
Asker = Callable[[Collection[JobKey]], Awaitable[dict[JobKey, Upstream | Absent]]]
# The quick look between passes (Controller.quick) runs at most this often: the
# changes of that time are looked at together.
QUICK_EVERY = 0.05
EVENT_BACKLOG = 10_000
EVENT_WORKERS = 4


def status_patch(old: JobStatus, new: JobStatus) -> dict[str, object]:
    """A merge patch turning old into new (None deletes a field)."""
    before, after = old.to_raw(), new.to_raw()
    return {k: v for k, v in after.items() if before.get(k) != v}


def rank(job: Job, decision: Decision) -> Rank:
    """Where the decision's write waits in the gate (shunter.operator.gate): RENUMBER
    if it only tells a waiting job its new number, position or message, ANSWER if it
    carries out its user's cancel or suspend, START if it creates Pods or runs (an
    admission, a Pod created again), SETTLE otherwise (a preemption, a deadline,
    `running`, a finish)."""
    if (job.queued and decision.status.phase in (None, Phase.QUEUED)
            and not (decision.create or decision.delete_pods or decision.runs
                     or decision.patch_jobs)):  # fmt: skip
        return Rank.RENUMBER
    if job.spec.cancelled or job.spec.suspended:
        return Rank.ANSWER
    if decision.create or decision.runs:
        return Rank.START
    return Rank.SETTLE


@dataclass(slots=True)
class _Flight:
    job: Job  # as known when decided (what its status is patched against)
    decision: Decision
    rank: Rank  # its place in the gate
    owner: Controller  # whose `_take_off` starts it (the flight is its ticket's `start`)
    ticket: Ticket | None = None  # its place in the gate's line
    task: asyncio.Task[None] | None = None  # once it has a slot
    sent: bool = False  # through the gate: no longer replaceable
    again: bool = False  # a decision about the job was dropped meanwhile
    # A renumbering's: the decision that moves the job, sent when this one lands.
    follow: Decision | None = None
    landed: Job | None = None  # the job as this flight's status write left it

    def outdated(self, job: Job) -> bool:
        """Still in line (replaceable), urgent, and decided from a version of the job
        other than `job`: sent, it would be refused (`Controller._drop`)."""
        return (
            not self.sent and self.rank.urgent and job.resource_version != self.job.resource_version
        )

    def __call__(self) -> None:
        """Handed a slot by the gate. (The flight itself is what its ticket starts:
        tens of thousands wait at once, and a closure each cost 180 bytes more.)"""
        self.owner._take_off(self)


async def _at_once() -> None:
    return None


class Controller:
    def __init__(self, actions: Actions, book: JobBook, settings: Settings) -> None:
        self.actions = actions
        self.book = book
        self.settings = settings
        self.leader: Callable[[], bool] = lambda: True
        # Returns once this replica's writes may go out (LeaderElector.fresh).
        self.fresh: Callable[[], Awaitable[None]] = _at_once
        self.synced: Callable[[], bool] = lambda: True
        self._wake = asyncio.Event()
        self._news = asyncio.Event()  # the watches changed a job: a quick look
        self._passing = False  # a pass is deciding or sending (no quick look meanwhile)
        self._asked = False  # a pass is wanted (not only a new timer to wait for)
        self._planned_for = 0.0  # the last pass's CPU seconds, and when it ended
        self._planned_end = 0.0
        self._gate = Gate(CONCURRENCY, others=RENUMBERINGS)
        self._grounded = False
        self._flights: dict[JobKey, _Flight] = {}
        book.in_flight = self._flights.keys()  # live: the book reads what is out
        # Events are posted off the reconcile path: a slow or failing Event never
        # delays the next decision. A job's Events always go to the same worker, so
        # they are posted in the order decided; each carries the time it was decided.
        self._events: list[asyncio.Queue[tuple[Job, Event, datetime]]] = [
            asyncio.Queue(maxsize=EVENT_BACKLOG // EVENT_WORKERS) for _ in range(EVENT_WORKERS)
        ]
        self._last_event_at = datetime.min.replace(tzinfo=UTC)
        self.last_pass = time.monotonic()
        self.passes = 0
        self.conflicts = 0  # status writes refused for a stale resourceVersion
        self._checkpoint_events: dict[str, float] = {}  # job uid -> when last posted
        self._usage_written_at = float("-inf")
        self._usage_written: dict[str, dict[str, object]] = {}
        # What the mirror says of jobs named by a dependency with no TrainingJob
        # (Mirror.last_states); None: no mirror, such names are missing.
        self.recall_from: Asker | None = None
        self._recalling: asyncio.Task[None] | None = None
        # The kept plan of start-time estimates (None: SHUNTER_ESTIMATES=false).
        self.estimator: Estimator | None = None

    # -- inputs ----------------------------------------------------------------

    def wake(self) -> None:
        if self.estimator is not None:
            self.estimator.touch()
        self._ask()
        self._news.set()  # after the loop's: an idle loop's pass takes the news first

    def nudge(self) -> None:
        """Run the loop (a new plan's estimates to write) without marking a change."""
        self._ask()

    def _ask(self) -> None:
        self._asked = True
        self._wake.set()

    def forget(self) -> None:
        """Drop write memories: after a leadership change they may be stale."""
        self.book.forget_writes()
        self._usage_written.clear()
        self._ask()

    # -- the loop --------------------------------------------------------------

    async def run(self) -> None:
        quick = asyncio.create_task(self._quick_loop(), name="quick look")
        try:
            await self._loop()
        finally:
            quick.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await quick
            await self.ground()

    async def _quick_loop(self) -> None:
        while True:
            await self._news.wait()
            self._news.clear()
            if not self._passing and self.synced() and self.leader():
                try:
                    self.quick()
                except Exception:
                    log.exception("quick look failed (the next pass decides)")
            await asyncio.sleep(QUICK_EVERY)

    def quick(self) -> None:
        """Decide now, for the jobs the watches changed since the last pass or look,
        what no queue's walk takes part in (`planning.decide_alone`); the rest waits for
        the next pass. A write still in line decided from an older version of the job
        (its admission, when the user cancelled) is dropped first, as a pass would."""
        book = self.book
        keys = book.take_news()
        if not keys:
            return
        now = datetime.now(UTC)
        clock = time.monotonic()
        not_ready = book.not_ready()
        for key in keys:
            known = book.known(key)
            if known is None:
                continue
            flight = self._flights.get(key)
            if flight is not None:
                if flight.outdated(known):
                    self._drop(flight)
                elif flight.sent or flight.rank.urgent:
                    if known.spec != flight.job.spec:
                        flight.again = True  # its user's change: looked at as it lands
                    continue
            job = book.jobs[key]
            decision = decide_alone(book, job, now=now, rules=self.settings.rules,
                                    unobserved=lambda k: book.unobserved(k, now=clock),
                                    not_ready=not_ready)  # fmt: skip
            if decision is None:
                continue
            if decision.wake_at is not None:
                book.wake_at(key, decision.wake_at)
            if changes(job, decision):
                self._send(known, decision)

    async def _loop(self) -> None:
        resync = self.settings.resync.total_seconds()
        resync_at = time.monotonic() + resync
        while True:
            acting = self.synced() and self.leader()
            timeout = max(0.0, resync_at - time.monotonic()) if acting else resync
            next_timer = self.book.next_timer()
            if acting and next_timer is not None:
                timeout = min(timeout, (next_timer - datetime.now(UTC)).total_seconds())
            # Always yield to the loop, even when a timer is already due.
            timed_out = False
            try:
                async with asyncio.timeout(max(0.0, timeout)):
                    await self._wake.wait()
            except TimeoutError:
                timed_out = True
            self._wake.clear()
            if not (timed_out or self._asked):
                continue  # only a flight's retry timer: wait again, until the first timer
            self._asked = False
            if not self.synced() or not self.leader():
                continue
            await self._caught_up()
            if not self.leader():
                continue
            # Passes at most half the time: a pass over many queues takes seconds of
            # CPU, and back to back they would leave the API server (on the same
            # cores, in small clusters) too little to serve the writes they make.
            # The changes meanwhile are taken by the next pass together.
            rest = self._planned_for - (time.monotonic() - self._planned_end)
            if rest > 0:
                await asyncio.sleep(rest)
            if time.monotonic() >= resync_at:
                self.book.mark_all()  # a safety net: nothing is left unlooked-at for long
                resync_at = time.monotonic() + resync
            try:
                self._passing = True
                try:
                    await self.reconcile_once()
                finally:
                    self._passing = False
                if self.book.news:
                    self._news.set()  # seen while the pass was sending
                await self.write_usage()
                self.recall()
                if self.estimator is not None:
                    await self.estimator.write(self.actions)
            except Exception:
                log.exception("reconcile pass failed; retrying")
                self.book.mark_all()
                await asyncio.sleep(RETRY_AFTER_ERROR.total_seconds())

    async def _caught_up(self) -> None:
        """Wait, before a pass, while more than AHEAD urgent writes wait for a slot,
        until half as many do (at most PACE_LIMIT). A pass decides from what the book
        shows; its admissions, stops and finishes are then written in the order
        decided, as the API server takes them. When it takes fewer than the passes
        decide (60,000 jobs on a small control plane), an unpaced loop decided ever
        further ahead: 8,000 admissions, each with its Pods' manifests, waited to be
        written, and a user's cancel waited behind all of them. Paced, the changes seen
        meanwhile are decided together by the next pass, from a fresher book."""
        if self._gate.urgent_waiting <= AHEAD:
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(PACE_LIMIT.total_seconds()):
                await self._gate.short(AHEAD // 2)

    async def reconcile_once(self) -> None:
        """One pass: decide, and send the decisions off (`settled` waits for them)."""
        now = datetime.now(UTC)
        book = self.book
        clock = time.monotonic()
        cpu = time.thread_time()
        result = plan_pass(
            book,
            changed=book.take_due(now),
            now=now,
            rules=self.settings.rules,
            unobserved=lambda key: book.unobserved(key, now=clock),
        )
        self._planned_for = time.thread_time() - cpu
        self._planned_end = time.monotonic()
        for key, at in result.wake_at.items():
            book.wake_at(key, at)
        # Each decision's status is written against the job it was decided from.
        decided = [(book.known(key), d) for key, d in result.decisions.items()]
        if decided:
            await self.fresh()  # a long pass: the lease renewed before any write
        for job, decision in decided:
            if job is not None:
                self._send(job, decision)
        self.last_pass = time.monotonic()
        self.passes += 1
        await asyncio.sleep(0)  # the flights start before the next pass is planned

    def _send(self, job: Job, decision: Decision) -> None:
        """A flight for the decision, unless one is out for the job already: a
        renumbering not yet sent is replaced (its Events kept); the first decision
        that moves the job follows a renumbering being written, if decided from the
        same version; otherwise the decision is dropped, and the job decided again when
        that flight lands."""
        key = job.key
        if key not in self.book.jobs or self._grounded:
            return  # deleted meanwhile, or the operator stops
        flight = self._flights.get(key)
        events = decision.events
        if flight is not None:
            if (flight.sent and not flight.rank.urgent and flight.follow is None
                    and rank(job, decision).urgent
                    and job.resource_version == flight.job.resource_version):  # fmt: skip
                flight.follow = decision
                self.book.assume(job, decision.status)  # no other pass admits in its place
                return
            if flight.outdated(job):
                self._drop(flight)
                return
            if flight.sent or flight.rank.urgent:
                flight.again = True
                return
            assert flight.ticket is not None
            flight.ticket.cancel()
            # Its Events are kept, once: a job not yet numbered is decided again, with
            # the same Queued Event, every pass until its number is written.
            kept = flight.decision.events
            events = kept + tuple(e for e in events if e not in kept)
        for line in decision.logs:
            log.info(line)
        decision = replace(decision, events=events)
        new = _Flight(job, decision, rank(job, decision), self)
        if decision.status != job.status:
            self.book.assume(job, decision.status)
        self._flights[key] = new
        # Waits in the gate's line as data; its task starts with its slot.
        new.ticket = self._gate.line(new.rank, new)

    def _drop(self, flight: _Flight) -> None:
        """A write still in line, decided from a version of the job that has changed
        since (a user's cancel or suspend of a job whose admission waits to be
        written: at 60,000 jobs that wait was 20 minutes, and the cancel waited behind
        it). Sent, it would be refused (409); it is dropped now, with its Events, and
        the job decided again from what is stored (a cancel of a job that waited, not
        of one that started)."""
        assert flight.ticket is not None
        flight.ticket.cancel()
        flight.again = True
        self._landed(flight, None)  # never sent: back to what is stored, decided again
        log.info("job %s: changed while its write waited; deciding again", flight.job.key)

    def _take_off(self, flight: _Flight) -> None:
        """The flight has a slot: from here it is sent, and no longer replaceable."""
        flight.sent = True
        flight.task = asyncio.create_task(self._fly(flight), name=f"flight {flight.job.key}")

    async def _fly(self, flight: _Flight) -> None:
        job, retry = flight.job, None
        try:
            retry = await self._carry_out(flight)
        except Exception:
            log.exception("job %s: carrying out its decision failed; retrying", job.key)
            retry = RETRY_AFTER_ERROR
        finally:
            self._gate.release(flight.rank)
            self._landed(flight, retry)
        if retry is not None:
            self.book.wake_at(job.key, datetime.now(UTC) + retry)
            self._wake.set()  # the loop's wait ends at the first timer, which may be this

    def _landed(self, flight: _Flight, retry: timedelta | None) -> None:
        """The flight is over (written, refused, or grounded before it flew)."""
        key = flight.job.key
        if self._flights.get(key) is flight:
            del self._flights[key]
            self.book.settle(key)  # not written: back to what is known
            if flight.follow is not None:
                self._follow(flight, retry)
            if flight.again:
                self.book.dirty.add(key)
                self.book.news.add(key)  # the quick look too: a cancel need not wait
                self._ask()
                self._news.set()

    def _follow(self, flight: _Flight, retry: timedelta | None) -> None:
        """Send the decision that waited for this renumbering, on the version the
        renumbering produced, if that is still the job as known (anything else, such
        as a user's cancel seen meanwhile, and the job is decided again)."""
        assert flight.follow is not None
        known = self.book.known(flight.job.key)
        landed = flight.landed
        if (retry is None and known is not None and landed is not None
                and known.resource_version == landed.resource_version):  # fmt: skip
            self._send(known, flight.follow)
        else:
            flight.again = True

    async def settled(self) -> None:
        """Wait until every flight has landed (for tests and tools)."""
        while self._flights:
            flying = [f.task for f in list(self._flights.values()) if f.task is not None]
            if flying:  # those still in line get their slots as these land
                await asyncio.gather(*flying, return_exceptions=True)
            else:
                await asyncio.sleep(0)

    async def ground(self) -> None:
        """Stop every flight (the operator stops: nothing of it may write after)."""
        self._grounded = True  # no flight starts after this, not even a follower
        for flight in list(self._flights.values()):
            if not flight.sent and flight.ticket is not None:  # in line: it never flies
                flight.ticket.cancel()
                self._landed(flight, None)
        flights = [f.task for f in self._flights.values() if f.task is not None]
        for task in flights:
            task.cancel()
        if flights:
            await asyncio.wait(flights)

    def recall(self) -> None:
        """Ask the mirror about the names the last pass found no job for (off the
        reconcile path: their dependents wait meanwhile, and look again when told)."""
        if not self.book.recall or (self._recalling is not None and not self._recalling.done()):
            return
        keys = set(self.book.recall)
        if self.recall_from is None:
            self.book.recalled(dict.fromkeys(keys, Absent.MISSING))
            self._ask()
            return
        self._recalling = asyncio.create_task(self._recall(keys, self.recall_from))

    async def _recall(self, keys: set[JobKey], ask: Asker) -> None:
        try:
            found = await ask(keys)
        except Exception as exc:  # PostgreSQL away: the dependents keep waiting
            log.warning("dependencies: the history could not be read (%s); retrying", exc)
            await asyncio.sleep(RETRY_AFTER_ERROR.total_seconds())
            self._ask()
            return
        self.book.recalled(found)
        self._ask()

    async def write_usage(self, *, force: bool = False) -> None:
        """Write the decayed usage of queues with admission fair sharing to their
        status, at most every `usage_write` (each pass folds it in memory): what a
        restarted operator or a new leader starts from. A failed write is tried
        again next time; admission never waits for it."""
        clock = time.monotonic()
        if not force and clock - self._usage_written_at < self.settings.usage_write.total_seconds():
            return
        self._usage_written_at = clock
        for name, ledger in list(self.book.usage.items()):
            queue = self.book.queues.get(name)
            if queue is None or not queue.half_life:
                continue
            raw = ledger.to_raw()
            previous = self._usage_written.get(name)
            seen = queue.usage.to_raw() if queue.usage is not None else None
            if raw in (previous, seen):
                continue
            patch = usage_patch((previous, seen), raw)
            try:
                await self.actions.patch_queue_status(name, {"usage": patch})
            except (KubeError, Fenced) as exc:
                log.warning("queue %s: usage not written: %s (will retry)", name, exc)
                continue
            self._usage_written[name] = raw

    # -- outputs ---------------------------------------------------------------

    async def _carry_out(self, flight: _Flight) -> timedelta | None:
        """Status first (the step is recorded before it is taken), then the Pod call.

        The decision's log lines went out when it was sent, so whoever sees the new
        status (a client polling for `cancelled`) finds them already in the log.
        """
        job, decision = flight.job, flight.decision
        if stale_stop(job, decision, self.book.pods_of(job)):
            log.info("job %s: its Pods succeeded while its stop waited; deciding again", job.key)
            flight.again = True  # decided again as it lands: it completes
            return None
        try:
            admitting = job.queued  # a start from the queue, not a retried Pod
            status = stamped_when_sent(job.status, decision.status, datetime.now(UTC))
            job = flight.landed = await self._write_status(job, status)
            retry = (await self._create(job, decision, admitting=admitting)
                     if decision.create else None)  # fmt: skip
            if decision.runs or decision.patch_jobs:
                await self._array(job, decision)
            if decision.delete_pods:
                await asyncio.gather(*(
                    self.actions.delete_pod(d.namespace, d.name, grace_seconds=d.grace_seconds)
                    for d in decision.delete_pods
                ))  # fmt: skip
        except NotFound:
            return None  # the job was deleted meanwhile; its Pod goes with it
        except Conflict:
            # Only status writes answer 409 here (a create that finds its object
            # already there succeeds, see Actions.create).
            self.conflicts += 1
            log.info("job %s: changed since this decision; deciding again", job.key)
            return RETRY_AFTER_CONFLICT
        except Fenced as exc:
            log.info("job %s: %s", job.key, exc)
            return RETRY_AFTER_ERROR
        except KubeError as exc:
            log.warning("job %s: %s (will retry)", job.key, exc)
            return RETRY_AFTER_ERROR
        if decision.released:
            log.info("[Slot] Job %s released its slot (%s)", job.key, decision.status.phase)
        self._post(job, decision.events)
        return retry

    async def _array(self, job: Job, decision: Decision) -> None:
        """An array's runs: those to create, from its spec as stored now (the book
        keeps parsed jobs, not bodies), then the patches to its runs."""
        if decision.runs:
            body = await self.actions.job(job.key)
            if body is None or body["metadata"].get("uid") != job.uid:
                return  # deleted (or replaced) meanwhile: its runs go with it
            await asyncio.gather(*(self.actions.create(run_manifest(body, i))
                                   for i in decision.runs))  # fmt: skip
            log.info("[Array] Job %s: created runs %s", job.key,
                     ", ".join(str(i) for i in decision.runs))  # fmt: skip
        await asyncio.gather(*(self.actions.patch_job(key, patch)
                               for key, patch in decision.patch_jobs))  # fmt: skip

    def checkpointed(self, before: Job | None, after: Job) -> None:
        """A Checkpointed Event when the watch shows a newly reported checkpoint, at
        most one per job per EVENT_EVERY_SECONDS (the leader's; off the decision path)."""
        message = checkpoint_event(before, after)
        if message is None or not self.leader():
            return
        now = time.monotonic()
        if now - self._checkpoint_events.get(after.uid, -EVENT_EVERY_SECONDS) < EVENT_EVERY_SECONDS:
            return
        self._checkpoint_events[after.uid] = now
        if len(self._checkpoint_events) > EVENT_BACKLOG:
            self._checkpoint_events.pop(next(iter(self._checkpoint_events)))
        self._post(after, (Event("Normal", "Checkpointed", message),))

    def _post(self, job: Job, events: Iterable[Event]) -> None:
        """Hand the Events to the job's worker (posted off the reconcile path)."""
        queue = self._events[hash(job.key) % EVENT_WORKERS]
        for event in events:
            try:
                queue.put_nowait((job, event, self._event_time()))
            except asyncio.QueueFull:
                log.warning("job %s: event %s dropped (backlog full)", job.key, event.reason)

    def _event_time(self) -> datetime:
        """Now, but strictly after the previous Event (two Events of one decision
        must not tie, or `kubectl describe` could list them in either order)."""
        at = max(datetime.now(UTC), self._last_event_at + timedelta(microseconds=1))
        self._last_event_at = at
        return at

    async def post_events(self, worker: int) -> None:
        """Post the Events of worker's queue, in the order they were decided."""
        events = self._events[worker]
        while True:
            job, event, at = await events.get()
            try:
                await self.actions.post_event(job.key, job.uid, event, at=at)
            except (KubeError, Fenced) as exc:
                log.warning("job %s: event %s not posted: %s", job.key, event.reason, exc)

    async def _write_status(self, job: Job, status: JobStatus) -> Job:
        """Write status if the job is still at the version decided on; the job as written."""
        patch = status_patch(job.status, status)
        if not patch:
            return job
        body = await self.actions.patch_job_status(job.key, patch, version=job.resource_version)
        version = str(body["metadata"]["resourceVersion"])
        # The mirror is fed by the watch event of this write.
        self.book.written(job, status, version)
        return replace(job, status=status, resource_version=version)

    async def _create(self, job: Job, decision: Decision, *, admitting: bool) -> timedelta | None:
        """The installer's policy first when the job leaves the queue (it may have
        waited since before the policy changed; an admitted job is left alone), then
        the claim and Service, then every Pod at once; when to look again if the Pods
        must wait (None: done, or the job failed)."""
        if admitting and self.settings.policies:
            refusal = await self.actions.policy_refusal(job, self.settings.policies)
            if refusal is not None:
                message = f"The installer's policy no longer allows this job: {refusal}"
                log.info("[Refuse] Job %s not started: %s", job.key, message)
                self._post(job, (Event("Warning", POLICY_VIOLATION, message),))
                await self._fail(job, job.status, POLICY_VIOLATION, message)
                return None
        others = [m for m in decision.create if m["kind"] != "Pod"]
        pods = decision.create_pods
        try:
            for manifest in others:
                created = await self.actions.create(manifest)
                if not created and manifest["kind"] == "PersistentVolumeClaim":
                    verdict = await self._claim_found(job, manifest)
                    if verdict is not None:
                        return await self._hold(job, job.status, verdict)
            await asyncio.gather(*(self.actions.create(m) for m in pods))
        except (Invalid, Forbidden) as exc:
            # The API server will never accept this Pod (its schema, or an admission
            # rule such as restricted Pod Security): fail the job, do not retry.
            message = f"The trainer Pod was rejected by the API server: {exc.detail}"
            await self._fail(job, job.status, "PodRejected", message)
            return None
        names = {m["metadata"]["name"]: i for i, m in enumerate(pods)}
        indexes = {n: int(m["metadata"]["labels"].get(POD_INDEX_LABEL, 0)) for n, m in
                   zip(names, pods, strict=True)}  # fmt: skip
        self.book.expect_pods(job.key, indexes, until=time.monotonic() + EXPECTATION_TTL)
        return None

    async def _claim_found(self, job: Job, manifest: Body) -> ClaimVerdict | None:
        """The job's checkpoint claim, whose create found one already there, judged
        now by the plan's rule (shunter.domain.claims), before any Pod exists: the
        plan judged the informer's view, which may not show a claim made a moment
        ago. The job's own claim (a retried create) is fine; one made by anyone else
        is refused unless offered; one gone again is looked at later."""
        namespace, name = manifest["metadata"]["namespace"], manifest["metadata"]["name"]
        body = await self.actions.claim(namespace, name)
        if body is None:
            return ClaimVerdict(MISSING, f"checkpoint claim {name!r} was deleted meanwhile")
        return judge_claim(namespace, name, found=ClaimView.parse(body),
                           allowed=self.settings.rules.allowed_claims,
                           job=Claimant.of(job.key.name, job.spec, uid=job.uid))  # fmt: skip

    async def _hold(self, job: Job, status: JobStatus, verdict: ClaimVerdict) -> timedelta | None:
        """No Pods: the job fails (a claim it may not mount), or looks again shortly."""
        if verdict.refused:
            log.info("[Refuse] Job %s not started: %s", job.key, verdict.message)
            self._post(job, (Event("Warning", NOT_ALLOWED, verdict.message),))
            await self._fail(job, status, NOT_ALLOWED, verdict.message)
            return None
        log.info("job %s: its Pods wait: %s", job.key, verdict.message)
        return RETRY_AFTER_ERROR

    async def _fail(self, job: Job, status: JobStatus, reason: str, message: str) -> None:
        failed = replace(status, phase=Phase.FAILED, reason=reason, message=message,
                         completed_at=datetime.now(UTC))  # fmt: skip
        await self._write_status(job, failed)
