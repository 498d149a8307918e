"""Dependencies through REST: submit with depends_on, the upstream and downstream GET
/status shows, a Checkpointed condition met by the trainer's report, the guide's cancel
with cancel_dependents, bad input refused with nothing created, and another team that
can neither name nor see a job of a namespace it cannot read."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from kubernetes import client

from shunter.devcluster.accounts import account_with_role
from tests.support.api import ApiProcess
from tests.support.builders import a_training_job
from tests.support.kube import EDITOR, temporary_namespace
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

LONG = {"pod_annotations": {"sim.shunter.dev/run-for": "600s"}}
SHORT = {"pod_annotations": {"sim.shunter.dev/run-for": "2s"}}


def submit(http: httpx.Client, name: str, *deps: dict[str, Any], **body: Any) -> httpx.Response:
    return http.post("/api/training/submit",
                     json={"name": name, "depends_on": list(deps), **body})  # fmt: skip


def status(http: httpx.Client, name: str) -> dict[str, Any]:
    answer = http.get(f"/api/training/status/{name}")
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def names(jobs: Jobs) -> list[str]:
    listed = jobs.custom.list_namespaced_custom_object("shunter.dev", "v1alpha1", jobs.namespace,
                                                       "trainingjobs")  # fmt: skip
    return sorted(item["metadata"]["name"] for item in listed["items"])


def test_status_shows_upstream_and_downstream_as_the_chain_moves(http: httpx.Client):
    assert submit(http, "a", **SHORT).status_code == 201
    answer = submit(http, "b", {"name": "a", "condition": "Completed"}, **SHORT)
    assert answer.status_code == 201, answer.text
    b = wait_for(lambda: (s := status(http, "b"))["reason"] == "Dependency" and s, timeout=30,
                 what="b to wait for a")  # fmt: skip
    assert b["upstream"] == [{"name": "a", "condition": "Completed", "step": None,
                              "state": "waiting", "why": "a to complete",
                              "status": b["upstream"][0]["status"], "deleted": False}]  # fmt: skip
    assert b["downstream"] == []
    a = status(http, "a")
    assert a["upstream"] == []
    assert a["downstream"] == [{"name": "b", "condition": "Completed", "step": None,
                                "status": "queued"}]  # fmt: skip
    wait_for(lambda: status(http, "b")["status"] == "completed", timeout=60, what="b to complete")
    met = status(http, "b")["upstream"][0]
    assert (met["state"], met["status"]) == ("met", "completed")
    # Lists leave the chain out (null): GET /status says it.
    live = http.get("/api/training/live").json()["items"]
    assert {j["job_id"]: j["upstream"] for j in live} == {"a": None, "b": None}


def test_a_checkpoint_report_meets_a_checkpointed_condition(http: httpx.Client, jobs: Jobs):
    assert submit(http, "train", **LONG).status_code == 201
    want = {"name": "train", "condition": "Checkpointed", "step": 50}
    assert submit(http, "eval", want, **SHORT).status_code == 201
    jobs.wait_phase("train", "running")
    at = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    jobs.patch_status("train", {"checkpoint": {"step": 40, "time": at}})  # as the report channel
    waiting = wait_for(lambda: (s := status(http, "eval"))["reason"] == "Dependency" and s,
                       timeout=30, what="eval to wait")  # fmt: skip
    assert waiting["message"] == "Waiting for train to reach checkpoint step 50"
    jobs.patch_status("train", {"checkpoint": {"step": 60, "time": at}})
    # An ordinary queued job now: behind train's slot (the test operator runs one job).
    queued = wait_for(lambda: (s := status(http, "eval"))["reason"] == "Queued" and s,
                      timeout=30, what="eval to queue as any job")  # fmt: skip
    assert queued["queue_position"] == 1
    assert queued["upstream"][0]["state"] == "met"
    assert queued["upstream"][0]["why"] == "train checkpointed step 60"


def test_the_guides_cancel_with_cancel_dependents_cancels_the_waiting_chain(
    http: httpx.Client, jobs: Jobs
):
    assert submit(http, "a", cancel_dependents=True, **LONG).status_code == 201
    assert submit(http, "b", {"name": "a", "condition": "Finished"}).status_code == 201
    jobs.wait_phase("a", "running")
    cancelled = http.post("/api/training/cancel/a")
    assert cancelled.status_code == 200
    assert set(cancelled.json()) == {"success", "job_id", "previous_status", "message"}
    b = jobs.wait_phase("b", "cancelled")["status"]
    assert b["reason"] == "UpstreamCancelled"
    assert status(http, "a")["cancel_dependents"] is True
    # Or asked at the cancel itself (the same body).
    assert submit(http, "a2", **LONG).status_code == 201
    assert submit(http, "b2", {"name": "a2", "condition": "Completed"}).status_code == 201
    cancelled = http.post("/api/training/cancel/a2", params={"cancel_dependents": "true"})
    assert cancelled.status_code == 200
    assert set(cancelled.json()) == {"success", "job_id", "previous_status", "message"}
    assert jobs.wait_phase("b2", "cancelled")["status"]["reason"] == "UpstreamCancelled"


def what_if(http: httpx.Client, name: str, *deps: dict[str, Any]) -> dict[str, Any]:
    answer = http.post("/api/training/submit", params={"dry_run": "true"},
                       json={"name": name, "depends_on": list(deps)})  # fmt: skip
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_a_what_if_waits_for_dependencies_as_the_operator_would(http: httpx.Client, jobs: Jobs):
    """A what-if of a job whose dependencies are not met holds no position (as the pass
    gives it none) and says what it would wait for; one whose dependencies can never be
    met says it would fail; nothing is created either way."""
    assert submit(http, "up", **LONG).status_code == 201
    before = names(jobs)
    waiting = what_if(http, "down", {"name": "up", "condition": "Completed"})
    assert waiting["position"] is None
    assert waiting["estimated_start"] is None
    assert waiting["message"] == ("Would wait for its dependencies, holding no place in its"
                                  " queue: Waiting for up to complete")  # fmt: skip
    assert waiting["estimated_start_range"]["reason"] == (
        "waits for its dependencies: Waiting for up to complete"
    )
    jobs.wait_phase("up", "running")
    assert http.post("/api/training/cancel/up").status_code == 200
    jobs.wait_phase("up", "cancelled")
    failing = what_if(http, "down", {"name": "up", "condition": "Completed"})
    assert failing["position"] is None
    assert failing["message"].startswith("Would end at once (DependencyFailed): Its dependencies"
                                         " can never be met")  # fmt: skip
    # Met: an ordinary job, which would start at once (nothing runs) once the plan the
    # what-if reads (published every few seconds) is past up's run.
    met = wait_for(
        lambda: (
            (w := what_if(http, "down", {"name": "up", "condition": "Finished"}))["starts_now"]
            and w
        ),
        timeout=30,
        what="the what-if to start now",
    )
    assert (met["position"], met["message"]) == (1, "Would start now"), met
    assert names(jobs) == before


@pytest.mark.parametrize(
    ("body", "code", "says"),
    [
        ({"name": "x", "depends_on": [{"name": "x", "condition": "Completed"}]}, 422, "itself"),
        ({"name": "x", "depends_on": [{"name": "a", "condition": "Done"}]}, 422, "condition"),
        ({"name": "x", "depends_on": [{"name": "a", "condition": "Checkpointed"}]}, 422,
         "step is required"),
        ({"name": "x", "depends_on": [{"name": f"j{i}", "condition": "Finished"}
                                      for i in range(33)]}, 422, "at most 32 items"),
        # 10,000 entries do not even pass the body's bound.
        ({"name": "x", "depends_on": [{"name": f"j{i}", "condition": "Finished"}
                                      for i in range(10_000)]}, 413, "Request body too large"),
        ({"name": "x", "depends_on": [{"name": "nope", "condition": "Completed"}]}, 422,
         "no job named nope in namespace"),
        ({"name": "b", "depends_on": [{"name": "a", "condition": "Completed"}]}, 409,
         "cycle of jobs waiting on each other: b -> a -> b"),
    ],
)  # fmt: skip
def test_bad_dependencies_are_refused_and_nothing_is_created(
    http: httpx.Client, jobs: Jobs, body: dict[str, Any], code: int, says: str
):
    # a waits for b, which does not exist yet: submitting b after a closes a cycle.
    jobs.create(a_training_job("a").with_spec(dependsOn=[{"name": "b", "condition": "Completed"}]))
    answer = http.post("/api/training/submit", json=body)
    assert answer.status_code == code, answer.text
    assert answer.json()["success"] is False
    assert says in answer.json()["message"]
    if code == 409:
        assert answer.json()["detail"] == {"cycle": ["b", "a", "b"]}
    assert names(jobs) == ["a"]


# -- another team ---------------------------------------------------------------------------


@pytest.fixture
def other(kube_api: client.ApiClient, unique_name: str, crd: None) -> Iterator[Jobs]:
    with temporary_namespace(kube_api, f"{unique_name}-b") as name:
        yield Jobs(kube_api, name)


def test_another_team_can_neither_name_nor_see_a_job_it_cannot_read(
    jobs: Jobs,
    other: Jobs,
    kube_api: client.ApiClient,
    user_roles: list[str],
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
):
    both = f"{jobs.namespace},{other.namespace}"
    start_operator(SHUNTER_NAMESPACE=both)
    api = start_api(SHUNTER_API_AUTH="kubernetes", SHUNTER_API_WATCH_NAMESPACE=both)
    team_a = account_with_role(kube_api, jobs.namespace, "team-a", EDITOR)
    team_b = account_with_role(kube_api, other.namespace, "team-b", EDITOR)
    mine = {"namespace": other.namespace}
    with api.client(team_a) as a, api.client(team_b) as b:
        created = a.post("/api/training/submit", json={"name": "secret-model", **LONG})
        assert created.status_code == 201, created.text
        # Names are of the caller's namespace: team A's job is no job of team B's.
        upstream = [{"name": "secret-model", "condition": "Completed"}]
        refused = b.post("/api/training/submit", params=mine,
                         json={"name": "mine", "depends_on": upstream})  # fmt: skip
        assert refused.status_code == 422
        assert refused.json()["message"] == (
            f"Invalid request: depends_on: no job named secret-model in namespace"
            f" {other.namespace} (nor in its history)"
        )
        assert names(other) == []
        # Nor can it look at it, or name its namespace.
        peek = b.get("/api/training/status/secret-model", params={"namespace": jobs.namespace})
        assert peek.status_code == 403
        slash = b.post("/api/training/submit", params=mine, json={
            "name": "mine", "depends_on": [{"name": f"{jobs.namespace}/secret-model",
                                            "condition": "Completed"}]})  # fmt: skip
        assert slash.status_code == 422
        # Through kubectl (its own namespace): accepted, then failed by the operator,
        # which looks only in team B's namespace.
        other.create(a_training_job("mine").with_spec(
            dependsOn=[{"name": "secret-model", "condition": "Completed"}]))  # fmt: skip
        failed = wait_for(lambda: (s := other.status("mine")).get("reason") == "DependencyFailed"
                          and s, timeout=40, what="mine to fail")  # fmt: skip
        assert "secret-model: no such job in this namespace" in failed["message"]
        seen = b.get("/api/training/status/mine", params=mine).json()
        assert seen["upstream"][0]["state"] == "impossible"
        assert seen["upstream"][0]["status"] is None
        # And team A's job shows no dependent of another namespace.
        assert a.get("/api/training/status/secret-model").json()["downstream"] == []
