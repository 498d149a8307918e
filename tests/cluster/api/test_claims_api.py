"""REST submission of a job naming a checkpoint claim: the API reads the claim and
refuses one the job may not mount with a 422 naming the claim and the rule; nothing
is created. Allowed ones (labelled, or in SHUNTER_ALLOWED_CLAIMS) are accepted."""

from __future__ import annotations

from collections.abc import Callable

from tests.cluster.operator.test_claims_e2e import make_claim
from tests.support.api import ApiProcess
from tests.support.operator import Jobs, OperatorProcess


def test_submit_refuses_a_claim_the_job_may_not_mount(
    jobs: Jobs,
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
):
    allowed = f"{jobs.namespace}/shared"
    start_operator(SHUNTER_ALLOWED_CLAIMS=allowed, SHUNTER_MAX_RUNNING="5")
    api = start_api(SHUNTER_ALLOWED_CLAIMS=allowed)
    make_claim(jobs, "home", labelled=False)
    make_claim(jobs, "ckpt", labelled=True)
    make_claim(jobs, "shared", labelled=False)
    with api.client() as http:
        refused = http.post("/api/training/submit",
                            json={"name": "refused", "checkpoint_claim": "home"})  # fmt: skip
        assert refused.status_code == 422
        body = refused.json()
        assert body["success"] is False
        assert "checkpoint claim 'home' may not be mounted" in body["message"]
        assert 'shunter.dev/checkpoints: "true"' in body["message"]
        assert body["detail"] == {"reason": "ClaimNotAllowed", "claim": "home"}
        assert http.get("/api/training/status/refused").status_code == 404

        missing = http.post("/api/training/submit",
                            json={"name": "missing", "checkpoint_claim": "nope"})  # fmt: skip
        assert missing.status_code == 422
        assert "checkpoint claim 'nope' does not exist" in missing.json()["message"]

        for name, claim in (("labelled", "ckpt"), ("listed", "shared")):
            answer = http.post("/api/training/submit",
                               json={"name": name, "checkpoint_claim": claim})  # fmt: skip
            assert answer.status_code == 201, answer.text
    assert jobs.get("labelled")["spec"]["checkpoint"]["claimName"] == "ckpt"
    jobs.wait_phase("listed", "starting", timeout=30)


def test_submit_refuses_a_claim_that_only_has_the_jobs_checkpoint_name(
    jobs: Jobs,
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
):
    """With a checkpoint size, or the operator's default (the chart's 10Gi), a job
    mounts NAME-checkpoints: one already there that is not offered is refused at once."""
    start_operator(SHUNTER_CHECKPOINT_SIZE="1Gi", SHUNTER_MAX_RUNNING="5")
    api = start_api(SHUNTER_CHECKPOINT_SIZE="1Gi")
    make_claim(jobs, "x-checkpoints", labelled=False)
    make_claim(jobs, "y-checkpoints", labelled=True)
    with api.client() as http:
        for body in ({"name": "x", "checkpoint_size": "1Gi"}, {"name": "x"}):
            refused = http.post("/api/training/submit", json=body)
            assert refused.status_code == 422, refused.text
            answer = refused.json()
            assert "checkpoint claim 'x-checkpoints' may not be mounted" in answer["message"]
            assert 'shunter.dev/checkpoints: "true"' in answer["message"]
            assert answer["detail"] == {"reason": "ClaimNotAllowed", "claim": "x-checkpoints"}
        assert http.get("/api/training/status/x").status_code == 404

        # Offered, or not there yet (the operator creates it): accepted as before.
        for name in ("y", "z"):
            accepted = http.post("/api/training/submit", json={"name": name})
            assert accepted.status_code == 201, accepted.text
    for name in ("y", "z"):
        jobs.wait_phase(name, "starting", timeout=30)
