"""Dependencies (shunter.domain.dependencies): the pure rules, and a pass that follows them."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from shunter.domain.admission import Limits
from shunter.domain.dependencies import (
    MAX_DEPENDENCIES,
    Absent,
    Outcome,
    State,
    Upstream,
    find_cycle,
    judge,
    judge_condition,
    submit_cycle,
)
from shunter.domain.model import Dependency, JobKey, Phase
from shunter.operator.book import JobBook
from shunter.operator.planning import plan_pass
from shunter.operator.rules import Rules
from tests.support.builders import a_training_job, gpu_nodes

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = T0 + timedelta(minutes=5)


def dep(name: str, condition: str = "Completed", step: int | None = None) -> dict[str, object]:
    raw: dict[str, object] = {"name": name, "condition": condition}
    if step is not None:
        raw["step"] = step
    return raw


def a_dependent(name: str = "b", *deps: dict[str, object], created: datetime = T0):
    return a_training_job(name).created_at(created).with_spec(dependsOn=list(deps or [dep("a")]))


def lookup_of(*jobs, gone: dict[str, Upstream | Absent] | None = None):
    live = {j.key.name: Upstream.of(j) for j in jobs}
    known = gone or {}
    return lambda name: live.get(name) or known.get(name, Absent.MISSING)


# -- one condition ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("condition", "phase", "state"),
    [
        ("Completed", "completed", State.MET),
        ("Completed", "failed", State.IMPOSSIBLE),
        ("Completed", "cancelled", State.IMPOSSIBLE),
        ("Completed", "running", State.WAITING),
        ("Finished", "completed", State.MET),
        ("Finished", "failed", State.MET),
        ("Finished", "cancelled", State.MET),
        ("Finished", "queued", State.WAITING),
        ("Failed", "failed", State.MET),
        ("Failed", "completed", State.IMPOSSIBLE),
        ("Failed", "cancelled", State.IMPOSSIBLE),
        ("Failed", "stopping", State.WAITING),
    ],
)
def test_each_condition_on_each_end(condition, phase, state):
    upstream = Upstream.of(a_training_job("a").in_phase(phase).job())
    assert judge_condition(Dependency("a", condition), upstream).state is state


def test_checkpointed_is_met_at_the_step_and_impossible_once_ended_below_it():
    want = Dependency("a", "Checkpointed", 100)
    below = a_training_job("a").in_phase("running").with_checkpoint(99, at=T0).job()
    at = a_training_job("a").in_phase("running").with_checkpoint(100, at=T0).job()
    ended = a_training_job("a").in_phase("completed").with_checkpoint(40, at=T0).job()
    never = a_training_job("a").in_phase("failed").job()
    assert judge_condition(want, Upstream.of(below)).state is State.WAITING
    assert judge_condition(want, Upstream.of(at)).state is State.MET
    found = judge_condition(want, Upstream.of(ended))
    assert found.state is State.IMPOSSIBLE
    assert "step 40, below step 100" in found.why
    assert judge_condition(want, Upstream.of(never)).state is State.IMPOSSIBLE


def test_a_deleted_upstream_is_judged_from_the_mirror():
    completed = Upstream.gone("a", Phase.COMPLETED, 10)
    failed = Upstream.gone("a", Phase.FAILED, None)
    deleted_while_running = Upstream.gone("a", Phase.RUNNING, 5)
    assert judge_condition(Dependency("a", "Completed"), completed).state is State.MET
    assert judge_condition(Dependency("a", "Checkpointed", 10), completed).state is State.MET
    found = judge_condition(Dependency("a", "Completed"), failed)
    assert found.state is State.IMPOSSIBLE
    assert "judged from the history" in found.why
    found = judge_condition(Dependency("a", "Finished"), deleted_while_running)
    assert found.state is State.IMPOSSIBLE
    assert "deleted before it finished" in found.why
    found = judge_condition(Dependency("a", "Checkpointed", 6), deleted_while_running)
    assert found.state is State.IMPOSSIBLE


def test_a_missing_upstream_fails_after_the_grace_and_waits_within_it():
    old = a_dependent(created=T0).job()
    found = judge(old, lookup_of(), now=NOW)
    assert found.outcome is Outcome.FAILED
    assert found.reason == "DependencyFailed"
    assert "a: no such job in this namespace" in found.message
    young = a_dependent(created=NOW - timedelta(seconds=1)).job()
    found = judge(young, lookup_of(), now=NOW)
    assert found.outcome is Outcome.WAITING
    assert "a to be created" in found.message
    assert found.wake_at == young.created_at + timedelta(seconds=10)


def test_a_name_being_looked_up_in_the_mirror_waits():
    job = a_dependent().job()
    found = judge(job, lookup_of(gone={"a": Absent.PENDING}), now=NOW)
    assert found.outcome is Outcome.WAITING
    assert "history is being read" in found.message


# -- a whole job -------------------------------------------------------------------------


def test_every_condition_must_be_met_and_the_message_names_what_it_waits_for():
    a = a_training_job("a").in_phase("completed").job()
    c = a_training_job("c").in_phase("running").job()
    job = a_dependent("b", dep("a"), dep("c", "Finished")).job()
    found = judge(job, lookup_of(a, c), now=NOW)
    assert found.outcome is Outcome.WAITING
    assert found.reason == "Dependency"
    assert found.message == "Waiting for c to finish"
    done = a_training_job("c").in_phase("failed").job()
    assert judge(job, lookup_of(a, done), now=NOW).outcome is Outcome.SATISFIED


def test_waiting_for_names_the_conditions_not_met_shortly():
    a = a_training_job("a").in_phase("completed").job()
    c = a_training_job("c").in_phase("running").with_checkpoint(40, at=T0).job()
    job = a_dependent("b", dep("a"), dep("c", "Checkpointed", 500), dep("d", "Finished"))
    found = judge(job.job(), lookup_of(a, c), now=T0)  # d may still be on its way
    assert found.waiting_for == "c Checkpointed 500, d Finished"
    many = a_dependent("b", *(dep(f"u{i}", "Failed") for i in range(5))).job()
    upstreams = [a_training_job(f"u{i}").in_phase("running").job() for i in range(5)]
    assert judge(many, lookup_of(*upstreams), now=NOW).waiting_for == (
        "u0 Failed, u1 Failed, u2 Failed (+2 more)"
    )
    done = a_training_job("c").in_phase("running").with_checkpoint(500, at=T0).job()
    assert judge(a_dependent("b", dep("c", "Checkpointed", 500)).job(), lookup_of(done),
                 now=NOW).waiting_for is None  # fmt: skip
    failed = judge(a_dependent("b").job(), lookup_of(), now=NOW)
    assert failed.outcome is Outcome.FAILED
    assert failed.waiting_for is None


def test_the_longest_waiting_for_fits_the_crds_bound():
    crd = Path(__file__).parents[3] / "charts/shunter/crds/trainingjobs.shunter.dev.yaml"
    [version] = yaml.safe_load(crd.read_text())["spec"]["versions"]
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    names = [f"{i:02d}" + "x" * 61 for i in range(MAX_DEPENDENCIES)]
    upstreams = [a_training_job(n).in_phase("running").job() for n in names]
    job = a_dependent("b", *(dep(n, "Checkpointed", 2**63 - 1) for n in names)).job()
    shown = judge(job, lookup_of(*upstreams), now=NOW).waiting_for
    assert shown is not None
    assert shown.endswith(f"(+{MAX_DEPENDENCIES - 3} more)")
    assert len(shown) <= status["waitingFor"]["maxLength"]


def test_one_impossible_condition_fails_the_job_whatever_the_others():
    a = a_training_job("a").in_phase("failed", message="Trainer exited with code 1").job()
    c = a_training_job("c").in_phase("queued").job()
    found = judge(a_dependent("b", dep("a"), dep("c")).job(), lookup_of(a, c), now=NOW)
    assert found.outcome is Outcome.FAILED
    assert "a failed: Trainer exited with code 1, so it will never complete" in found.message


def test_a_job_without_dependencies_is_satisfied():
    assert judge(a_training_job("x").job(), lookup_of(), now=NOW).outcome is Outcome.SATISFIED


def test_cancel_dependents_cascades_transitively_and_only_when_asked():
    cancelled = a_training_job("a").cancelled().with_spec(cancelDependents=True).job()
    assert judge(a_dependent("b", dep("a", "Finished")).job(), lookup_of(cancelled),
                 now=NOW).outcome is Outcome.CANCELLED  # fmt: skip
    # b, cancelled so, cancels c in turn.
    b = a_training_job("b").in_phase("cancelled", reason="UpstreamCancelled").job()
    assert judge(a_dependent("c", dep("b")).job(), lookup_of(b), now=NOW).outcome is (
        Outcome.CANCELLED
    )
    # Without cancelDependents a cancelled upstream is an end like any other.
    plain = a_training_job("a").in_phase("cancelled").job()
    assert judge(a_dependent("b", dep("a", "Finished")).job(), lookup_of(plain),
                 now=NOW).outcome is Outcome.SATISFIED  # fmt: skip
    found = judge(a_dependent("b", dep("a")).job(), lookup_of(plain), now=NOW)
    assert found.outcome is Outcome.FAILED
    assert "a cancelled" in found.message
    # Asked, but it completed: nothing to cascade.
    done = a_training_job("a").with_spec(cancelDependents=True).in_phase("completed").job()
    assert judge(a_dependent().job(), lookup_of(done), now=NOW).outcome is Outcome.SATISFIED


# -- cycles ------------------------------------------------------------------------------


def test_a_cycle_of_waiting_jobs_fails_with_its_path():
    a = a_dependent("a", dep("c")).in_phase("queued").job()
    c = a_dependent("c", dep("b")).in_phase("queued").job()
    b = a_dependent("b", dep("a")).in_phase("queued").job()
    found = judge(b, lookup_of(a, c), now=NOW)
    assert found.outcome is Outcome.FAILED
    assert found.message.endswith("they form a cycle: b -> a -> c -> b")


def test_a_job_waiting_on_a_cycle_fails_too():
    a = a_dependent("a", dep("c")).in_phase("queued").job()
    c = a_dependent("c", dep("a")).in_phase("queued").job()
    found = judge(a_dependent("x", dep("a")).job(), lookup_of(a, c), now=NOW)
    assert found.outcome is Outcome.FAILED
    assert "a -> c -> a" in found.message


def test_a_started_job_closes_no_cycle():
    # a depends on b but already ran (its condition was met before b named it).
    a = a_dependent("a", dep("b", "Finished")).in_phase("running").job()
    found = judge(a_dependent("b", dep("a")).job(), lookup_of(a), now=NOW)
    assert found.outcome is Outcome.WAITING


def test_find_cycle_is_linear_on_a_long_chain_and_shares_what_it_cleared():
    chain = {f"j{i}": [f"j{i + 1}"] for i in range(5000)}
    calls = []

    def waits_on(name):
        calls.append(name)
        return chain.get(name, [])

    cleared: set[str] = set()
    for i in range(5000):
        assert find_cycle(f"j{i}", waits_on, cleared=cleared) is None
    assert len(calls) <= 5001
    chain["j5000"] = ["j0"]
    assert find_cycle("j0", lambda n: chain.get(n, []))[-1] == "j0"


def test_submit_cycle_names_the_cycle_a_new_job_would_close():
    a = a_dependent("a", dep("b")).in_phase("queued").job()
    assert submit_cycle("b", ["a"], {"a": a}) == ["b", "a", "b"]
    assert submit_cycle("b", ["c"], {"a": a}) is None


# -- a pass ------------------------------------------------------------------------------


def pass_of(*jobs, max_running=4):
    book = JobBook.of(jobs, nodes=gpu_nodes())
    return book, plan_pass(book, now=NOW, rules=Rules(limits=Limits(max_running=max_running)))


def test_a_waiting_job_blocks_no_one_in_a_strict_fifo_queue():
    a = a_training_job("a").in_phase("running", sequence=1).job()
    b = a_dependent("b").in_phase("queued", sequence=2).job()
    c = a_training_job("c").created_at(T0).in_phase("queued", sequence=3).job()
    _, result = pass_of(a, b, c)
    d = result.decisions
    assert d[JobKey("default", "b")].status.reason == "Dependency"
    assert d[JobKey("default", "b")].status.message == "Waiting for a to complete"
    assert d[JobKey("default", "b")].status.queue_position is None
    assert d[JobKey("default", "c")].status.phase is Phase.STARTING


def test_waiting_for_is_written_with_the_wait_once_and_cleared_when_it_ends():
    """status.waitingFor (kubectl's column) goes in the write that says reason
    Dependency; a pass that changes nothing for the job writes nothing; starting, or
    failing on its dependencies, clears it."""
    a = a_training_job("a").in_phase("running", sequence=1).with_checkpoint(10, at=T0).job()
    b = a_dependent("b", dep("a", "Checkpointed", 100)).in_phase("queued", sequence=2).job()
    book, result = pass_of(a, b)
    waiting = result.decisions[b.key].status
    assert (waiting.reason, waiting.waiting_for) == ("Dependency", "a Checkpointed 100")
    assert waiting.to_raw()["waitingFor"] == "a Checkpointed 100"
    book.put_job(replace(b, status=waiting))
    book.put_job(a_training_job("a").in_phase("running", sequence=1)
                 .with_checkpoint(50, at=T0).job())  # fmt: skip  # moved, not there yet
    rules = Rules(limits=Limits(max_running=4))
    again = plan_pass(book, changed=book.take_due(NOW), now=NOW, rules=rules)
    assert b.key not in again.decisions  # no write: nothing it shows changed
    older = replace(waiting, waiting_for=None)  # as an operator before waitingFor wrote it
    book.put_job(replace(b, status=older))
    upgraded = plan_pass(book, changed=book.take_due(NOW), now=NOW, rules=rules)
    assert upgraded.decisions[b.key].status == waiting
    book.put_job(replace(b, status=waiting))
    book.put_job(a_training_job("a").in_phase("running", sequence=1)
                 .with_checkpoint(100, at=T0).job())  # fmt: skip
    started = plan_pass(book, changed=book.take_due(NOW), now=NOW, rules=rules)
    assert started.decisions[b.key].status.phase is Phase.STARTING
    assert started.decisions[b.key].status.waiting_for is None
    assert started.decisions[b.key].status.to_raw()["waitingFor"] is None  # deleted
    book.put_job(a_training_job("a").in_phase("failed", sequence=1).job())
    book.put_job(replace(b, status=waiting))
    failed = plan_pass(book, changed=book.take_due(NOW), now=NOW, rules=rules)
    assert failed.decisions[b.key].status.reason == "DependencyFailed"
    assert failed.decisions[b.key].status.waiting_for is None


def test_an_upstream_that_completes_starts_its_dependent_in_the_next_pass():
    a = a_training_job("a").in_phase("completed", sequence=1).job()
    b = a_dependent("b").in_phase("queued", sequence=2, reason="Dependency",
                                  message="Waiting for a to complete").job()  # fmt: skip
    _, result = pass_of(a, b)
    assert result.decisions[JobKey("default", "b")].status.phase is Phase.STARTING


def test_an_upstream_that_fails_fails_its_dependent_through_the_status_path():
    a = a_training_job("a").in_phase("failed", sequence=1, message="boom").job()
    b = a_dependent("b").in_phase("queued", sequence=2).job()
    _, result = pass_of(a, b)
    status = result.decisions[JobKey("default", "b")].status
    assert status.phase is Phase.FAILED
    assert status.reason == "DependencyFailed"
    assert "a failed: boom" in (status.message or "")


def test_a_cancelled_upstream_with_cancel_dependents_cancels_the_chain():
    a = a_training_job("a").with_spec(cancelDependents=True).cancelled()
    a = a.in_phase("queued", sequence=1).job()
    b = a_dependent("b").in_phase("queued", sequence=2).job()
    _book, result = pass_of(a, b)
    status = result.decisions[JobKey("default", "b")].status
    assert status.phase is Phase.CANCELLED
    assert status.reason == "UpstreamCancelled"
    assert result.decisions[JobKey("default", "a")].status.phase is Phase.CANCELLED


def test_dependents_deep_in_a_blocked_queue_are_woken_by_their_upstream():
    rules = Rules(limits=Limits(max_running=1), exact_positions=2)
    head = a_training_job("head").in_phase("running", sequence=1).job()
    ahead = [a_training_job(f"q{i}").created_at(T0).in_phase("queued", sequence=2 + i,
                                                              queuePosition=i + 1).job()
             for i in range(5)]  # fmt: skip
    a = a_training_job("a").in_phase("running", sequence=10).job()
    b = a_dependent("b").in_phase("queued", sequence=11, reason="Dependency",
                                  message="Waiting for a to complete").job()  # fmt: skip
    book = JobBook.of([head, *ahead, a, b], nodes=gpu_nodes())
    plan_pass(book, now=NOW, rules=rules)
    book.take_due(NOW)
    book.put_job(a_training_job("a").in_phase("failed", sequence=10).job())
    result = plan_pass(book, changed=book.take_due(NOW), now=NOW, rules=rules)
    status = result.decisions[JobKey("default", "b")].status
    assert status.phase is Phase.FAILED
    assert status.reason == "DependencyFailed"


def test_a_deleted_upstream_is_asked_of_the_mirror_then_judged():
    b = a_dependent("b").in_phase("queued", sequence=2).job()
    book = JobBook.of([b], nodes=gpu_nodes())
    rules = Rules(limits=Limits(max_running=4))
    result = plan_pass(book, now=NOW, rules=rules)
    assert "history is being read" in (result.decisions[b.key].status.message or "")
    assert book.recall == {JobKey("default", "a")}
    book.recalled({JobKey("default", "a"): Upstream.gone("a", Phase.COMPLETED, None)})
    result = plan_pass(book, changed=book.take_due(NOW), now=NOW, rules=rules)
    assert result.decisions[b.key].status.phase is Phase.STARTING


def test_an_upstream_deleted_under_the_operator_is_judged_by_its_last_state():
    a = a_training_job("a").in_phase("failed", sequence=1).job()
    b = a_dependent("b", dep("a", "Failed")).in_phase("queued", sequence=2).job()
    c = a_dependent("c", dep("a", "Completed")).in_phase("queued", sequence=3).job()
    book = JobBook.of([a, b, c], nodes=gpu_nodes())
    book.remove_job(a.key)
    result = plan_pass(book, changed=book.take_due(NOW), now=NOW,
                       rules=Rules(limits=Limits(max_running=4)))  # fmt: skip
    assert result.decisions[b.key].status.phase is Phase.STARTING
    assert result.decisions[c.key].status.reason == "DependencyFailed"


def test_jobs_without_dependencies_plan_exactly_as_before():
    jobs = [a_training_job(f"j{i}").created_at(T0).in_phase("queued", sequence=i + 1).job()
            for i in range(6)]  # fmt: skip
    book, result = pass_of(*jobs, max_running=2)
    assert not book.recall
    started = [k.name for k, d in result.decisions.items() if d.status.phase is Phase.STARTING]
    assert started == ["j0", "j1"]
    assert result.decisions[JobKey("default", "j2")].status.queue_position == 1
