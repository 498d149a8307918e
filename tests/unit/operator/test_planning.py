"""A whole reconcile pass (pure): freed slots are reused in the same pass."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shunter.domain.admission import AdmissionState, Limits, Verdict
from shunter.domain.model import Job, JobKey, JobStatus, Phase
from shunter.domain.queues import BEST_EFFORT_FIFO, QueueView
from shunter.operator.book import JobBook
from shunter.operator.controller import status_patch
from shunter.operator.planning import plan_pass
from shunter.operator.rules import Rules
from tests.support.builders import a_pod_of, a_training_job, gpu_nodes

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_a_completed_job_hands_its_slot_to_the_next_in_the_same_pass():
    running = a_training_job("a").in_phase("running", sequence=1).job()
    b = a_training_job("b").created_at(T0).in_phase("queued", sequence=2, queuePosition=1).job()
    c = a_training_job("c").created_at(T0).in_phase("queued", sequence=3, queuePosition=2).job()
    result = plan_pass(
        JobBook.of(
            [running, b, c], [a_pod_of(running, phase="Succeeded", exit_code=0)], nodes=gpu_nodes()
        ),
        now=NOW,
        rules=Rules(limits=Limits(max_running=1)),
    )
    d = result.decisions
    assert d[JobKey("default", "a")].status.phase is Phase.COMPLETED
    assert d[JobKey("default", "b")].status.phase is Phase.STARTING
    assert d[JobKey("default", "c")].status.queue_position == 1


def test_new_jobs_get_sequence_numbers_in_arrival_order():
    jobs = [
        a_training_job("late").created_at(T0 + timedelta(seconds=2)).job(),
        a_training_job("early").created_at(T0).job(),
    ]
    book = JobBook.of(jobs, nodes=gpu_nodes())
    book.max_sequence = 4
    result = plan_pass(
        book,
        now=NOW,
        rules=Rules(limits=Limits(max_running=1)),
    )
    assert result.decisions[JobKey("default", "early")].status.sequence == 5
    assert result.decisions[JobKey("default", "late")].status.sequence == 6
    assert result.next_sequence == 7


def test_an_unchanged_world_decides_nothing():
    job = (
        a_training_job("a")
        .in_phase("running", sequence=1, nodeName="gpu-node-0", podsReady=1)
        .job()
    )
    result = plan_pass(
        JobBook.of([job], [a_pod_of(job)], nodes=gpu_nodes()),
        now=NOW,
        rules=Rules(),
    )
    assert result.decisions == {}


def test_status_patch_carries_only_changes_and_deletes_cleared_fields():
    old = JobStatus(phase=Phase.QUEUED, queue_position=2, sequence=4)
    new = JobStatus(phase=Phase.STARTING, queue_position=None, sequence=4, pod_name="p")
    assert status_patch(old, new) == {"phase": "starting", "queuePosition": None, "podName": "p"}


def test_jobs_created_in_the_same_second_are_numbered_in_creation_order():
    first = replace(a_training_job("zz").created_at(T0).job(), resource_version="501")
    second = replace(a_training_job("aa").created_at(T0).job(), resource_version="502")
    result = plan_pass(JobBook.of([second, first], nodes=gpu_nodes()), now=NOW, rules=Rules())
    assert result.decisions[first.key].status.phase is Phase.STARTING
    assert result.decisions[second.key].status.sequence == 2


def test_only_the_first_positions_are_written_exactly():
    jobs = [
        a_training_job(f"j{i:02d}").created_at(T0 + timedelta(seconds=i)).job() for i in range(6)
    ]
    result = plan_pass(
        JobBook.of(jobs, nodes=gpu_nodes()),
        now=NOW,
        rules=Rules(limits=Limits(max_running=1), exact_positions=3),
    )
    statuses = [result.decisions[j.key].status for j in jobs]
    assert [s.queue_position for s in statuses] == [None, 1, 2, 3, None, None]
    assert statuses[4].message == "Waiting in queue (more than 3 jobs ahead)"
    assert statuses[0].phase is Phase.STARTING


def test_a_queued_job_whose_place_did_not_change_is_left_alone():
    head = (
        a_training_job("head")
        .in_phase("running", sequence=1, nodeName="gpu-node-0", podsReady=1)
        .job()
    )
    waiting = (
        a_training_job("wait")
        .in_phase(
            "queued",
            sequence=2,
            queuePosition=1,
            reason="Queued",
            message="Waiting in queue at position 1: no free slot (1 of 1 in use)",
        )
        .job()
    )
    result = plan_pass(
        JobBook.of([head, waiting], [a_pod_of(head)], nodes=gpu_nodes()),
        now=NOW,
        rules=Rules(),
    )
    assert result.decisions == {}


def test_a_pass_deletes_a_live_pod_of_a_finished_job_and_nothing_else_about_it():
    done = a_training_job("done").in_phase("cancelled", sequence=1).job()
    quiet = a_training_job("quiet").in_phase("completed", sequence=2).job()
    late = a_pod_of(done, phase="Running")
    result = plan_pass(JobBook.of([done, quiet], [late], nodes=gpu_nodes()), now=NOW,
                       rules=Rules())  # fmt: skip
    assert set(result.decisions) == {done.key}
    decision = result.decisions[done.key]
    assert decision.status == done.status
    assert [d.name for d in decision.delete_pods] == ["done-trainer"]


def test_a_namespace_at_its_gpu_cap_waits_and_blocks_no_other_namespace():
    held = a_training_job("held", "team-a").with_gpus(4).in_phase("running", sequence=1).job()
    more = (a_training_job("more", "team-a").with_gpus(2).created_at(T0)
            .in_phase("queued", sequence=2, queuePosition=1).job())  # fmt: skip
    other = (a_training_job("other", "team-b").with_gpus(2).created_at(T0)
             .in_phase("queued", sequence=3, queuePosition=2).job())  # fmt: skip
    result = plan_pass(
        JobBook.of([held, more, other], [a_pod_of(held)], nodes=gpu_nodes()),
        now=NOW,
        rules=Rules(limits=Limits(max_running=10, namespace_gpus=5)),
    )
    waiting = result.decisions[JobKey("team-a", "more")].status
    assert (waiting.phase, waiting.reason) == (Phase.QUEUED, "NamespaceQuota")
    assert "namespace team-a holds 4 of the 5 GPUs" in (waiting.message or "")
    assert result.decisions[JobKey("team-b", "other")].status.phase is Phase.STARTING


def _best_effort_world(waiting_gpus: list[int], *, held: int) -> JobBook:
    """Queue `be` (BestEffortFIFO, 8 GPUs of quota) with a running job holding `held`
    of them, and queued jobs asking `waiting_gpus` in this order."""
    running = (a_training_job("holder").with_gpus(held).with_spec(queue="be")
               .in_phase("running", sequence=1).job())  # fmt: skip
    waiting = [
        a_training_job(f"w{i:02d}").with_gpus(gpus).with_spec(queue="be")
        .created_at(T0 + timedelta(seconds=i)).in_phase("queued", sequence=i + 2).job()
        for i, gpus in enumerate(waiting_gpus)
    ]  # fmt: skip
    queue = QueueView("be", gpu_quota=8, strategy=BEST_EFFORT_FIFO)
    pod = a_pod_of(running, phase="Running")
    return JobBook.of([running, *waiting], [pod], nodes=gpu_nodes(), queues=[queue])


def test_a_best_effort_queue_stops_looking_back_once_no_job_of_it_can_fit(
    monkeypatch: pytest.MonkeyPatch,
):
    # The quota is full and every waiting job asks 2 GPUs: past the exact positions
    # nothing further back can start, so the walk stops there instead of looking 50
    # jobs further (what it did before; it decided the same).
    book = _best_effort_world([2] * 40, held=8)
    rules = Rules(limits=Limits(max_running=100))
    for key, decision in plan_pass(book, now=NOW, rules=rules).decisions.items():
        book.put_job(replace(book.jobs[key], status=decision.status))  # as if written
    looked: list[str] = []
    real = AdmissionState.verdict

    def counted(self: AdmissionState, job: Job, *, now: datetime) -> Verdict:
        looked.append(job.key.name)
        return real(self, job, now=now)

    monkeypatch.setattr(AdmissionState, "verdict", counted)
    book.mark_all()
    result = plan_pass(book, now=NOW, rules=rules)
    # (The head is asked once more by the preemption's trial.)
    assert sorted(set(looked)) == [f"w{i:02d}" for i in range(rules.exact_positions + 1)]
    assert result.decisions == {}


def test_a_best_effort_queue_still_finds_a_smaller_job_further_back():
    # 2 GPUs of quota left; 30 jobs of 4 GPUs wait ahead of one of 2, at position 31.
    book = _best_effort_world([4] * 30 + [2], held=6)
    result = plan_pass(book, now=NOW, rules=Rules(limits=Limits(max_running=100)))
    assert result.decisions[JobKey("default", "w30")].status.phase is Phase.STARTING
    assert not any(
        d.status.phase is Phase.STARTING for k, d in result.decisions.items() if k.name != "w30"
    )
