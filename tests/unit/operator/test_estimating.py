"""Which jobs' status shows an estimate (shunter.operator.estimating.positioned): the
jobs the pass gave an exact position, so the two always name the same jobs, also in a
queue with admission fair sharing where the pass's order is not submission order."""

from __future__ import annotations

from datetime import timedelta

from bench.fair_share import T0, World, job, node

from shunter.domain.admission import Limits
from shunter.domain.fairshare import Ledger
from shunter.domain.model import Job, JobKey
from shunter.domain.queues import QueueView
from shunter.operator.estimating import positioned
from shunter.operator.rules import Rules

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


# -- the plan's thread ----------------------------------------------------------------


def test_a_plan_in_its_thread_answers_its_result_and_its_error() -> None:
    import asyncio

    from shunter.operator.estimating import in_daemon_thread

    def fails() -> None:
        raise ValueError("no plan")

    async def both() -> tuple[int, str]:
        result = await in_daemon_thread(pow, 2, 10)
        try:
            await in_daemon_thread(fails)
        except ValueError as exc:
            return result, str(exc)
        return result, ""

    assert asyncio.run(both()) == (1024, "no plan")


def test_an_operator_stopping_in_the_middle_of_a_plan_does_not_wait_for_it() -> None:
    # CI saw operators still running 30 s after SIGTERM: the loop closed, and
    # asyncio.run waited for the executor thread of a plan that ran on. A process whose
    # plan never ends exits as soon as its loop is done (with asyncio.to_thread it
    # never does: the run's timeout fails the test).
    import subprocess
    import sys

    program = (
        "import asyncio, threading\n"
        "from shunter.operator.estimating import in_daemon_thread\n"
        "async def main():\n"
        "    task = asyncio.ensure_future(in_daemon_thread(threading.Event().wait))\n"
        "    await asyncio.sleep(0.2)\n"
        "    task.cancel()\n"
        "asyncio.run(main())\n"
        "print('exited')\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=30)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "exited"
