"""Which checkpoint claims a job may mount (pure), and what a pass does about it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shunter.domain.admission import Limits
from shunter.domain.claims import (
    MISSING,
    NOT_ALLOWED,
    RELEASING,
    Claimant,
    ClaimOwner,
    ClaimView,
    judge_claim,
    parse_allowed,
)
from shunter.domain.model import API_VERSION, JobKey, Phase
from shunter.operator.book import JobBook
from shunter.operator.planning import plan_pass
from shunter.operator.rules import Rules
from tests.support.builders import a_training_job, gpu_nodes

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
NAMED = Claimant("j")  # a job naming its claim (spec.checkpoint.claimName)


def a_claim(name: str, *, labelled: bool = False, owners: tuple[ClaimOwner, ...] = ()) -> ClaimView:
    return ClaimView("default", name, labelled=labelled, owners=owners)


def a_job_owner(name: str, uid: str) -> ClaimOwner:
    return ClaimOwner(API_VERSION, "TrainingJob", name, uid)


def test_a_claim_labelled_for_shunter_may_be_mounted():
    found = a_claim("c", labelled=True)
    assert judge_claim("default", "c", found=found, allowed=(), job=NAMED) is None


def test_an_unlabelled_claim_is_refused_naming_the_claim_and_the_rule():
    verdict = judge_claim("default", "home", found=a_claim("home"), allowed=(), job=NAMED)
    assert verdict is not None
    assert verdict.reason == NOT_ALLOWED
    assert verdict.refused
    assert "'home'" in verdict.message
    assert 'shunter.dev/checkpoints: "true"' in verdict.message
    assert "SHUNTER_ALLOWED_CLAIMS" in verdict.message


@pytest.mark.parametrize("entry", ["default/home", "default/*"])
def test_the_operators_allowlist_admits_a_claim_or_a_whole_namespace(entry: str):
    found = a_claim("home")
    assert judge_claim("default", "home", found=found, allowed={entry}, job=NAMED) is None
    assert judge_claim("other", "home", found=found, allowed={entry}, job=NAMED) is not None


def test_a_claim_owned_by_the_job_itself_is_allowed_and_no_other_jobs():
    own = a_claim("j-checkpoints", owners=(a_job_owner("j", "uid-j"),))
    mine, other = Claimant("j", "uid-j"), Claimant("k", "uid-k")
    assert judge_claim("default", "j-checkpoints", found=own, allowed=(), job=mine) is None
    verdict = judge_claim("default", "j-checkpoints", found=own, allowed=(), job=other)
    assert verdict is not None
    assert verdict.refused


def test_a_missing_claim_is_not_judged_yet():
    verdict = judge_claim("default", "later", found=None, allowed=(), job=NAMED)
    assert verdict is not None
    assert verdict.reason == MISSING
    assert not verdict.refused


def test_a_labelled_claim_is_read_from_its_manifest():
    claim = ClaimView.parse({"metadata": {
        "name": "c", "namespace": "ns", "labels": {"shunter.dev/checkpoints": "true"},
        "ownerReferences": [{"apiVersion": API_VERSION, "kind": "TrainingJob", "name": "j",
                             "uid": "u1"}],
    }})  # fmt: skip
    assert claim == ClaimView("ns", "c", labelled=True, owners=(a_job_owner("j", "u1"),))
    assert not ClaimView.parse({"metadata": {"name": "c", "namespace": "ns"}}).labelled


def test_the_allowlist_setting_is_parsed_and_checked():
    assert parse_allowed(" a/b, c/* ,") == frozenset({"a/b", "c/*"})
    assert parse_allowed(None) == frozenset()
    for bad in ("justaname", "/x", "a/", "a/b/c"):
        with pytest.raises(ValueError, match="namespace/name"):
            parse_allowed(bad)


# -- the claim the operator creates (NAME-checkpoints) --------------------------------

MAKES = Claimant("x", "uid-x", creates=True)


def test_the_operators_own_claim_may_be_absent_it_is_created_then():
    assert judge_claim("default", "x-checkpoints", found=None, allowed=(), job=MAKES) is None


def test_a_claim_that_merely_has_the_operators_name_is_refused():
    found = a_claim("x-checkpoints")
    verdict = judge_claim("default", "x-checkpoints", found=found, allowed=(), job=MAKES)
    assert verdict is not None
    assert verdict.refused
    assert "checkpoint claim 'x-checkpoints' may not be mounted" in verdict.message
    assert "was not created for this job" in verdict.message
    assert 'shunter.dev/checkpoints: "true"' in verdict.message


@pytest.mark.parametrize(
    "owner",
    [
        ClaimOwner(API_VERSION, "TrainingJob", "other", "uid-o"),  # another job's
        ClaimOwner("apps/v1", "Deployment", "x", "uid-d"),  # not a TrainingJob
        ClaimOwner("example.com/v1", "TrainingJob", "x", "uid-e"),  # another group's kind
    ],
)
def test_a_claim_owned_by_anything_but_the_job_is_refused(owner: ClaimOwner):
    found = a_claim("x-checkpoints", owners=(owner,))
    verdict = judge_claim("default", "x-checkpoints", found=found, allowed=(), job=MAKES)
    assert verdict is not None
    assert verdict.refused


def test_the_claim_of_an_earlier_job_of_the_same_name_is_waited_for():
    found = a_claim("x-checkpoints", owners=(a_job_owner("x", "uid-old"),))
    verdict = judge_claim("default", "x-checkpoints", found=found, allowed=(), job=MAKES)
    assert verdict is not None
    assert verdict.reason == RELEASING
    assert not verdict.refused
    assert "earlier TrainingJob named 'x' (uid uid-old)" in verdict.message


@pytest.mark.parametrize("offer", ["label", "allowlist"])
def test_an_offered_claim_with_the_operators_name_is_mounted(offer: str):
    found = a_claim("x-checkpoints", labelled=offer == "label")
    allowed = {"default/x-checkpoints"} if offer == "allowlist" else set()
    assert judge_claim("default", "x-checkpoints", found=found, allowed=allowed, job=MAKES) is None


_owners = st.lists(
    st.builds(
        ClaimOwner,
        st.sampled_from([API_VERSION, "apps/v1"]),
        st.sampled_from(["TrainingJob", "Deployment"]),
        st.sampled_from(["x", "y"]),
        st.sampled_from(["", "u1", "u2"]),
    ),
    max_size=3,
).map(tuple)


@given(
    found=st.none()
    | st.builds(ClaimView, st.just("default"), st.just("c"), st.booleans(), _owners),
    listed=st.booleans(),
    job=st.builds(
        Claimant, st.sampled_from(["x", "y"]), st.sampled_from(["", "u1", "u2"]), st.booleans()
    ),
)
def test_a_claim_is_mounted_only_when_offered_or_the_jobs_own(
    found: ClaimView | None, listed: bool, job: Claimant
):
    allowed = {"default/c"} if listed else set()
    verdict = judge_claim("default", "c", found=found, allowed=allowed, job=job)
    owned = found is not None and bool(job.uid) and job.uid in {o.uid for o in found.owners}
    offered = listed or (found is not None and found.labelled)
    # Mounted (or created by the operator) exactly when the rule allows it ...
    assert (verdict is None) == (offered or owned or (found is None and job.creates))
    # ... and what is not allowed waits only while it is absent or an earlier job's.
    if verdict is not None and not verdict.refused:
        assert found is None or any(
            o.kind == "TrainingJob" and o.api_version == API_VERSION and o.name == job.name
            for o in found.owners
        )


# -- in a pass ----------------------------------------------------------------------


def _pass(*jobs, claims=(), allowed=frozenset(), size=None):
    book = JobBook.of(jobs, nodes=gpu_nodes())
    for claim in claims:
        book.put_claim(claim)
    rules = Rules(limits=Limits(max_running=2), allowed_claims=allowed, checkpoint_size=size)
    return plan_pass(book, now=NOW, rules=rules).decisions


def test_a_new_job_naming_a_claim_it_may_not_mount_fails_at_once():
    job = a_training_job("j").with_spec(checkpoint={"claimName": "home"}).job()
    decision = _pass(job, claims=[a_claim("home")])[job.key]
    assert decision.status.phase is Phase.FAILED
    assert decision.status.reason == NOT_ALLOWED
    assert "'home'" in (decision.status.message or "")
    assert decision.status.completed_at == NOW
    assert not decision.create
    assert [e.reason for e in decision.events] == ["Queued", NOT_ALLOWED]


def test_a_job_far_back_in_the_queue_fails_too_without_waiting_for_its_turn():
    ahead = [a_training_job(f"a{i}").created_at(T0).job() for i in range(30)]
    late = a_training_job("late").with_spec(checkpoint={"claimName": "home"}).job()
    decisions = _pass(*ahead, late, claims=[a_claim("home")])
    assert decisions[late.key].status.phase is Phase.FAILED


def test_a_job_whose_claim_does_not_exist_yet_waits_and_blocks_no_one():
    first = a_training_job("first").created_at(T0).with_spec(checkpoint={"claimName": "later"})
    second = a_training_job("second").created_at(T0).job()
    decisions = _pass(first.job(), second)
    waiting = decisions[JobKey("default", "first")].status
    assert waiting.phase is Phase.QUEUED
    assert waiting.reason == MISSING
    assert "'later' does not exist" in (waiting.message or "")
    assert decisions[JobKey("default", "second")].status.phase is Phase.STARTING


@pytest.mark.parametrize(
    ("claims", "allowed"),
    [([a_claim("ckpt", labelled=True)], frozenset()), ([a_claim("ckpt")], {"default/ckpt"})],
)
def test_a_job_whose_claim_is_allowed_is_admitted(claims, allowed):
    job = a_training_job("j").with_spec(checkpoint={"claimName": "ckpt"}).job()
    decision = _pass(job, claims=claims, allowed=frozenset(allowed))[job.key]
    assert decision.status.phase is Phase.STARTING
    pod = decision.create_pods[0]
    assert {"name": "checkpoints", "persistentVolumeClaim": {"claimName": "ckpt"}} in pod["spec"][
        "volumes"
    ]


@pytest.mark.parametrize("size", ["spec", "default"])
def test_a_job_whose_own_claim_name_is_taken_by_a_foreign_claim_fails_without_a_pod(size: str):
    job = a_training_job("x")
    if size == "spec":
        job = job.with_spec(checkpoint={"size": "1Gi"})
    default = "10Gi" if size == "default" else None
    decisions = _pass(job.job(), claims=[a_claim("x-checkpoints")], size=default)
    decision = decisions[JobKey("default", "x")]
    assert decision.status.phase is Phase.FAILED
    assert decision.status.reason == NOT_ALLOWED
    assert "'x-checkpoints'" in (decision.status.message or "")
    assert not decision.create


def test_a_job_whose_own_claim_does_not_exist_yet_is_admitted_and_creates_it():
    job = a_training_job("x").with_spec(checkpoint={"size": "1Gi"}).job()
    decision = _pass(job)[job.key]
    assert decision.status.phase is Phase.STARTING
    claim = next(m for m in decision.create if m["kind"] == "PersistentVolumeClaim")
    assert claim["metadata"]["name"] == "x-checkpoints"
    assert claim["metadata"]["ownerReferences"][0]["uid"] == job.uid


def test_a_job_whose_own_claim_it_made_already_exists_is_admitted_again():
    job = a_training_job("x").with_spec(checkpoint={"size": "1Gi"}).job()
    mine = a_claim("x-checkpoints", owners=(a_job_owner("x", job.uid),))
    assert _pass(job, claims=[mine])[job.key].status.phase is Phase.STARTING


def test_a_recreated_job_waits_for_its_predecessors_claim_to_go_blocking_no_one():
    again = a_training_job("x").created_at(T0).with_spec(checkpoint={"size": "1Gi"}).job()
    other = a_training_job("other").created_at(T0).job()
    earlier = a_claim("x-checkpoints", owners=(a_job_owner("x", "uid-of-the-deleted-x"),))
    decisions = _pass(again, other, claims=[earlier])
    waiting = decisions[again.key].status
    assert waiting.phase is Phase.QUEUED
    assert waiting.reason == RELEASING
    assert "Waiting for its checkpoint claim" in (waiting.message or "")
    assert decisions[other.key].status.phase is Phase.STARTING
    # Once the garbage collector took it, the job starts and creates its own.
    assert _pass(again).get(again.key).status.phase is Phase.STARTING


def test_without_a_size_a_job_mounts_no_claim_and_none_is_judged():
    job = a_training_job("x").job()
    decision = _pass(job, claims=[a_claim("x-checkpoints")])[job.key]
    assert decision.status.phase is Phase.STARTING
    assert {"name": "checkpoints", "emptyDir": {}} in decision.create_pods[0]["spec"]["volumes"]
