"""A job's upstream and downstream as GET /status shows them (pure)."""

from __future__ import annotations

from shunter.api.lineage import DownstreamView, UpstreamView, lineage_of
from shunter.domain.dependencies import Absent, Upstream
from shunter.domain.model import Phase
from tests.support.builders import a_training_job


def test_each_upstream_with_its_state_and_each_downstream_with_its_condition():
    job = a_training_job("b").with_spec(dependsOn=[
        {"name": "a", "condition": "Completed"},
        {"name": "gone", "condition": "Finished"},
        {"name": "nope", "condition": "Completed"},
        {"name": "dark", "condition": "Failed"},
    ]).job()  # fmt: skip
    a = Upstream.of(a_training_job("a").in_phase("running").job())
    c = a_training_job("c").with_spec(dependsOn=[{"name": "b", "condition": "Checkpointed",
                                                  "step": 7}]).job()  # fmt: skip
    found = {"a": a, "gone": Upstream.gone("gone", Phase.FAILED, None),
             "nope": Absent.MISSING, "dark": None}  # fmt: skip
    lineage = lineage_of(job, found=found, dependents=[c])
    assert lineage.upstream == (
        UpstreamView("a", "Completed", None, "waiting", "a to complete", "running", deleted=False),
        UpstreamView("gone", "Finished", None, "met",
                     "gone failed (its TrainingJob was deleted; judged from the history)",
                     "failed", deleted=True),
        UpstreamView("nope", "Completed", None, "impossible",
                     "nope: no such job in this namespace, and no record of it in the history",
                     None, deleted=True),
        UpstreamView("dark", "Failed", None, "unknown", "the history cannot be read now", None,
                     deleted=True),
    )  # fmt: skip
    assert lineage.downstream == (DownstreamView("c", "Checkpointed", 7, "queued"),)
    hash(lineage)  # part of the rendered body's version


def test_a_job_outside_any_chain_has_empty_lists():
    lineage = lineage_of(a_training_job("x").job(), found={}, dependents=[])
    assert (lineage.upstream, lineage.downstream) == ((), ())
