"""REST submission of environment variables read from a Secret: passed on to the
TrainingJob and the trainer Pod as a reference (the API and the operator never read
the Secret, which need not even exist yet); refused when the installer turned it off."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.api import ApiProcess
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

ENV = {"LR": "0.1", "TOKEN": {"secret": "hub", "key": "token"}}
TOKEN = {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}}


def test_submit_passes_a_secrets_key_on_as_a_reference(
    jobs: Jobs,
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
):
    start_operator()
    api = start_api()
    with api.client() as http:
        created = http.post("/api/training/submit", json={"name": "s", "env": ENV})
        assert created.status_code == 201, created.text
        for bad in ({"secret": "hub"}, {"secret": "hub", "key": "k", "configmap": "c"},
                    {"secret": "Not_A_Name", "key": "k"}):  # fmt: skip
            refused = http.post("/api/training/submit", json={"name": "b", "env": {"X": bad}})
            assert refused.status_code == 422, refused.text
        shown = http.get("/api/training/status/s").json()["env"]
        assert shown == [{"name": "LR", "secret": None, "key": None},
                         {"name": "TOKEN", "secret": "hub", "key": "token"}]  # fmt: skip
    assert jobs.get("s")["spec"]["env"] == [{"name": "LR", "value": "0.1"}, TOKEN]
    wait_for(lambda: "s-trainer" in jobs.pod_names(), timeout=30, what="the trainer Pod")
    pod = jobs.core.read_namespaced_pod("s-trainer", jobs.namespace)
    env = jobs.core.api_client.sanitize_for_serialization(pod.spec.containers[0].env)
    assert TOKEN in env
    assert {"name": "LR", "value": "0.1"} in env
