"""Environment variables from Secrets: allowed by default, refused by the installer's
switch (pure; shunter.operator.secretenv), and what a pass does about it."""

from __future__ import annotations

from datetime import UTC, datetime

from shunter.operator.book import JobBook
from shunter.operator.model import JobSpec, Phase
from shunter.operator.planning import plan_pass
from shunter.operator.rules import Rules
from shunter.operator.secretenv import judge_env
from tests.support.builders import a_training_job, gpu_nodes

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
SECRET_ENV = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "hub", "key": "token"}}}]


def test_a_job_reading_a_secret_fails_without_a_pod_when_the_installer_forbids_it():
    job = a_training_job("s").with_spec(env=SECRET_ENV).job()
    book = JobBook.of([job], nodes=gpu_nodes())
    decision = plan_pass(book, now=NOW, rules=Rules(secret_env_allowed=False)).decisions[job.key]
    assert decision.status.phase is Phase.FAILED
    assert decision.status.reason == "SecretEnvNotAllowed"
    assert "TOKEN (Secret 'hub', key 'token')" in (decision.status.message or "")
    assert "SHUNTER_ALLOW_SECRET_ENV=false" in (decision.status.message or "")
    assert not decision.create
    allowed = plan_pass(JobBook.of([job], nodes=gpu_nodes()), now=NOW, rules=Rules())
    assert allowed.decisions[job.key].status.phase is Phase.STARTING


def test_plain_values_need_no_permission():
    spec = JobSpec.parse({"image": "i", "env": [{"name": "LR", "value": "1"}]})
    assert judge_env(spec, allowed=False) is None
    assert judge_env(JobSpec.parse({"image": "i", "env": SECRET_ENV}), allowed=True) is None
