"""The start-time estimates' plan in a process of its own (the planner).

The plan (shunter.domain.estimates: a simulation of every queued job, 25 s of CPU at
60,000 jobs, and the kept plan between versions, which holds its own version of every
job it places) ran in a thread of the operator: it shared the interpreter's lock with
the event loop and its memory with the book. In the large-2000 run it took a third of
the operator's CPU, 130-180 MiB of its memory, and a fifth of the jobs done by 12
minutes (bench/RESULTS.md, sixteenth session). Here it runs in a child process the
operator starts (`python -m shunter.operator.planner`), fed the changes rather than
the book:

- the operator's book notes the keys of the jobs that changed (`JobBook.changed`);
  before each plan the operator sends those jobs as the book has them now (None for a
  job the plan does not read: gone, finished, or an array), the queues, nodes and
  foreign Pods when they changed, then asks for a plan (`Ask`: the time, the fair
  queues' usage, the learned runtimes when read again, the keys whose estimates its
  status writes need);
- the planner keeps a book of its own from those changes (the same JobBook, so the
  same owner of which jobs wait and in what order, and which hold a slot), brings its
  kept plan up to date (`estimates.replan`: kept, appended or full, as before),
  publishes a new plan to the mirror itself (one connection of its own; the 13 MB of
  JSON never pass through the operator), and answers with the estimates of the keys
  asked for (`Answer`).

Messages are pickles, each after its length (8 bytes), on the child's stdin and
stdout; its log goes to stderr (the operator's log). The child ends when its stdin
closes (the operator stopped or died); the operator starts it again, and sends every
job again, when it finds it gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any

import psycopg

from shunter.domain.admission import Limits, waits
from shunter.domain.estimates import (
    Estimate,
    Learned,
    Plan,
    World,
    estimates_raw,
    replan,
    timeline_raw,
)
from shunter.domain.fairshare import Ledger
from shunter.domain.model import Job, JobKey
from shunter.domain.nodes import NodeView, PodUsage
from shunter.domain.queues import QueueView
from shunter.operator import memory
from shunter.operator.book import JobBook
from shunter.operator.preemption import for_estimates
from shunter.operator.rules import Rules

log = logging.getLogger("shunter.operator.planner")

# The newest plan of an install (Scope.key); an older one never replaces it.
PUBLISH_PLAN = (
    "INSERT INTO queue_plan (scope, computed_at, body, timeline)"
    " VALUES (%(scope)s, %(at)s, %(body)s, %(timeline)s)"
    " ON CONFLICT (scope) DO UPDATE SET computed_at = EXCLUDED.computed_at, body = EXCLUDED.body,"
    " timeline = EXCLUDED.timeline"
    " WHERE queue_plan.computed_at < EXCLUDED.computed_at"
)
HEADER = 8  # bytes of a message's length, big-endian
CHUNK = 2_000  # jobs per message of changes (one pickle at a time in the operator)
STOP_SECONDS = 5.0  # how long a stopping operator waits for the planner to end
# The planner's CPU priority below the operator's: a plan is a forecast, and on a busy
# machine it may take longer rather than take the CPU the operator's passes and writes
# (or a co-located API server) need. 10 of 19: about a tenth of a core's share against
# a process at 0.
NICE = 10


@dataclass(frozen=True)
class Start:
    """The planner's settings, the first message."""

    limits: Limits
    rules: Rules
    database_url: str | None
    scope: str


@dataclass(frozen=True)
class Changes:
    """Jobs as the operator's book has them now (None: not one the plan reads), and the
    queues, nodes and foreign Pods where they changed (None: as before)."""

    jobs: list[tuple[JobKey, Job | None]] = field(default_factory=list)
    queues: dict[str, QueueView] | None = None
    nodes: dict[str, NodeView] | None = None  # by name, as the book keeps them
    foreign: dict[str, PodUsage] | None = None  # by uid


@dataclass(frozen=True)
class Ask:
    """Bring the plan up to date as of `now`; answer the estimates of `keys`."""

    now: datetime
    usage: dict[str, Ledger]
    learned: Learned | None  # None: as before
    keys: list[JobKey]


