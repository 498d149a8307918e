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
