"""The API server itself rejects bad TrainingJobs, with messages that say why."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from tests.support.builders import a_training_job
from tests.support.operator import Jobs


def rejection(jobs: Jobs, builder: Any) -> str:
    with pytest.raises(ApiException) as refused:
        jobs.create(builder)
    assert refused.value.status == 422
    return str(refused.value.body)


@pytest.mark.parametrize(
    ("builder", "message"),
    [
        (a_training_job("neg").with_gpus(-1), "spec.gpus"),
        (a_training_job("empty").with_spec(image=""), "spec.image"),
        (a_training_job("spaces").with_spec(image="a b"), "spec.image must not contain spaces"),
        (a_training_job("cpu").with_spec(cpu="lots"), "spec.cpu must be a positive quantity"),
        (a_training_job("mem").with_spec(memory="-1Gi"), "spec.memory must be a positive quantity"),
        (a_training_job("grace").with_grace(-5), "spec.terminationGracePeriodSeconds"),
        (a_training_job("q").with_spec(queue="Not_A_Name"), "spec.queue"),
        (a_training_job("x" * 56), "metadata.name must be at most 55 characters"),
        (a_training_job("typo").with_spec(gpu=2), 'unknown field \\"spec.gpu\\"'),
    ],
    ids=[
        "negative-gpus",
        "empty-image",
        "image-spaces",
        "bad-cpu",
        "negative-memory",
        "negative-grace",
        "bad-queue",
        "long-name",
        "unknown-field",
    ],
)
def test_invalid_specs_are_rejected(jobs: Jobs, builder: Any, message: str):
    if "typo" in builder.manifest()["metadata"]["name"]:
        # Unknown fields are dropped silently unless the client asks for strict validation.
        with pytest.raises(ApiException) as refused:
            jobs.custom.create_namespaced_custom_object(
                "shunter.dev",
                "v1alpha1",
                jobs.namespace,
                "trainingjobs",
                {**builder.manifest(), "metadata": {"name": "typo"}},
                field_validation="Strict",
            )
        assert message in str(refused.value.body)
        return
    assert message in rejection(jobs, builder)


def test_cancelled_cannot_go_back_to_false(jobs: Jobs):
    jobs.create(a_training_job("oneway").cancelled())
    with pytest.raises(ApiException) as refused:
        jobs.patch_spec("oneway", {"cancelled": False})
    assert "spec.cancelled cannot be set back to false" in refused.value.body


def test_pod_fields_are_fixed_at_submission_but_priority_may_change_while_queued(jobs: Jobs):
    jobs.create(a_training_job("fixed").with_gpus(2))
    with pytest.raises(ApiException) as refused:
        jobs.patch_spec("fixed", {"gpus": 4})
    assert "spec.gpus is immutable" in refused.value.body
    with pytest.raises(ApiException) as added:
        jobs.patch_spec("fixed", {"args": ["--more"]})
    assert "cannot be added or removed after submission" in added.value.body

    # No operator runs here: the job has no phase yet, so it counts as waiting.
    assert jobs.patch_spec("fixed", {"priority": 5})["spec"]["priority"] == 5


def test_priority_is_frozen_once_the_job_left_the_queue(jobs: Jobs):
    jobs.create(a_training_job("started"))
    jobs.custom.patch_namespaced_custom_object_status(
        "shunter.dev",
        "v1alpha1",
        jobs.namespace,
        "trainingjobs",
        "started",
        {"status": {"phase": "running"}},
        _content_type="application/merge-patch+json",
    )
    with pytest.raises(ApiException) as refused:
        jobs.patch_spec("started", {"priority": 5})
    assert "spec.priority and spec.queue can change only while the job is queued" in (
        refused.value.body
    )
    assert jobs.cancel("started")["spec"]["cancelled"] is True


def test_node_selector_and_tolerations_are_fixed_at_submission(jobs: Jobs):
    pool = {"shunter.dev/node-pool": "real"}
    toleration = {"key": "shunter.dev/real-node", "operator": "Exists", "effect": "NoSchedule"}
    jobs.create(a_training_job("placed").with_spec(nodeSelector=pool, tolerations=[toleration]))
    stored = jobs.get("placed")["spec"]
    assert (stored["nodeSelector"], stored["tolerations"]) == (pool, [toleration])
    with pytest.raises(ApiException) as changed:
        jobs.patch_spec("placed", {"nodeSelector": {"shunter.dev/node-pool": "gpu"}})
    assert "spec.nodeSelector is immutable" in changed.value.body
    with pytest.raises(ApiException) as changed:
        jobs.patch_spec("placed", {"tolerations": []})
    assert "spec.tolerations is immutable" in changed.value.body
    with pytest.raises(ApiException) as removed:
        jobs.patch_spec("placed", {"nodeSelector": None})
    assert "cannot be added or removed after submission" in removed.value.body

    jobs.create(a_training_job("unplaced"))
    with pytest.raises(ApiException) as added:
        jobs.patch_spec("unplaced", {"tolerations": [toleration]})
    assert "cannot be added or removed after submission" in added.value.body


@pytest.mark.parametrize(
    ("toleration", "message"),
    [
        ({"key": "k", "operator": "Exists", "value": "v"}, "operator Exists must not have a value"),
        ({"operator": "Equal", "value": "v"}, "without a key must have operator Exists"),
        ({"key": "k", "effect": "Sometimes"}, "spec.tolerations[0].effect"),
    ],
    ids=["exists-with-value", "no-key", "bad-effect"],
)
def test_invalid_tolerations_are_rejected(jobs: Jobs, toleration: dict[str, str], message: str):
    assert message in rejection(jobs, a_training_job("tol").with_spec(tolerations=[toleration]))


def test_env_takes_a_plain_value_or_a_key_of_a_secret(jobs: Jobs):
    token = {"secretKeyRef": {"name": "hub", "key": "token", "optional": False}}
    created = jobs.create(a_training_job("env-ok").with_spec(
        env=[{"name": "LR", "value": "0.1"}, {"name": "TOKEN", "valueFrom": token}]))  # fmt: skip
    assert created["spec"]["env"][1] == {"name": "TOKEN", "valueFrom": token}

    both = a_training_job("env-both").with_spec(
        env=[{"name": "TOKEN", "value": "x", "valueFrom": token}])  # fmt: skip
    assert "spec.env TOKEN: set value or valueFrom, not both" in rejection(jobs, both)
    only_secrets = "spec.env valueFrom takes only secretKeyRef"
    for source in (
        {"configMapKeyRef": {"name": "c", "key": "k"}},
        {"fieldRef": {"fieldPath": "metadata.name"}},
    ):
        other = a_training_job("env-other").with_spec(env=[{"name": "X", "valueFrom": source}])
        assert only_secrets in rejection(jobs, other)
    no_key = a_training_job("env-nokey").with_spec(
        env=[{"name": "X", "valueFrom": {"secretKeyRef": {"name": "hub"}}}])  # fmt: skip
    assert "spec.env[0].valueFrom.secretKeyRef.key: Required value" in rejection(jobs, no_key)


def dry_run_create(jobs: Jobs, builder: Any) -> str | None:
    """The API server's answer to creating the job, nothing stored: None if taken,
    else the body of its 422."""
    try:
        jobs.custom.create_namespaced_custom_object(
            "shunter.dev", "v1alpha1", jobs.namespace, "trainingjobs", builder.manifest(),
            dry_run="All",
        )  # fmt: skip
    except ApiException as refused:
        status, body = refused.status, str(refused.body)
    else:
        return None
    assert status == 422, body
    return body


MULTI_NODE_NAME = "a multi-node job's name must be at most 52 characters"
LETTER = "a multi-node job's name must start with a letter"
ARRAY_NAME = "an array's name must be at most 50 characters"
MULTI_NODE_ARRAY_NAME = "a multi-node array's name must be at most 47 characters"


@pytest.mark.parametrize(
    ("name", "spec", "refused_with"),
    [
        ("a" * 52, {"nodes": 2}, None),
        ("a" * 53, {"nodes": 2}, MULTI_NODE_NAME),
        ("a" * 53, {"nodes": 1}, None),
        ("a" * 53, {}, None),  # nodes defaults to 1
        ("1job", {"nodes": 2}, LETTER),
        ("1job", {"nodes": 1}, None),
        ("a" * 50, {"array": {"count": 2}}, None),
        ("a" * 51, {"array": {"count": 2}}, ARRAY_NAME),
        ("a" * 47, {"array": {"count": 2}, "nodes": 2}, None),
        ("a" * 48, {"array": {"count": 2}, "nodes": 2}, MULTI_NODE_ARRAY_NAME),
        ("a" * 48, {"array": {"count": 2}, "nodes": 1}, None),
    ],
)
def test_names_must_leave_room_for_what_is_named_after_the_job(
    jobs: Jobs, name: str, spec: dict[str, Any], refused_with: str | None
):
    """Each name rule, on both sides of its limit, and only that rule's message."""
    answer = dry_run_create(jobs, a_training_job(name, jobs.namespace).with_spec(**spec))
    if refused_with is None:
        assert answer is None
    else:
        assert answer is not None
        assert refused_with in answer
        others = {MULTI_NODE_NAME, LETTER, ARRAY_NAME, MULTI_NODE_ARRAY_NAME} - {refused_with}
        assert not [m for m in others if m in answer], answer


