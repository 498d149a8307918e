"""Job arrays (shunter.domain.arrays): which runs to create, the array's phase and
counts from its runs, what its cancel, suspend and resume do to them, and how a pass
(shunter.operator.planning) decides for an array and its runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from shunter.domain import arrays
from shunter.domain.admission import Limits
from shunter.domain.arrays import ArrayCounts, next_indexes, run_manifest, summarise
from shunter.domain.model import (
    ARRAY_INDEX_LABEL,
    ARRAY_LABEL,
    SUBMITTED_BY,
    SUSPENDED_BY_ARRAY,
    ArraySpec,
    Job,
    Phase,
)
from shunter.domain.podspec import build_pod
from shunter.operator.book import JobBook
from shunter.operator.planning import plan_pass
from shunter.operator.rules import Rules
from tests.support.builders import a_training_job, gpu_nodes

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)


def an_array(count: int = 10, parallel: int | None = None, **spec: Any) -> dict[str, Any]:
    array: dict[str, Any] = {"count": count}
    if parallel is not None:
        array["maxParallel"] = parallel
    return a_training_job("sweep").with_spec(array=array, **spec).submitted_by("alice").body()


def run_of(body: dict[str, Any], index: int, phase: str | None = None, *,
           spec: dict[str, Any] | None = None, **annotations: str) -> Job:  # fmt: skip
    run = run_manifest(body, index)
    run["spec"].update(spec or {})
    run["metadata"].update(uid=f"run-{index}", resourceVersion="1",
                           creationTimestamp="2026-01-01T00:00:00Z")  # fmt: skip
    run["metadata"]["annotations"].update(annotations)
    run["status"] = {"phase": phase} if phase else {}
    return Job.parse(run)


def test_the_lowest_indexes_without_a_run_are_created_up_to_max_parallel():
    spec = ArraySpec(count=100, max_parallel=10)
    assert next_indexes(spec, set(), unfinished=0) == list(range(10))
    assert next_indexes(spec, set(range(10)), unfinished=10) == []
    assert next_indexes(spec, set(range(12)), unfinished=8) == [12, 13]
    # A run deleted by hand (or created but not seen yet) is created again first.
    assert next_indexes(spec, set(range(12)) - {3}, unfinished=8) == [3, 12]
    assert next_indexes(spec, set(range(12)), unfinished=8, taken={12}) == [13, 14]
    assert next_indexes(ArraySpec(3, 3), {0, 1, 2}, unfinished=0) == []


def test_max_parallel_defaults_to_count():
    assert ArraySpec.parse({"count": 7}) == ArraySpec(7, 7)
    assert ArraySpec.parse(None) is None


def test_the_array_phase_summarises_its_runs():
    array = Job.parse(an_array(4))
    assert summarise(array, ArrayCounts(4)).phase == Phase.QUEUED
    assert summarise(array, ArrayCounts(4, queued=2, running=1)).phase == Phase.RUNNING
    assert summarise(array, ArrayCounts(4, completed=4)).phase == Phase.COMPLETED
    assert summarise(array, ArrayCounts(4, completed=3)).phase == Phase.QUEUED  # one not created
    assert summarise(array, ArrayCounts(4, completed=3, failed=1)).phase == Phase.FAILED
    assert summarise(array, ArrayCounts(4, completed=3, cancelled=1)).phase == Phase.CANCELLED
    assert summarise(array, ArrayCounts(4, completed=1, running=1, failed=1)).phase == Phase.RUNNING
    cancelled = Job.parse({**an_array(4), "spec": {**an_array(4)["spec"], "cancelled": True}})
    assert summarise(cancelled, ArrayCounts(4, running=1)).phase == Phase.CANCELLING
    assert summarise(cancelled, ArrayCounts(4, completed=1, cancelled=1)).phase == Phase.CANCELLED
    suspended = Job.parse({**an_array(4), "spec": {**an_array(4)["spec"], "suspended": True}})
    assert summarise(suspended, ArrayCounts(4, suspended=2)).phase == Phase.SUSPENDED


def test_counts_per_phase_and_the_kubectl_line():
    body = an_array(10)
    runs = {
        i: run_of(body, i, p)
        for i, p in enumerate(
            ["completed", "running", "starting", "queued", "suspended", "failed", "cancelled"]
        )
    }
    counts = ArrayCounts.of(10, arrays.Named.of(runs.values()).tally[Job.parse(body).uid])
    raw = counts.to_raw()
    assert {k: v for k, v in raw.items() if k != "display"} == {
        "queued": 1, "running": 2, "suspended": 1, "completed": 1, "failed": 1,
        "cancelled": 1, "notCreated": 3}  # fmt: skip
    assert raw["display"] == "1/10 done, 2 running, 1 queued, 1 suspended, 1 failed, 1 cancelled"
    assert counts.unfinished == 4


def test_a_run_copies_the_array_without_array_and_carries_its_identity():
    body = an_array(5, 2, cancelled=False, env=[{"name": "A", "value": "1"}])
    run = run_manifest(body, 3)
    assert run["metadata"]["name"] == "sweep-3"
    assert run["metadata"]["namespace"] == "default"
    assert run["metadata"]["labels"][ARRAY_LABEL] == "sweep"
    assert run["metadata"]["labels"][ARRAY_INDEX_LABEL] == "3"
    assert run["metadata"]["annotations"][SUBMITTED_BY] == "alice"
    (owner,) = run["metadata"]["ownerReferences"]
    assert owner["uid"] == body["metadata"]["uid"]
    assert owner["controller"] is True
    assert "array" not in run["spec"]
    assert "cancelled" not in run["spec"]
    assert run["spec"]["env"] == [{"name": "A", "value": "1"}]
    # Its trainer Pod learns its index (the job's own env is kept, ours wins).
    pod = build_pod(run_of(body, 3))
    env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
    assert env["SHUNTER_ARRAY_INDEX"] == "3"
    assert env["SHUNTER_ARRAY_COUNT"] == "5"
    assert env["A"] == "1"
    plain = build_pod(a_training_job("plain").job())
    assert "SHUNTER_ARRAY_INDEX" not in {e["name"] for e in plain["spec"]["containers"][0]["env"]}


def test_only_a_job_controlled_by_the_array_is_a_run_of_it():
    body = an_array(10)
    array = Job.parse(body)
    assert arrays.is_run_of(run_of(body, 3), array)
    # Labels and name alone (made by hand): not adopted.
    forged = a_training_job("sweep-3").body()
    forged["metadata"]["labels"] = {ARRAY_LABEL: "sweep", ARRAY_INDEX_LABEL: "3"}
    assert not arrays.is_run_of(Job.parse(forged), array)
    # Owned by another array of the same name (an earlier one, deleted): not a run.
    other = an_array(10)
    assert not arrays.is_run_of(run_of(other, 3), array)
    # An index label that disagrees with the name, or beyond count: not a run.
    wrong = run_manifest(body, 3)
    wrong["metadata"].update(uid="x", name="sweep-4")
    assert not arrays.is_run_of(Job.parse(wrong), array)
    assert not arrays.is_run_of(run_of(an_array(20) | {"metadata": body["metadata"]}, 12), array)


def test_a_hand_made_job_holding_a_runs_name_makes_that_index_fail_not_run():
    body = an_array(4, 4)
    forged = a_training_job("sweep-2").in_phase("running").body()
    forged["metadata"]["labels"] = {ARRAY_LABEL: "sweep", ARRAY_INDEX_LABEL: "2"}
    found = arrays.plan(Job.parse(body), arrays.Named.of([Job.parse(forged)]), now=NOW)
    assert found.create == (0, 1, 3)
    assert found.status.array is not None
    assert found.status.array["failed"] == 1
    assert found.status.array["running"] == 0  # the hand-made job is not counted as a run
    assert "NameTaken" in (found.status.message or "")


def test_cancel_and_suspend_of_the_array_reach_its_unfinished_runs_only():
    body = an_array(4, 4)
    runs = [run_of(body, 0, "completed"), run_of(body, 1, "running"), run_of(body, 2, "queued")]
    cancelled = Job.parse(body | {"spec": {**body["spec"], "cancelled": True}})
    found = arrays.plan(cancelled, arrays.Named.of(runs), now=NOW)
    assert found.create == ()  # no new runs
    assert [(k.name, p["spec"]) for k, p in found.patches] == [
        ("sweep-1", {"cancelled": True}), ("sweep-2", {"cancelled": True})]  # fmt: skip
    assert found.status.phase == Phase.CANCELLING

    suspended = Job.parse(body | {"spec": {**body["spec"], "suspended": True}})
    found = arrays.plan(suspended, arrays.Named.of(runs), now=NOW)
    assert found.create == ()
    assert [k.name for k, _ in found.patches] == ["sweep-1", "sweep-2"]
    assert all(p["metadata"]["annotations"][SUSPENDED_BY_ARRAY] == "true" for _, p in found.patches)
    # Resumed: the runs the array suspended resume; one suspended on its own stays.
    held = run_of(body, 1, "suspended", spec={"suspended": True}, **{SUSPENDED_BY_ARRAY: "true"})
    own = run_of(body, 2, "suspended", spec={"suspended": True})
    found = arrays.plan(Job.parse(body), arrays.Named.of([runs[0], held, own]), now=NOW)
    assert [(k.name, p["spec"]) for k, p in found.patches] == [("sweep-1", {"suspended": False})]
    assert found.create == (3,)


def test_a_pass_creates_runs_and_never_queues_or_admits_the_array_itself():
    body = an_array(100, 10, gpus=1)
    book = JobBook.of([Job.parse(body)], nodes=gpu_nodes(1, gpus=8))
    found = plan_pass(book, now=NOW, rules=Rules())
    decision = found.decisions[Job.parse(body).key]
    assert decision.runs == tuple(range(10))
    assert decision.status.phase == Phase.QUEUED
    assert decision.status.sequence is None
    assert book.queued_count == 0
    assert not book.active
    # The runs appear: they queue as any job; the array counts them and creates no more.
    for i in range(10):
        book.put_job(run_of(body, i))
    found = plan_pass(book, now=NOW, rules=Rules(limits=Limits(max_running=20)))
    decision = found.decisions[Job.parse(body).key]
    assert decision.runs == ()
    assert decision.status.array == {**decision.status.array, "queued": 10, "notCreated": 90}
    admitted = [k for k, d in found.decisions.items() if d.status.admitted_at is not None]
    assert len(admitted) == 8  # one node of 8 GPUs: runs are admitted like any job


def test_a_change_to_a_run_marks_its_array():
    body = an_array(3)
    array = Job.parse(body)
    book = JobBook.of([array])
    book.take_due(NOW)
    book.put_job(run_of(body, 1, "running"))
    assert array.key in book.take_due(NOW)
    book.put_job(a_training_job("other-1").job())
    assert array.key not in book.take_due(NOW)


def test_the_book_keeps_an_arrays_counts_as_its_runs_change_and_go():
    body = an_array(3, 3)
    array = Job.parse(body)
    book = JobBook.of([array, run_of(body, 0), run_of(body, 1, "running")])

    def counts() -> dict[str, int]:
        raw = arrays.plan(array, book.named_runs(array.key), now=NOW).status.array
        assert raw is not None
        return {k: v for k, v in raw.items() if v and k != "display"}

    assert counts() == {"queued": 1, "running": 1, "notCreated": 1}
    book.put_job(run_of(body, 1, "completed"))
    book.put_job(run_of(body, 0, "running"))
    assert counts() == {"running": 1, "completed": 1, "notCreated": 1}
    book.remove_job(run_of(body, 0).key)  # deleted by hand: created again
    assert counts() == {"completed": 1, "notCreated": 2}
    assert arrays.plan(array, book.named_runs(array.key), now=NOW).create == (0, 2)
    # A job of that name that is not a run (another array's, or none's) takes the index.
    book.put_job(run_of(an_array(3, 3), 0, "running"))
    assert counts() == {"completed": 1, "failed": 1, "notCreated": 1}
    assert arrays.plan(array, book.named_runs(array.key), now=NOW).create == (2,)


def test_an_array_sees_its_runs_as_written_not_as_decided_while_the_write_is_out():
    body = an_array(2, 1)
    array = Job.parse(body)
    running = run_of(body, 0, "running")
    book = JobBook.of([array, running])

    def plan() -> arrays.ArrayPlan:
        return arrays.plan(array, book.named_runs(array.key), now=NOW)

    # The run's end is decided and its write is out: the array neither counts it
    # finished nor starts the next run in its place (maxParallel 1) until it lands.
    done = replace(running.status, phase=Phase.COMPLETED)
    book.assume(running, done)
    assert book.jobs[running.key].phase is Phase.COMPLETED  # the passes see it as done
    assert plan().create == ()
    book.put_job(replace(running, resource_version="2"))  # a watch event meanwhile
    assert plan().create == ()
    book.written(running, done, resource_version="3")
    assert plan().create == (1,)


def test_an_array_with_dependencies_is_decided_as_an_array_its_runs_wait():
    body = an_array(4, 2, dependsOn=[{"name": "prepare", "condition": "Completed"}])
    array = Job.parse(body)
    prepare = a_training_job("prepare").in_phase("running").job()
    book = JobBook.of([array, prepare], nodes=gpu_nodes(1, gpus=8))
    decision = plan_pass(book, now=NOW, rules=Rules()).decisions[array.key]
    assert decision.runs == (0, 1)
    assert decision.status.phase == Phase.QUEUED
    run = run_of(body, 0)
    assert run.spec.depends_on == array.spec.depends_on  # each run waits as any job
    book.put_job(run)
    book.put_job(a_training_job("prepare").in_phase("completed").job())  # wakes dependents
    found = plan_pass(book, now=NOW, rules=Rules(limits=Limits(max_running=5)))
    assert found.decisions[array.key].status.reason != "Dependency"
    assert found.decisions[run.key].status.admitted_at is not None


def test_once_a_run_fails_its_dependencies_no_further_run_is_created():
    body = an_array(100, 2, dependsOn=[{"name": "prepare", "condition": "Completed"}])
    array = Job.parse(body)

    def failed(index: int) -> Job:
        run = run_manifest(body, index)
        run["metadata"].update(uid=f"run-{index}", resourceVersion="1",
                               creationTimestamp="2026-01-01T00:00:00Z")  # fmt: skip
        run["status"] = {"phase": "failed", "reason": "DependencyFailed"}
        return Job.parse(run)

    found = arrays.plan(array, arrays.Named.of([failed(0), run_of(body, 1)]), now=NOW)
    assert found.create == ()
    assert found.status.phase == Phase.QUEUED  # run 1 has not ended yet
    found = arrays.plan(array, arrays.Named.of([failed(0), failed(1)]), now=NOW)
    assert found.create == ()
    assert found.status.phase == Phase.FAILED
    assert found.status.reason == "DependencyFailed"
    assert found.status.array is not None
    assert found.status.array["notCreated"] == 98


def test_counts_read_back_from_status_as_written() -> None:
    counts = ArrayCounts.of(10, {"queued": 2, "running": 3, "completed": 1}, taken=1)
    assert ArrayCounts.parse(10, counts.to_raw()) == counts
    assert ArrayCounts.parse(10, None).not_created == 10  # nothing written yet
