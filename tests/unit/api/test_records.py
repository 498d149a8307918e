"""A job becomes a row in one place (shunter.domain.record): the mirror's columns, the
history's rows and the live view all take its fields by name."""

from __future__ import annotations

from dataclasses import asdict, fields

from shunter.api.schemas import HISTORY_COLUMNS, RENAMED, HistoryRow, JobPublic, JobRow
from shunter.domain.record import JobRecord
from shunter.operator.mirror import Row, row_of
from tests.support.builders import a_training_job, an_appraisal

AT = an_appraisal()
RECORD = {f.name for f in fields(JobRecord)}


def test_every_field_of_the_record_is_in_the_api_rows_under_one_name():
    named = {RENAMED.get(f, f) for f in JobRow.model_fields}
    assert named == RECORD - {"id"}
    assert set(HistoryRow.model_fields) - set(JobRow.model_fields) == {"uid", "deleted_at"}
    assert set(JobPublic.model_fields) >= set(JobRow.model_fields)


def test_the_history_reads_only_the_mirrors_columns():
    columns = {f.name for f in fields(Row)}
    for column in HISTORY_COLUMNS:
        assert column.split(" ")[0].split("::")[0] in columns, column


def test_the_live_view_and_the_mirror_say_the_same_of_a_job():
    job = (
        a_training_job("j")
        .submitted_by("alice")
        .cancelled(by="bob")
        .with_spec(nodes=2, queue="team", priority=7)
        .in_phase("cancelled", reason="Cancelled", message="Cancelled by user", exitCode=75,
                  attempts=2, failures=1, preemptions=1, suspensions=1, queuePosition=None,
                  podName="j-trainer-0", nodeName="n1", startedAt="2026-01-01T00:01:00Z",
                  completedAt="2026-01-01T00:02:00Z", admittedAt="2026-01-01T00:00:30Z")
        .job()
    )  # fmt: skip
    public = JobPublic.of(job, at=AT).model_dump()
    row = asdict(row_of(job))
    for field in JobRow.model_fields:
        assert public[field] == row[RENAMED.get(field, field)], field
    assert (public["error"], public["submitted_by"], public["cancelled_by"]) == (
        "Cancelled by user", "alice", "bob")  # fmt: skip
