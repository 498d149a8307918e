"""Parsing raw TrainingJob bodies into the operator's model."""

from __future__ import annotations

from shunter.domain.model import Audit
from tests.support.builders import a_training_job


def test_who_submitted_and_cancelled_comes_from_the_annotations():
    job = a_training_job("j").submitted_by("alice").cancelled(by="bob").job()
    assert job.audit == Audit(submitted_by="alice", cancelled_by="bob")


def test_a_job_without_the_annotations_names_nobody():
    assert a_training_job("j").cancelled().job().audit == Audit(None, None)
