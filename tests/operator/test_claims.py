"""Which checkpoint claims a job may mount (pure), and what a pass does about it."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shunter.operator.admission import Limits
from shunter.operator.book import JobBook
from shunter.operator.claims import (
    MISSING,
    NOT_ALLOWED,
    ClaimView,
    judge_claim,
    parse_allowed,
)
from shunter.operator.model import JobKey, Phase
from shunter.operator.planning import plan_pass
from shunter.operator.rules import Rules
from tests.support.builders import a_training_job, gpu_nodes

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def a_claim(name: str, *, labelled: bool = False, owners: tuple[str, ...] = ()) -> ClaimView:
    return ClaimView("default", name, labelled=labelled, owners=owners)


def test_a_claim_labelled_for_shunter_may_be_mounted():
    assert judge_claim("default", "c", found=a_claim("c", labelled=True), allowed=()) is None


def test_an_unlabelled_claim_is_refused_naming_the_claim_and_the_rule():
    verdict = judge_claim("default", "home", found=a_claim("home"), allowed=())
    assert verdict is not None
    assert verdict.reason == NOT_ALLOWED
    assert "'home'" in verdict.message
    assert 'shunter.dev/checkpoints: "true"' in verdict.message
    assert "SHUNTER_ALLOWED_CLAIMS" in verdict.message


@pytest.mark.parametrize("entry", ["default/home", "default/*"])
def test_the_operators_allowlist_admits_a_claim_or_a_whole_namespace(entry: str):
    assert judge_claim("default", "home", found=a_claim("home"), allowed={entry}) is None
    assert judge_claim("other", "home", found=a_claim("home"), allowed={entry}) is not None


def test_a_claim_owned_by_the_job_itself_is_allowed_and_no_other_jobs():
    own = a_claim("j-checkpoints", owners=("uid-j",))
    assert judge_claim("default", "j-checkpoints", found=own, allowed=(), job_uid="uid-j") is None
    assert judge_claim("default", "j-checkpoints", found=own, allowed=(), job_uid="uid-k")


def test_a_missing_claim_is_not_judged_yet():
    verdict = judge_claim("default", "later", found=None, allowed=())
    assert verdict is not None
    assert verdict.reason == MISSING


def test_a_labelled_claim_is_read_from_its_manifest():
    claim = ClaimView.parse({"metadata": {
        "name": "c", "namespace": "ns", "labels": {"shunter.dev/checkpoints": "true"},
        "ownerReferences": [{"uid": "u1"}],
    }})  # fmt: skip
    assert claim == ClaimView("ns", "c", labelled=True, owners=("u1",))
    assert not ClaimView.parse({"metadata": {"name": "c", "namespace": "ns"}}).labelled


def test_the_allowlist_setting_is_parsed_and_checked():
    assert parse_allowed(" a/b, c/* ,") == frozenset({"a/b", "c/*"})
    assert parse_allowed(None) == frozenset()
    for bad in ("justaname", "/x", "a/", "a/b/c"):
        with pytest.raises(ValueError, match="namespace/name"):
            parse_allowed(bad)


# -- in a pass ----------------------------------------------------------------------


def _pass(*jobs, claims=(), allowed=frozenset()):
    book = JobBook.of(jobs, nodes=gpu_nodes())
    for claim in claims:
        book.put_claim(claim)
    rules = Rules(limits=Limits(max_running=2), allowed_claims=allowed)
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
