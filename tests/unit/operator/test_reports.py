"""The report channel's rules (shunter.domain.reports) and the Pod that carries them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shunter.domain.model import ATTEMPT_LABEL, JOB_UID_LABEL, POD_INDEX_LABEL, format_time
from shunter.domain.podspec import REPORT_AUDIENCE, build_pod
from shunter.domain.reports import (
    Report,
    Reporter,
    ReportError,
    apply,
    judge,
    notice,
    reporter_of,
)
from tests.support.builders import a_training_job

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def running(**status):
    return a_training_job("j").in_phase("running", attempts=2, **status).job()


def first_pod(job, **labels):
    base = {JOB_UID_LABEL: job.uid, POD_INDEX_LABEL: "0", ATTEMPT_LABEL: "2"}
    return Reporter("default", "j-trainer", "pod-uid", {**base, **labels}, "pod-uid")


def test_a_report_of_the_jobs_first_pod_is_taken_in():
    job = running()
    report = Report.parse({"job_uid": job.uid, "step": 40, "total_steps": 100, "loss": 0.5,
                           "checkpoint": {"step": 40, "time": format_time(NOW),
                                          "size_bytes": 10, "write_seconds": 3.5},
                           "checkpoint_on_stop": True, "resumed_from_step": 20})  # fmt: skip
    assert judge(report, job, first_pod(job)) is job
    status = apply(job.status, report, now=NOW)
    assert status.progress is not None
    assert (status.progress.step, status.progress.attempt) == (40, 2)
    assert status.progress.display == "40% (40/100)"
    assert status.progress.resumed_from_step == 20
    assert status.checkpoint is not None
    assert (status.checkpoint.step, status.checkpoint.max_write_seconds) == (40, 3.5)
    assert status.checkpoint.on_stop


@pytest.mark.parametrize(
    ("who", "status"),
    [
        ({"pod_name": "other-trainer"}, 403),  # another Pod's token
        ({"labels": {JOB_UID_LABEL: "someone-else"}}, 403),
        ({"labels": {POD_INDEX_LABEL: "1"}}, 403),  # not rank 0
        ({"live_uid": "a-newer-pod"}, 403),  # the token's Pod is gone
        ({"namespace": "team-b"}, 403),
        ({"labels": {ATTEMPT_LABEL: "1"}}, 409),  # an earlier attempt's Pod
    ],
)
def test_a_report_from_any_other_pod_is_refused(who, status):
    job = running()
    reporter = first_pod(job)
    fields = {**reporter.__dict__, **{k: v for k, v in who.items() if k != "labels"}}
    fields["labels"] = {**reporter.labels, **who.get("labels", {})}
    with pytest.raises(ReportError) as refused:
        judge(Report(job_uid=job.uid, step=1), job, Reporter(**fields))
    assert refused.value.status == status


def test_a_stale_step_an_older_checkpoint_and_a_finished_job_are_refused():
    job = running(progress={"step": 50, "attempt": 2, "reportedAt": format_time(NOW)},
                  checkpoint={"step": 40, "time": format_time(NOW), "attempt": 2})  # fmt: skip
    with pytest.raises(ReportError, match="stale report: step 49"):
        judge(Report(job_uid=job.uid, step=49), job, first_pod(job))
    old = Report.parse({"job_uid": job.uid, "step": 60, "checkpoint": {
        "step": 30, "time": format_time(NOW - timedelta(minutes=1))}})  # fmt: skip
    with pytest.raises(ReportError, match="older than the one of step 40"):
        judge(old, job, first_pod(job))
    done = a_training_job("j").in_phase("completed", attempts=2).job()
    with pytest.raises(ReportError, match="is completed") as refused:
        judge(Report(job_uid=done.uid, step=99), done, first_pod(done))
    assert refused.value.status == 409


@pytest.mark.parametrize(
    "body",
    [[], {"step": 1}, {"job_uid": "u", "step": -1}, {"job_uid": "u", "step": "7"},
     {"job_uid": "u", "step": 1, "loss": float("nan")},
     {"job_uid": "u", "step": 1, "checkpoint": {"step": 1, "time": "yesterday"}},
     {"job_uid": "u", "step": 2**70}],
)  # fmt: skip
def test_bad_reports_say_what_is_wrong(body):
    with pytest.raises(ReportError) as refused:
        Report.parse(body)
    assert refused.value.status == 422


def test_only_a_pod_bound_service_account_token_reports():
    extra = {"authentication.kubernetes.io/pod-name": ("j-trainer",),
             "authentication.kubernetes.io/pod-uid": ("u1",)}  # fmt: skip
    assert reporter_of("system:serviceaccount:team-a:default", extra) == ("team-a", "j-trainer",
                                                                          "u1")  # fmt: skip
    with pytest.raises(ReportError):
        reporter_of("alice", extra)
    with pytest.raises(ReportError):
        reporter_of("system:serviceaccount:team-a:default", {})


def test_the_notice_names_a_preemption_and_its_deadline():
    by = format_time(NOW + timedelta(seconds=45))
    job = a_training_job("j").in_phase("stopping", termination={
        "step": "graceful", "cause": "preempt", "checkpointBy": by}).job()  # fmt: skip
    assert notice(job) == {"reason": "preempt", "checkpoint_by": by}
    cancelling = a_training_job("j").in_phase("cancelling", termination={
        "step": "graceful", "cause": "cancel", "checkpointBy": by}).job()  # fmt: skip
    assert notice(cancelling) is None
    assert notice(running()) is None


def test_the_first_pod_carries_the_report_token_and_address_and_the_others_do_not():
    job = a_training_job("j").with_spec(nodes=2).in_phase("starting", attempts=3).job()
    url = "http://10.244.0.1:8000/api/trainer/v1/report"
    first, second = build_pod(job, 0, report_url=url), build_pod(job, 1, report_url=url)
    env = {e["name"]: e.get("value") for e in first["spec"]["containers"][0]["env"]}
    assert env["SHUNTER_REPORT_URL"] == url
    assert env["SHUNTER_ATTEMPT"] == "3"
    token = [v for v in first["spec"]["volumes"] if "projected" in v]
    assert token[0]["projected"]["sources"][0]["serviceAccountToken"]["audience"] == REPORT_AUDIENCE
    assert first["spec"]["automountServiceAccountToken"] is False
    assert not [v for v in second["spec"]["volumes"] if "projected" in v]
    plain = build_pod(job, 0)
    assert "SHUNTER_REPORT_URL" not in {e["name"] for e in plain["spec"]["containers"][0]["env"]}


def test_only_a_change_of_progress_alone_is_quiet():
    from dataclasses import replace

    from shunter.domain.model import Progress
    from shunter.domain.reports import progress_only
    from shunter.operator.book import JobBook

    job = running()
    moved = replace(job, resource_version="101", status=replace(
        job.status, progress=Progress(step=5, reported_at=NOW)))  # fmt: skip
    assert progress_only(job, moved)
    saved = replace(moved, status=replace(moved.status, reason="Other"))
    assert not progress_only(job, saved)
    assert not progress_only(None, moved)
    book = JobBook.of([job])
    book.take_due(NOW)
    book.put_job(moved, quiet=True)
    assert book.jobs[job.key].status.progress is not None  # kept ...
    assert job.key not in book.take_due(NOW)  # ... but nothing to decide
    book.put_job(saved)
    assert job.key in book.take_due(NOW)
