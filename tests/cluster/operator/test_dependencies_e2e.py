"""Dependencies (spec.dependsOn) on a real cluster: chains that complete, fail and are
cancelled, an operator killed mid-chain, deleted upstreams judged from the mirror, and
what the API server's schema refuses (kubectl's way in)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.support.builders import TrainingJobBuilder, a_training_job
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

Start = Callable[..., OperatorProcess]


def after(
    name: str, upstream: str, condition: str = "Completed", **more: Any
) -> TrainingJobBuilder:
    return a_training_job(name).with_spec(
        dependsOn=[{"name": upstream, "condition": condition, **more}]
    )


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def wait_reason(jobs: Jobs, name: str, reason: str, *, timeout: float = 30) -> dict[str, Any]:
    return wait_for(lambda: (s := jobs.status(name)).get("reason") == reason and s,
                    timeout=timeout, what=f"{name} to have reason {reason}")  # fmt: skip


def test_a_chain_runs_in_order_and_a_waiting_job_blocks_no_one(jobs: Jobs, start_operator: Start):
    start_operator(SHUNTER_MAX_RUNNING="2")
    jobs.create(a_training_job("a").running_for("3s"))
    jobs.create(after("b", "a").running_for("1s"))
    jobs.create(after("c", "b").running_for("1s"))
    # Created after b and c: it starts at once, the waiting jobs hold no place before it.
    jobs.create(a_training_job("plain").running_for("600s"))
    waiting = wait_reason(jobs, "b", "Dependency")
    assert waiting["phase"] == "queued"
    assert waiting["message"] == "Waiting for a to complete"
    assert "queuePosition" not in waiting
    jobs.wait_phase("plain", "running")
    c = jobs.wait_phase("c", "completed", timeout=60)["status"]
    a, b = jobs.status("a"), jobs.status("b")
    assert a["phase"] == b["phase"] == "completed"
    assert _at(b["admittedAt"]) >= _at(a["completedAt"])
    assert _at(c["admittedAt"]) >= _at(b["completedAt"])
    assert b["attempts"] == c["attempts"] == 1


def test_a_failure_fails_what_needs_it_and_starts_what_waits_for_it(
    jobs: Jobs, start_operator: Start
):
    start_operator(SHUNTER_MAX_RUNNING="4")
    jobs.create(a_training_job("a").failing_after("1s"))
    jobs.create(after("b", "a").running_for("1s"))
    jobs.create(after("c", "b", "Completed"))
    jobs.create(after("cleanup", "a", "Failed").running_for("1s"))
    jobs.create(after("report", "b", "Finished").running_for("1s"))
    b = wait_reason(jobs, "b", "DependencyFailed", timeout=60)
    assert b["phase"] == "failed"
    assert b["message"].startswith("Its dependencies can never be met: a failed")
    c = wait_reason(jobs, "c", "DependencyFailed")
    assert "b failed: Its dependencies can never be met: a failed" in c["message"]
    jobs.wait_phase("cleanup", "completed", timeout=60)
    jobs.wait_phase("report", "completed", timeout=60)
    jobs.wait_event("b", "DependencyFailed")
    assert "b-trainer" not in jobs.pod_names()


def test_cancel_with_cancel_dependents_cancels_the_waiting_chain(jobs: Jobs, start_operator: Start):
    start_operator()
    jobs.create(a_training_job("a").running_for("600s").with_spec(cancelDependents=True))
    jobs.create(after("b", "a", "Finished"))
    jobs.create(after("c", "b"))
    jobs.wait_phase("a", "running")
    wait_reason(jobs, "c", "Dependency")
    jobs.cancel("a")
    jobs.wait_phase("a", "cancelled")
    for name, upstream in (("b", "a"), ("c", "b")):
        status = jobs.wait_phase(name, "cancelled")["status"]
        assert status["reason"] == "UpstreamCancelled"
        assert status["message"] == f"Cancelled with its upstream job {upstream} (cancelDependents)"
        assert status["termination"]["outcome"] == "never-started"
    assert jobs.pod_names() == []


def test_cancel_without_cancel_dependents_is_an_end_like_any_other(
    jobs: Jobs, start_operator: Start
):
    start_operator()
    jobs.create(a_training_job("a").running_for("600s"))
    jobs.create(after("needs-success", "a"))
    jobs.create(after("any-end", "a", "Finished").running_for("1s"))
    jobs.wait_phase("a", "running")
    jobs.cancel("a")
    failed = wait_reason(jobs, "needs-success", "DependencyFailed")
    assert "a cancelled, so it will never complete" in failed["message"]
    jobs.wait_phase("any-end", "completed", timeout=60)


def test_an_operator_killed_mid_chain_picks_it_up_from_the_crs(jobs: Jobs, start_operator: Start):
    operator = start_operator()
    jobs.create(a_training_job("a").running_for("4s"))
    jobs.create(after("b", "a").running_for("4s"))
    jobs.create(after("c", "b").running_for("1s"))
    jobs.create(after("d", "c", "Failed"))
    jobs.wait_phase("a", "running")
    wait_reason(jobs, "b", "Dependency")
    operator.kill()  # kill -9: nothing is written on the way out
    # a's Pod completes while no operator runs.
    wait_for(lambda: _pod_phase(jobs, "a-trainer") == "Succeeded", timeout=30,
             what="a's Pod to succeed")  # fmt: skip
    operator.start()
    jobs.wait_phase("b", "running", timeout=60)
    operator.kill()
    operator.start()
    jobs.wait_phase("c", "completed", timeout=60)
    d = wait_reason(jobs, "d", "DependencyFailed")
    assert "c completed, so it will never fail" in d["message"]
    for name in ("a", "b", "c"):
        assert jobs.status(name)["attempts"] == 1, f"{name} started more than once"


def _pod_phase(jobs: Jobs, name: str) -> str | None:
    pods = {p.metadata.name: p for p in jobs.core.list_namespaced_pod(jobs.namespace).items}
    pod = pods.get(name)
    return pod.status.phase if pod is not None else None


def test_deleted_and_missing_upstreams_after_a_restart(
    jobs: Jobs, start_operator: Start, database_url: str
):
    operator = start_operator()
    jobs.create(a_training_job("a").running_for("1s"))
    jobs.wait_phase("a", "completed", timeout=60)
    wait_for(lambda: _mirrored(database_url, jobs.namespace, "a"), timeout=30,
             what="a's row in the mirror")  # fmt: skip
    jobs.custom.delete_namespaced_custom_object("shunter.dev", "v1alpha1", jobs.namespace,
                                                "trainingjobs", "a")  # fmt: skip
    wait_for(lambda: _mirrored(database_url, jobs.namespace, "a", deleted=True), timeout=30,
             what="a's deletion in the mirror")  # fmt: skip
    operator.kill()
    operator.start()  # knows nothing of a but what the mirror says
    jobs.create(after("b", "a").running_for("1s"))
    jobs.create(after("c", "a", "Failed"))
    jobs.create(after("d", "never-was"))
    jobs.wait_phase("b", "completed", timeout=60)
    c = wait_reason(jobs, "c", "DependencyFailed")
    assert "judged from the history" in c["message"]
    waiting = wait_reason(jobs, "d", "Dependency")
    assert waiting["message"] == "Waiting for never-was to be created"
    d = wait_reason(jobs, "d", "DependencyFailed", timeout=40)
    assert "never-was: no such job in this namespace" in d["message"]


def _mirrored(url: str, namespace: str, name: str, *, deleted: bool = False) -> bool:
    import psycopg

    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT status, deleted_at FROM local_training_jobs WHERE namespace = %s"
            " AND name = %s ORDER BY created_at DESC LIMIT 1",
            (namespace, name),
        ).fetchone()
    return row is not None and row[0] == "completed" and (row[1] is not None) == deleted


def test_a_cycle_made_in_two_steps_fails_naming_it(jobs: Jobs, start_operator: Start):
    start_operator()
    jobs.create(after("a", "b"))
    wait_reason(jobs, "a", "Dependency")
    jobs.create(after("b", "a"))
    b = wait_reason(jobs, "b", "DependencyFailed")
    assert b["message"].endswith("they form a cycle: b -> a -> b")
    a = wait_reason(jobs, "a", "DependencyFailed")
    assert "b -> a -> b" in a["message"] or "a -> b -> a" in a["message"]


def _deps(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"dependsOn": list(entries)}


DONE, FAILED = {"name": "a", "condition": "Completed"}, {"name": "a", "condition": "Failed"}


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        (_deps({"name": "bad", "condition": "Completed"}), "cannot depend on itself"),
        (_deps({"name": "a", "condition": "Done"}), 'Unsupported value: "Done"'),
        (_deps({"name": "a", "condition": "Checkpointed"}), "step is required"),
        (_deps({"name": "a", "condition": "Finished", "step": 1}), "step is required"),
        (
            _deps({"name": "a", "condition": "Checkpointed", "step": -1}),
            "should be greater than or equal to 0",
        ),
        (_deps(DONE, FAILED), "Duplicate value"),
        (_deps({"name": "other/a", "condition": "Completed"}), "should match"),
        (
            _deps(*({"name": f"j{i}", "condition": "Finished"} for i in range(10_000))),
            "must have at most 32 items",
        ),
    ],
)
def test_kubectl_is_refused_bad_dependencies_and_nothing_is_created(
    jobs: Jobs, spec: dict[str, Any], says: str
):
    with pytest.raises(ApiException) as refused:
        jobs.create(a_training_job("bad").with_spec(**spec))
    assert refused.value.status == 422
    assert says in json.loads(refused.value.body)["message"]
    listed = jobs.custom.list_namespaced_custom_object("shunter.dev", "v1alpha1", jobs.namespace,
                                                       "trainingjobs")  # fmt: skip
    assert listed["items"] == []


def test_depends_on_is_fixed_at_submission(jobs: Jobs):
    jobs.create(after("b", "a"))
    with pytest.raises(ApiException) as refused:
        jobs.patch_spec("b", {"dependsOn": [{"name": "c", "condition": "Completed"}]})
    assert "spec.dependsOn is immutable" in refused.value.body
    plain = jobs.create(a_training_job("plain"))
    with pytest.raises(ApiException) as refused:
        jobs.patch_spec("plain", {"dependsOn": [{"name": "b", "condition": "Completed"}]})
    assert "cannot be added or removed" in refused.value.body
    assert plain["spec"]["cancelDependents"] is False
