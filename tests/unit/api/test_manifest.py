"""The TrainingJob a REST submission becomes (pure: no cluster)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shunter.api.schemas import JobCreate
from shunter.api.service import manifest_of


def test_node_selector_and_tolerations_keep_the_pod_shape():
    request = JobCreate.model_validate(
        {
            "name": "placed",
            "gpus": 0,
            "node_selector": {"shunter.dev/node-pool": "real"},
            "tolerations": [
                {"key": "shunter.dev/real-node", "operator": "Exists", "effect": "NoSchedule"},
                {"key": "zone", "value": "a", "effect": "NoExecute", "tolerationSeconds": 30},
            ],
        }
    )
    spec = manifest_of(request, default_image="trainer:1", submitter="alice")["spec"]
    assert spec["nodeSelector"] == {"shunter.dev/node-pool": "real"}
    assert spec["tolerations"] == [
        {"key": "shunter.dev/real-node", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "zone", "value": "a", "effect": "NoExecute", "tolerationSeconds": 30},
    ]


def test_a_submission_without_placement_sets_none():
    spec = manifest_of(JobCreate.model_validate({}), default_image="trainer:1", submitter="alice")[
        "spec"
    ]
    assert "nodeSelector" not in spec
    assert "tolerations" not in spec


@pytest.mark.parametrize(
    "toleration",
    [{"key": "k", "operator": "Maybe"}, {"key": "k", "effect": "Never"}, {"key": "k", "x": 1}],
    ids=["bad-operator", "bad-effect", "unknown-field"],
)
def test_malformed_tolerations_are_client_errors(toleration: dict[str, object]):
    with pytest.raises(ValidationError):
        JobCreate.model_validate({"tolerations": [toleration]})


def test_dependencies_become_spec_depends_on_and_are_absent_without_them():
    request = JobCreate.model_validate(
        {
            "name": "b",
            "depends_on": [
                {"name": "a", "condition": "Completed"},
                {"name": "c", "condition": "Checkpointed", "step": 100},
            ],
            "cancel_dependents": True,
        }
    )
    spec = manifest_of(request, default_image="trainer:1", submitter="alice")["spec"]
    assert spec["dependsOn"] == [
        {"name": "a", "condition": "Completed"},
        {"name": "c", "condition": "Checkpointed", "step": 100},
    ]
    assert spec["cancelDependents"] is True
    plain = manifest_of(JobCreate.model_validate({}), default_image="t:1", submitter="a")["spec"]
    assert "dependsOn" not in plain
    assert "cancelDependents" not in plain


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "b", "depends_on": [{"name": "b", "condition": "Completed"}]}, "itself"),
        (
            {"depends_on": [{"name": "a", "condition": "Completed"}] * 2},
            "names a more than once",
        ),
        ({"depends_on": [{"name": "a", "condition": "Done"}]}, "condition"),
        ({"depends_on": [{"name": "a", "condition": "Checkpointed"}]}, "step is required"),
        ({"depends_on": [{"name": "a", "condition": "Completed", "step": 3}]}, "step is required"),
        ({"depends_on": [{"name": "a", "condition": "Checkpointed", "step": -1}]}, "step"),
        ({"depends_on": [{"name": "A/b", "condition": "Completed"}]}, "name"),
        (
            {"depends_on": [{"name": f"j{i}", "condition": "Finished"} for i in range(10_000)]},
            "at most 32 items",
        ),
    ],
)
def test_bad_dependencies_are_refused(body, says):
    with pytest.raises(ValidationError, match=says):
        JobCreate.model_validate(body)
