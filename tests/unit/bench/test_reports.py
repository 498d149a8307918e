"""The report bench's pure parts (bench/reports.py): the trainers' schedule and what
they post, and the kube-apiserver's counters it subtracts."""

from __future__ import annotations

import itertools
import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from bench.reports import (
    CHECKPOINT_EVERY,
    apiserver_requests,
    audited_writes,
    count,
    has_checkpoint,
    report_body,
    report_fields_only,
    requests_between,
    schedule,
)

from shunter.domain.reports import Report


def test_each_job_reports_every_period_and_the_jobs_are_spread_evenly() -> None:
    plan = schedule(1000, 10.0, 30.0)
    assert len(plan) == 3000  # 100 a second
    gaps = {round(b.at - a.at, 9) for a, b in itertools.pairwise(plan)}
    assert gaps == {0.01}
    times: dict[int, list[float]] = defaultdict(list)
    for send in plan:
        assert send.number == len(times[send.job])
        times[send.job].append(send.at)
    assert len(times) == 1000
    for job, at in times.items():
        assert at[0] == pytest.approx(job * 0.01)
        assert [round(b - a, 9) for a, b in itertools.pairwise(at)] == [10.0, 10.0]


def test_jobs_spread_over_a_longer_time_start_later_and_then_report_every_period() -> None:
    plan = schedule(100, 10.0, 60.0, spread=40.0)
    assert [s.at for s in plan] == sorted(s.at for s in plan)
    first = {s.job: s.at for s in reversed(plan)}
    assert first == pytest.approx({job: job * 0.4 for job in range(100)})
    assert sum(40.0 <= s.at < 50.0 for s in plan) == 100  # all started: 10 a second
    assert sum(s.at < 10.0 for s in plan) == 25


def test_one_report_in_thirty_carries_a_checkpoint_and_no_round_carries_them_all() -> None:
    plan = schedule(1000, 10.0, 10.0 * CHECKPOINT_EVERY)
    assert sum(map(has_checkpoint, plan)) == len(plan) // CHECKPOINT_EVERY
    per_job = Counter(s.job for s in plan if has_checkpoint(s))
    assert set(per_job.values()) == {1}
    assert len(per_job) == 1000
    per_round = Counter(s.number for s in plan if has_checkpoint(s))
    assert max(per_round.values()) <= 1000 // CHECKPOINT_EVERY + 1


def test_a_jobs_reports_are_valid_the_step_grows_and_the_loss_falls() -> None:
    start = datetime(2026, 12, 1, tzinfo=UTC)
    plan = [s for s in schedule(5, 10.0, 10.0 * CHECKPOINT_EVERY) if s.job == 3]
    reports = [
        Report.parse(
            report_body(s, job_uid="uid-3", attempt=2, now=start + timedelta(seconds=s.at))
        )
        for s in plan
    ]
    assert all(r.job_uid == "uid-3" and r.attempt == 2 and r.rank == 0 for r in reports)
    steps = [r.step for r in reports]
    assert steps == sorted(set(steps))
    losses = [r.loss for r in reports]
    assert losses == sorted(losses, key=lambda x: -(x or 0))
    checkpoints = [r.checkpoint for r in reports if r.checkpoint is not None]
    assert [c.step for c in checkpoints] == [r.step for r in reports if r.checkpoint]
    assert len(checkpoints) == 1


def line(verb: str, group: str, resource: str, subresource: str, code: int, value: int) -> str:
    return (
        f'apiserver_request_total{{code="{code}",component="apiserver",dry_run="",'
        f'group="{group}",resource="{resource}",scope="resource",subresource="{subresource}",'
        f'verb="{verb}",version="v1"}} {value}'
    )


def metrics(reviews: int, patches: int, conflicts: int) -> str:
    return "\n".join((
        "# HELP apiserver_request_total [STABLE] Counter of apiserver requests",
        "# TYPE apiserver_request_total counter",
        line("POST", "authentication.k8s.io", "tokenreviews", "", 201, reviews),
        line("PATCH", "shunter.dev", "trainingjobs", "status", 200, patches),
        line("PATCH", "shunter.dev", "trainingjobs", "status", 409, conflicts),
        line("GET", "", "pods", "", 200, 5),
        "# HELP apiserver_request_duration_seconds [STABLE] Response latency",
        "# TYPE apiserver_request_duration_seconds histogram",
        'apiserver_request_duration_seconds_bucket{verb="GET",le="0.1"} 9',
    )) + "\n"  # fmt: skip


def test_the_apiserver_requests_made_between_two_readings() -> None:
    before = apiserver_requests(metrics(10, 100, 1))
    after = apiserver_requests(metrics(42, 160, 4))
    made = requests_between(before, after)
    assert count(made, "POST", "tokenreviews") == 32
    assert count(made, "PATCH", "trainingjobs", "status") == 63
    assert count(made, "PATCH", "trainingjobs", "status", "409") == 3
    assert count(made, "GET", "pods") == 0  # unchanged: not in the difference


def test_a_status_change_of_only_progress_or_checkpoint_is_the_report_channels() -> None:
    running = {"phase": "running", "attempts": 1}
    reported = {**running, "progress": {"step": 100}}
    assert report_fields_only(running, reported) is True
    assert report_fields_only(reported, {**reported, "checkpoint": {"step": 100}}) is True
    assert report_fields_only(reported, {**reported, "phase": "stopping"}) is False
    assert report_fields_only(reported, dict(reported)) is None


def audit(verb: str, resource: str, subresource: str, agent: str, code: int) -> str:
    ref = {"resource": resource, "subresource": subresource, "namespace": "bench", "name": "r1"}
    stamp = "2026-12-06T10:02:27.785986Z"
    return json.dumps({"kind": "Event", "stage": "ResponseComplete", "verb": verb,
                       "userAgent": agent, "objectRef": ref, "responseStatus": {"code": code},
                       "requestReceivedTimestamp": stamp, "stageTimestamp": stamp})  # fmt: skip


def test_audited_writes_are_told_apart_by_who_made_them() -> None:
    lines = [
        audit("patch", "trainingjobs", "status", "Python/3.11 aiohttp/3.14.5", 200),
        audit("patch", "trainingjobs", "status", "Python/3.11 aiohttp/3.14.5", 200),
        audit("patch", "trainingjobs", "status", "shunter-operator/bench", 409),
        audit("create", "pods", "", "shunter-operator/bench", 201),
        audit("update", "leases", "", "kube-scheduler/v1.34.1 (linux/amd64)", 200),
        '{"kind": "Event", "verb": "pat',  # cut by the reading's offset
    ]
    assert audited_writes(lines) == {
        "trainingjobs/status patch api 200": 2,
        "trainingjobs/status patch operator 409": 1,
        "pods create operator 201": 1,
        "leases update kube-scheduler 200": 1,
    }