def test_a_finished_job_keeps_its_suspended_and_cancelled_but_a_job_without_a_phase_may_change(
    jobs: Jobs,
):
    jobs.create(a_training_job("no-phase-yet"))
    jobs.patch_status("no-phase-yet", {"reason": "set by hand, no phase"})
    assert jobs.patch_spec("no-phase-yet", {"priority": 3, "suspended": True})["spec"]["suspended"]

    jobs.create(a_training_job("done"))
    jobs.patch_status("done", {"phase": "completed"})
    with pytest.raises(ApiException) as suspended:
        jobs.patch_spec("done", {"suspended": True})
    assert "the job already finished; spec.suspended can no longer change" in suspended.value.body
    with pytest.raises(ApiException) as cancelled:
        jobs.patch_spec("done", {"cancelled": True})
    assert (
        "the job already finished with phase completed: spec.cancelled can no longer change"
        in cancelled.value.body
    )
    with pytest.raises(ApiException) as moved:
        jobs.patch_spec("done", {"queue": "other"})
    assert "spec.priority and spec.queue can change only while" in moved.value.body

    jobs.create(a_training_job("waits"))
    jobs.patch_status("waits", {"phase": "suspended"})
    assert jobs.patch_spec("waits", {"queue": "other"})["spec"]["queue"] == "other"