@dataclass(frozen=True)
class Answer:
    """How the plan was brought up to date ("kept", "appended", "full"), its version,
    when it was computed, and the estimates of the keys asked for (a key the plan does
    not place: None). `error`: the plan failed (the text of the exception)."""

    how: str
    version: datetime | None = None
    computed_at: datetime | None = None
    estimates: dict[JobKey, Estimate | None] = field(default_factory=dict)
    published: bool = False
    error: str | None = None
    # What it cost the planner: the jobs it took in since the last answer, and the
    # plan's (and its publishing's) wall and CPU seconds.
    taken: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def plans_of(job: Job | None) -> bool:
    """Whether the plan reads the job: one that waits for admission or holds a slot
    (what World.waiting and World.active hold)."""
    return job is not None and (job.holds_slot or waits(job))


# -- the planner process ------------------------------------------------------------


class Keeper:
    """The planner's state: its book, its kept plan, and where it publishes."""

    def __init__(self, start: Start) -> None:
        self.start = start
        self.book = JobBook()
        self.queues: dict[str, QueueView] = {}
        self.nodes: list[NodeView] = []
        self.foreign: list[PodUsage] = []
        self.learned = Learned()
        self.kept: Plan | None = None
        self.preempt = for_estimates(start.rules)
        self.publisher = Publisher(start.database_url, start.scope)
        self.taken = 0

    def take(self, changes: Changes) -> None:
        book = self.book
        self.taken += len(changes.jobs)
        for key, job in changes.jobs:
            if job is None:
                book.remove_job(key)
            else:
                book.put_job(job)
        book.dirty.clear()  # no pass reads this book
        if changes.queues is not None:
            self.queues = changes.queues
        if changes.nodes is not None:
            self.nodes = list(changes.nodes.values())
        if changes.foreign is not None:
            self.foreign = list(changes.foreign.values())

    def world(self, ask: Ask) -> World:
        book = self.book
        return World(now=ask.now, limits=self.start.limits, queues=self.queues,
                     nodes=self.nodes, foreign=self.foreign,
                     active=list(book.active.values()), waiting=list(book.waiting()),
                     usage=ask.usage, preempt=self.preempt)  # fmt: skip

    def answer(self, ask: Ask) -> Answer:
        if ask.learned is not None:
            self.learned = ask.learned
        clock, cpu = time.monotonic(), time.process_time()
        taken, self.taken = self.taken, 0
        try:
            found, how = replan(self.kept, self.world(ask), learned=self.learned)
        except Exception as exc:  # the operator logs it and asks again later
            log.exception("planner: the plan failed")
            return Answer("failed", error=f"{type(exc).__name__}: {exc}")
        if how != "kept":
            self.kept = found
            published = self.publisher.publish(found)
        else:
            published = self.publisher.retry()
        return Answer(how, found.version, found.computed_at,
                      {key: found.estimate(key) for key in ask.keys}, published, taken=taken,
                      seconds=time.monotonic() - clock,
                      cpu_seconds=time.process_time() - cpu)  # fmt: skip


class Publisher:
    """The newest plan to the mirror (table queue_plan), over a connection of the
    planner's own; one that could not be written is tried again with the next answer,
    unless a newer plan came (as the mirror's flush does)."""

    def __init__(self, url: str | None, scope: str) -> None:
        self.url, self.scope = url, scope
        self._conn: psycopg.Connection[Any] | None = None
        self._pending: tuple[datetime, str, str] | None = None

    def publish(self, plan: Plan) -> bool:
        if self.url is None:
            return False
        self._pending = (plan.version, *dump(plan))
        return self.retry()

    def retry(self) -> bool:
        if self._pending is None or self.url is None:
            return False
        at, body, timeline = self._pending
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=5)
            self._conn.execute(PUBLISH_PLAN, {"scope": self.scope, "at": at, "body": body,
                                               "timeline": timeline})  # fmt: skip
        except (psycopg.Error, OSError) as exc:
            log.warning("planner: plan not published (tried again with the next): %s", exc)
            with contextlib.suppress(Exception):
                if self._conn is not None:
                    self._conn.close()
            self._conn = None
            return False
        self._pending = None
        return True

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None


def dump(kept: Plan) -> tuple[str, str]:
    """The published plan: its estimates and its timeline (shunter.domain.estimates)."""
    return (json.dumps(estimates_raw(kept), separators=(",", ":")),
            json.dumps(timeline_raw(kept), separators=(",", ":")))  # fmt: skip


def read(stream: IO[bytes]) -> Any:
    """The next message, or None at the end of the stream."""
    header = stream.read(HEADER)
    if len(header) < HEADER:
        return None
    size = int.from_bytes(header, "big")
    body = stream.read(size)
    if len(body) < size:
        return None
    return pickle.loads(body)


