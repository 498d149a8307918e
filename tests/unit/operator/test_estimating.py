"""Which jobs' status shows an estimate (shunter.operator.estimating.positioned): the
jobs the pass gave an exact position, so the two always name the same jobs, also in a
queue with admission fair sharing where the pass's order is not submission order."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from datetime import datetime, timedelta

import pytest
from bench.fair_share import T0, World, job, node

from shunter.domain.admission import Limits
from shunter.domain.estimates import Learned, Plan, plan
from shunter.domain.estimates import World as EstimatesWorld
from shunter.domain.fairshare import Ledger
from shunter.domain.model import Job, JobKey
from shunter.domain.queues import QueueView
from shunter.operator.book import JobBook
from shunter.operator.estimating import Estimator, positioned
from shunter.operator.mirror import Mirror
from shunter.operator.planner import NICE, Answer, Ask, PlannerGone
from shunter.operator.preemption import for_estimates
from shunter.operator.rules import Rules
from shunter.operator.settings import Settings
from tests.support.polling import wait_for

RULES = Rules(limits=Limits(max_running=10), exact_positions=2)


def waiting_world(*, half_life: int | None) -> World:
    """A node held by one job; team rich (a large decayed usage) submits three jobs,
    team poor three a minute later: submission order is rich's first, fair order poor's."""
    queue = QueueView("shared", half_life=half_life,
                      usage=Ledger(T0, {"rich": 1e6}, {("rich", ""): 1e6}))  # fmt: skip
    holder = job("holder", namespace="other", queue="shared", gpus=8, created=T0)
    rich = [job(f"rich-{i}", namespace="rich", queue="shared", gpus=8,
                created=T0 + timedelta(seconds=1)) for i in range(3)]  # fmt: skip
    poor = [job(f"poor-{i}", namespace="poor", queue="shared", gpus=8,
                created=T0 + timedelta(minutes=1)) for i in range(3)]  # fmt: skip
    world = World([holder], queues=[queue], nodes=[node("n0")], rules=RULES)
    world.step(T0)  # the holder runs
    for waiting in (*rich, *poor):
        world.add(waiting)
    world.step(T0 + timedelta(minutes=2))
    return world


def names(jobs: list[Job]) -> set[str]:
    return {j.key.name for j in jobs}


def test_a_fair_sharing_queue_shows_estimates_on_the_jobs_with_exact_positions() -> None:
    world = waiting_world(half_life=3600)
    book = world.book
    with_position = {k.name: j.status.queue_position for k, j in book.jobs.items()
                     if j.status.queue_position is not None}  # fmt: skip
    assert with_position == {"poor-0": 1, "poor-1": 2}  # fair order: the poor team first
    plain = [j.key.name for j in book.waiting("shared")][:2]
    assert plain == ["rich-0", "rich-1"]  # what a second, plain ordering would pick
    assert names(positioned(book, limit=RULES.exact_positions)) == {"poor-0", "poor-1"}


def test_a_plain_queue_shows_them_on_its_first_jobs() -> None:
    book = waiting_world(half_life=None).book
    shown = positioned(book, limit=RULES.exact_positions)
    assert names(shown) == {"rich-0", "rich-1"}
    assert {j.status.queue_position for j in shown} == {1, 2}


def test_a_job_that_fell_behind_loses_its_place_in_the_subset() -> None:
    world = waiting_world(half_life=3600)
    urgent = job("urgent", namespace="rich", queue="shared", gpus=8, priority=5,
                 created=T0 + timedelta(minutes=3))  # fmt: skip
    world.add(urgent)
    world.step(T0 + timedelta(minutes=4))
    assert names(positioned(world.book, limit=RULES.exact_positions)) == {"urgent", "poor-0"}
    assert world.book.jobs[JobKey("poor", "poor-1")].status.queue_position is None


def test_a_best_effort_queue_numbers_only_the_first_jobs_like_any_queue() -> None:
    """A BestEffortFIFO queue's walk looks further than the exact positions (for a job
    that fits), but numbers only the first `exact_positions`, like a StrictFIFO queue;
    the estimates go to the same jobs."""
    world = World([job("holder", queue="be", gpus=8)], queues=[QueueView("be",
                  strategy="BestEffortFIFO")], nodes=[node("n0")], rules=RULES)  # fmt: skip
    world.step(T0)
    for i in range(4):
        world.add(job(f"w{i}", queue="be", gpus=8, created=T0 + timedelta(seconds=1 + i)))
    world.step(T0 + timedelta(minutes=1))
    statuses = [world.book.jobs[JobKey("default", f"w{i}")].status for i in range(4)]
    assert [s.queue_position for s in statuses] == [1, 2, None, None]
    beyond = f"Waiting in queue (more than {RULES.exact_positions} jobs ahead)"
    assert [s.message for s in statuses[2:]] == [beyond, beyond]
    assert names(positioned(world.book, limit=RULES.exact_positions)) == {"w0", "w1"}


# -- the plan in its process (shunter.operator.planner) ---------------------------------


def estimator(book: JobBook, monkeypatch: pytest.MonkeyPatch) -> Estimator:
    monkeypatch.setenv("SHUNTER_EXACT_POSITIONS", str(RULES.exact_positions))
    monkeypatch.setenv("SHUNTER_MAX_RUNNING", str(RULES.limits.max_running))
    return Estimator(book, Mirror(None), Settings.from_env())


def in_process(book: JobBook, settings: Settings, now: datetime) -> Plan:
    """The plan the operator's thread made before: from a snapshot of the book."""
    world = EstimatesWorld(now=now, limits=settings.limits, queues=dict(book.queues),
                           nodes=list(book.nodes.values()), foreign=list(book.foreign.values()),
                           active=list(book.active.values()), waiting=list(book.waiting()),
                           usage=dict(book.usage),
                           preempt=for_estimates(settings.rules))  # fmt: skip
    return plan(world, learned=Learned())


