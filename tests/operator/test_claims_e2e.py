"""Checkpoint claims on the real control plane: a job created with kubectl that names a
claim it may not mount fails (ClaimNotAllowed) without a Pod; a labelled or allowed
claim is mounted; a claim that does not exist yet is waited for."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.support.builders import a_training_job
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

pytestmark = pytest.mark.cluster


def make_claim(jobs: Jobs, name: str, *, labelled: bool) -> None:
    labels = {"shunter.dev/checkpoints": "true"} if labelled else {}
    jobs.core.create_namespaced_persistent_volume_claim(jobs.namespace, {
        "metadata": {"name": name, "labels": labels},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip


def claim_of(jobs: Jobs, pod: str) -> str | None:
    spec = jobs.core.read_namespaced_pod(pod, jobs.namespace).spec
    for volume in spec.volumes or ():
        if volume.persistent_volume_claim is not None:
            return str(volume.persistent_volume_claim.claim_name)
    return None


def test_only_claims_labelled_or_allowed_are_mounted(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    operator = start_operator(
        SHUNTER_MAX_RUNNING="5", SHUNTER_ALLOWED_CLAIMS=f"{jobs.namespace}/shared"
    )
    make_claim(jobs, "home", labelled=False)
    make_claim(jobs, "ckpt", labelled=True)
    make_claim(jobs, "shared", labelled=False)
    jobs.create(a_training_job("refused").with_spec(checkpoint={"claimName": "home"}))
    jobs.create(a_training_job("labelled").with_spec(checkpoint={"claimName": "ckpt"}))
    jobs.create(a_training_job("listed").with_spec(checkpoint={"claimName": "shared"}))

    refused = jobs.wait_phase("refused", "failed")["status"]
    assert refused["reason"] == "ClaimNotAllowed"
    assert "checkpoint claim 'home' may not be mounted" in refused["message"]
    assert 'shunter.dev/checkpoints: "true"' in refused["message"]
    # Events are posted off the reconcile path: shortly after the status, not with it.
    wait_for(lambda: "ClaimNotAllowed" in jobs.event_reasons("refused"), timeout=15,
             what="the ClaimNotAllowed Event")  # fmt: skip
    assert f"[Refuse] Job {jobs.namespace}/refused not admitted" in operator.log()

    # The others are admitted and their Pods mount the claim (unbound here: no
    # provisioner, so the scheduler leaves them pending, which is not the point).
    for name, claim in (("labelled", "ckpt"), ("listed", "shared")):
        wait_for(lambda n=name: f"{n}-trainer" in jobs.pod_names(), timeout=30,
                 what=f"{name}'s Pod")  # fmt: skip
        assert claim_of(jobs, f"{name}-trainer") == claim
    assert "refused-trainer" not in jobs.pod_names()


def test_a_job_waits_for_a_claim_that_does_not_exist_yet(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    start_operator(SHUNTER_MAX_RUNNING="1")
    jobs.create(a_training_job("early").with_spec(checkpoint={"claimName": "later"}))
    jobs.create(a_training_job("other").running_for("2s"))
    wait_for(lambda: jobs.status("early").get("reason") == "ClaimMissing", timeout=30,
             what="early to wait for its claim")  # fmt: skip
    assert "'later' does not exist" in jobs.status("early")["message"]
    jobs.wait_phase("other", "completed", timeout=30)  # it blocked no one

    make_claim(jobs, "later", labelled=True)
    jobs.wait_phase("early", "starting", timeout=30)
    wait_for(lambda: "early-trainer" in jobs.pod_names(), timeout=30, what="early's Pod")
    assert claim_of(jobs, "early-trainer") == "later"


def test_a_claim_appearing_unlabelled_fails_the_waiting_job(
    jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    start_operator()
    jobs.create(a_training_job("early").with_spec(checkpoint={"claimName": "later"}))
    wait_for(lambda: jobs.status("early").get("reason") == "ClaimMissing", timeout=30,
             what="early to wait for its claim")  # fmt: skip
    make_claim(jobs, "later", labelled=False)
    assert jobs.wait_phase("early", "failed", timeout=30)["status"]["reason"] == "ClaimNotAllowed"
