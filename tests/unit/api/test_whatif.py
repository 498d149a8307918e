"""The what-if's answer from a kept plan (shunter.api.whatif): position, estimate,
preemption candidates and sooner alternatives."""

from __future__ import annotations

import asyncio
from dataclasses import replace

from shunter.api.whatif import answer_what_if
from shunter.domain.estimates import Learned, plan
from shunter.domain.model import Job
from shunter.domain.queues import LOWER_PRIORITY, QueueView
from tests.unit.operator.test_estimates import at, queued, running, world


def ask(job: Job, kept: object, *, queues: dict[str, QueueView], holders: list[Job],
        allowed: set[str] | None = None) -> dict[str, object]:  # fmt: skip
    async def may(queue: str) -> bool:
        return allowed is None or queue in allowed

    answer = asyncio.run(answer_what_if(job, kept, now=at(0), queues=queues,  # type: ignore[arg-type]
                                        holders=holders, allowed=may))  # fmt: skip
    return answer.model_dump()


def test_fewer_gpus_and_another_queue_start_sooner() -> None:
    # One node of 8: a holds 4 until 600. An 8-GPU job waits until then; with 4 it
    # starts now; queue "spare" is no better (the same node).
    a = running("a", 4, limit=600)
    kept = plan(world([a], []), learned=Learned())
    answer = ask(queued("new", 8, 1000, limit=60), kept, queues={}, holders=[a])
    assert answer["position"] == 1
    assert answer["estimated_start"] == at(600)
    assert [alt["message"] for alt in answer["alternatives"]] == ["with 4 GPUs: starts now"]
    assert answer["would_preempt"] is False


def test_another_queue_the_caller_may_use() -> None:
    queues = {"busy": QueueView("busy", max_running=1), "spare": QueueView("spare")}
    a = running("a", 1, limit=1200)
    a = Job(
        a.key,
        a.uid,
        a.resource_version,
        a.created_at,
        spec=replace(a.spec, queue="busy"),
        status=a.status,
    )
    kept = plan(world([a], [], queues=queues), learned=Learned())
    job = queued("new", 1, 1000, limit=60, queue="busy")
    answer = ask(job, kept, queues=queues, holders=[a], allowed={"spare"})
    assert answer["estimated_start"] == at(1200)
    messages = [alt["message"] for alt in answer["alternatives"]]
    assert "in queue spare: starts now" in messages
    refused = ask(job, kept, queues=queues, holders=[a], allowed=set())
    assert not any(alt["queue"] == "spare" for alt in refused["alternatives"])


def test_a_head_that_may_preempt_starts_when_its_victims_stop() -> None:
    # low holds the node for an hour; high preempts it: its start is low's stop's
    # deadline (its own 30 s grace), at the earliest now.
    queues = {"default": QueueView("default", preemption=LOWER_PRIORITY)}
    low = running("low", 8, limit=3600)
    kept = plan(world([low], [], queues=queues), learned=Learned())
    answer = ask(queued("high", 8, 1000, limit=60, priority=5), kept, queues=queues,
                 holders=[low])  # fmt: skip
    assert answer["would_preempt"] is True
    assert answer["preempts"] == ["default/low"]
    assert answer["estimated_start"] == at(30)
    assert answer["estimated_start_range"]["earliest"] == at(0)
    assert answer["estimated_start_range"]["latest"] == at(30)
    assert "preempt 1 job" in answer["message"]


def test_a_plan_older_than_the_victims_does_not_make_a_preempting_job_start_now() -> None:
    # The kept plan was made before low started (an empty node): the victims come from
    # the live state, so the job starts when their stop ends, and the answer says it
    # preempts (CI saw "Would start now" with a victim named).
    queues = {"default": QueueView("default", preemption=LOWER_PRIORITY)}
    low = running("low", 8, limit=3600)
    stale = plan(world([], [], queues=queues), learned=Learned())
    answer = ask(queued("high", 8, 1000, limit=60, priority=5), stale, queues=queues,
                 holders=[low])  # fmt: skip
    assert answer["preempts"] == ["default/low"]
    assert answer["estimated_start"] == at(30)
    assert "preempt 1 job" in answer["message"]


def test_no_plan_says_so() -> None:
    answer = ask(queued("new", 1, 1000), None, queues={}, holders=[])
    assert answer["estimated_start"] is None
    assert "no plan" in answer["estimated_start_range"]["reason"]