def timed_world() -> World:
    """waiting_world's plain queue, each job with a maxRuntimeSeconds (estimates with times)."""
    world = waiting_world(half_life=None)
    for job_ in list(world.book.jobs.values()):
        world.book.put_job(replace(job_, spec=replace(job_.spec, max_runtime_seconds=600)))
    world.step(T0 + timedelta(minutes=2))
    return world


def test_the_planner_process_answers_what_a_plan_of_the_book_says(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Fed the book's changes, the planner's estimates for the positioned jobs are those
    of a plan made from the book itself; a change (a job of higher priority) reaches it
    with the next plan, and the process ends when stopped."""
    world = timed_world()
    book = world.book
    now = T0 + timedelta(minutes=2)

    async def scenario() -> tuple[list[Answer], list[Plan], int, int | None]:
        est = estimator(book, monkeypatch)
        answers, plans = [], []
        try:
            answers.append(await est.refresh(now))
            plans.append(in_process(book, est.settings, now))
            assert book.changed == set()
            assert est.planner.pid is not None
            pid = est.planner.pid
            # Below the operator's CPU priority (the operator's passes go first).
            assert os.getpriority(os.PRIO_PROCESS, pid) == min(19, os.nice(0) + NICE)
            urgent = job("urgent", namespace="rich", queue="shared", gpus=8, priority=5,
                         created=T0 + timedelta(minutes=3))  # fmt: skip
            world.add(replace(urgent, spec=replace(urgent.spec, max_runtime_seconds=60)))
            later = T0 + timedelta(minutes=4)
            world.step(later)
            assert JobKey("rich", "urgent") in book.changed
            answers.append(await est.refresh(later))
            plans.append(in_process(book, est.settings, later))
        finally:
            await est.planner.stop()
        return answers, plans, pid, est.planner.pid

    answers, plans, pid, after = asyncio.run(scenario())
    assert after is None
    assert not alive(pid)  # ended and reaped
    for answer, made in zip(answers, plans, strict=True):
        assert answer.error is None
        assert answer.estimates == {k: made.estimate(k) for k in answer.estimates}
        assert answer.computed_at == made.computed_at
    first, second = answers
    assert set(first.estimates) == {JobKey("rich", "rich-0"), JobKey("rich", "rich-1")}
    assert set(second.estimates) == {JobKey("rich", "urgent"), JobKey("rich", "rich-0")}
    # The holder ends 600 s after its plan's time at the latest; then the urgent job
    # goes first, for its 60 s.
    assert first.estimates[JobKey("rich", "rich-0")].start == now + timedelta(seconds=600)
    urgent_starts = second.estimates[JobKey("rich", "urgent")].start
    assert urgent_starts == now + timedelta(seconds=600)
    assert second.estimates[JobKey("rich", "rich-0")].start == urgent_starts + timedelta(seconds=60)


def test_a_planner_that_died_is_started_again_and_told_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    book = waiting_world(half_life=None).book
    now = T0 + timedelta(minutes=2)

    async def scenario() -> tuple[Answer, Answer, int, int]:
        est = estimator(book, monkeypatch)
        try:
            first = await est.refresh(now)
            pid = est.planner.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(PlannerGone):
                await est.refresh(now)  # the answer never comes
            assert book.changed == set(book.jobs)  # everything again, to the next one
            again = await est.refresh(now)
            assert est.planner.pid is not None
            return first, again, pid, est.planner.pid
        finally:
            await est.planner.stop()

    first, again, pid, new_pid = asyncio.run(scenario())
    assert new_pid != pid
    assert again.estimates == first.estimates
    assert again.how == "full"  # a new planner: no kept plan


def test_the_planner_ends_when_the_operator_dies() -> None:
    """An operator killed in the middle of a plan leaves no planner behind (the
    parent-death signal); CI once saw operators that outlived their test."""
    program = (
        "import asyncio, os\n"
        "from shunter.domain.admission import Limits\n"
        "from shunter.operator.planner import PlannerProcess, Start\n"
        "from shunter.operator.rules import Rules\n"
        "async def main():\n"
        "    p = PlannerProcess(Start(Limits(max_running=1), Rules(limits=Limits(max_running=1)),"
        " None, '*'))\n"
        "    await p.launch()\n"
        "    print(p.pid, flush=True)\n"
        "    os._exit(0)\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    wait_for(lambda: not alive(pid), timeout=30, what=f"planner {pid} gone")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_an_operator_stopping_kills_its_planner_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The estimates' task cancelled (the operator stops) while its planner plans (here
    stopped with SIGSTOP: a plan that does not end): the planner is killed, not waited
    for (the operator hands its Lease over only once its tasks are done)."""
    book = timed_world().book
    monkeypatch.setenv("SHUNTER_ESTIMATE_SECONDS", "1")

    async def scenario() -> tuple[int, float]:
        est = estimator(book, monkeypatch)
        asked = asyncio.Event()
        real_ask = est.planner.ask

        async def ask(question: Ask) -> Answer:
            pid = est.planner.pid
            assert pid is not None
            os.kill(pid, signal.SIGSTOP)
            asked.set()
            return await real_ask(question)

        monkeypatch.setattr(est.planner, "ask", ask)
        task = asyncio.create_task(est.run(lambda: True))
        async with asyncio.timeout(30):
            await asked.wait()
        await asyncio.sleep(0.2)  # the question sent, no answer coming
        pid = est.planner.pid
        assert pid is not None
        clock = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        took = time.monotonic() - clock
        await asyncio.sleep(0.1)  # reaped by its task
        return pid, took

    pid, took = asyncio.run(scenario())
    assert took < 1.0, took
    wait_for(lambda: not alive(pid), timeout=10, what=f"planner {pid} gone")