def frame(message: object) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return len(body).to_bytes(HEADER, "big") + body


def serve(inp: IO[bytes], out: IO[bytes]) -> None:
    """Answer the operator's messages until its end of the pipe closes."""
    start = read(inp)
    if not isinstance(start, Start):
        raise SystemExit(f"planner: expected Start, got {type(start).__name__}")
    keeper = Keeper(start)
    while (message := read(inp)) is not None:
        if isinstance(message, Changes):
            keeper.take(message)
        elif isinstance(message, Ask):
            out.write(frame(keeper.answer(message)))
            out.flush()
            memory.trim()  # what the plan's transients freed, back to the system
        else:
            raise SystemExit(f"planner: unknown message {type(message).__name__}")


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    _end_with_the_operator()
    # Background work: the operator and, on a shared machine, the API server go first.
    with contextlib.suppress(OSError):
        os.nice(NICE)
    memory.tune()
    memory.tune_collector()
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # nothing but answers on the pipe
    serve(inp, out)
    return 0


def _end_with_the_operator() -> None:
    """Killed when the operator dies (Linux's parent-death signal), so that a plan
    under way never outlives it; elsewhere the closed stdin ends it after the plan."""
    import ctypes
    import signal

    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        if os.getppid() == 1:  # the operator died before the signal was set
            raise SystemExit(0)


PR_SET_PDEATHSIG = 1


# -- the operator's side ------------------------------------------------------------


class PlannerGone(Exception):
    """The planner process ended (or its pipe broke): started again with the next plan."""


class PlannerProcess:
    """The planner as the operator sees it: a child process and its two pipes."""

    def __init__(self, start: Start) -> None:
        self.start = start
        self._proc: asyncio.subprocess.Process | None = None
        self._reaping: set[asyncio.Task[int]] = set()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    async def launch(self) -> None:
        env = dict(os.environ)
        # The operator's own import path: the child runs the same code.
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self._proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "shunter.operator.planner",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env,
        )  # fmt: skip
        log.info("planner: started (pid %d)", self._proc.pid)
        memory.CHILDREN["planner"] = self._proc.pid
        await self.send(self.start)

    async def send(self, message: object) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise PlannerGone("not started")
        try:
            proc.stdin.write(frame(message))
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError) as exc:
            raise PlannerGone(str(exc)) from exc

    async def send_jobs(self, jobs: Iterable[tuple[JobKey, Job | None]], **world: Any) -> None:
        """Changes in messages of at most CHUNK jobs (each pickled on its own: the
        operator never holds the pickle of the whole book), the world with the first."""
        chunk: list[tuple[JobKey, Job | None]] = []
        first = True
        for item in jobs:
            chunk.append(item)
            if len(chunk) >= CHUNK:
                await self.send(Changes(chunk, **(world if first else {})))
                chunk, first = [], False
        if chunk or first:
            await self.send(Changes(chunk, **(world if first else {})))

    async def ask(self, ask: Ask) -> Answer:
        await self.send(ask)
        proc = self._proc
        assert proc is not None
        assert proc.stdout is not None
        try:
            header = await proc.stdout.readexactly(HEADER)
            body = await proc.stdout.readexactly(int.from_bytes(header, "big"))
        except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
            raise PlannerGone(f"ended ({exc})") from exc
        answer = pickle.loads(body)
        assert isinstance(answer, Answer)
        return answer

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            async with asyncio.timeout(STOP_SECONDS):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()

    def kill(self) -> None:
        """At once, without waiting: reaped (and its pipes closed) by a task of its own;
        the next plan starts another."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        if proc.stdin is not None:
            proc.stdin.close()
        reaping = asyncio.get_running_loop().create_task(proc.wait(), name="planner reaped")
        self._reaping.add(reaping)
        reaping.add_done_callback(self._reaping.discard)


def changed_world(sent: Mapping[str, object] | None, now: Mapping[str, object]) -> bool:
    """Whether a collection differs from the one last sent (by identity: the book
    replaces an object that changes)."""
    if sent is None or sent.keys() != now.keys():
        return True
    return any(sent[k] is not v for k, v in now.items())


if __name__ == "__main__":
    # Run as the imported module, not as __main__: the messages' classes are its own.
    from shunter.operator import planner

    sys.exit(planner.main())
