"""GET /usage's sums (shunter.api.usage), /shares' lines (shunter.api.shares) and the
usage metrics (shunter.api.metrics.UsageMeter), on rows and jobs built here."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from shunter.api.errors import InvalidRequest
from shunter.api.metrics import Metrics, UsageMeter
from shunter.api.shares import QueueFairness, queue_shares
from shunter.api.usage import MAX_BUCKETS, Window, allocated_by_queue, percentile, summarize
from shunter.domain.model import Attempt
from tests.support.builders import a_training_job

DAY0 = datetime(2026, 3, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return DAY0 + timedelta(hours=hours)


def a_row(**fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "namespace": "team-a", "queue": "research", "user": "alice", "gpus": 2,
        "queued_at": at(0), "admitted_at": at(1), "running_at": at(1), "started_at": at(1),
        "finished_at": at(3), "lost_seconds": 0.0, "reason": "Completed",
    }  # fmt: skip
    row.update(fields)
    return row


def report(rows: list[dict[str, Any]], *, by: str = "namespace", step: str = "day",
           since: datetime = DAY0, until: datetime = DAY0 + timedelta(days=3)):  # fmt: skip
    window = Window.of(since=since, until=until, step=step, now=until)
    return summarize(rows, by=by, window=window, namespace="*", gaps={"missing": 0, "jobs": 0},
                     step=step)  # fmt: skip


def test_a_run_across_midnight_counts_in_both_days_and_ends_in_the_second():
    run = a_row(admitted_at=at(22), running_at=at(23), finished_at=at(26), lost_seconds=1800.0,
                reason="Preempted")  # fmt: skip
    found = report([run])
    assert found.buckets == [DAY0, at(24), at(48)]
    (group,) = found.groups
    assert group.allocated_gpu_hours == [4.0, 4.0, 0.0]  # 2 GPUs x (2 h + 2 h)
    assert group.run_gpu_hours == [2.0, 4.0, 0.0]
    assert group.lost_gpu_hours == [0.0, 1.0, 0.0]  # 2 GPUs x 30 min, where it ended
    assert group.attempts == [0, 1, 0]
    assert group.outcomes["preempted"].attempts == 1
    assert group.total_allocated_gpu_hours == 8.0


def test_hourly_buckets_and_the_window_clip_what_is_counted():
    found = report([a_row(admitted_at=at(1.5), finished_at=at(4))], step="hour",
                   since=at(2), until=at(3))  # fmt: skip
    assert found.buckets == [at(2)]
    assert found.groups[0].allocated_gpu_hours == [2.0]
    assert found.groups[0].attempts == [0]  # it ended after the window


def test_groups_by_user_queue_and_namespace_biggest_first():
    rows = [a_row(), a_row(user=None, queue="batch", namespace="team-b", gpus=8)]
    assert [g.key for g in report(rows, by="user").groups] == ["(unknown)", "alice"]
    assert [g.key for g in report(rows, by="queue").groups] == ["batch", "research"]
    assert [g.key for g in report(rows).groups] == ["team-b", "team-a"]


def test_waits_are_a_histogram_and_percentiles_of_the_runs_admitted_in_the_window():
    rows = [a_row(queued_at=at(1) - timedelta(seconds=s)) for s in (5, 30, 30, 7200)]
    rows.append(a_row(queued_at=None))  # unknown wait: not counted
    group = report(rows).groups[0]
    assert group.wait_histogram == [1, 2, 0, 0, 0, 1, 0, 0, 0]
    assert (group.wait_seconds_p50, group.wait_seconds_max) == (30.0, 7200.0)
    assert percentile([], 0.5) is None
    assert percentile([1.0, 2.0, 3.0, 4.0], 0.9) == 4.0


def test_a_run_mirrored_before_the_accounting_counts_from_its_start():
    old = a_row(admitted_at=None, running_at=None, queued_at=None, started_at=at(1))
    group = report([old]).groups[0]
    assert group.total_allocated_gpu_hours == group.total_run_gpu_hours == 4.0


def test_a_window_must_be_ordered_zoned_and_not_too_fine():
    with pytest.raises(InvalidRequest):
        Window.of(since=at(2), until=at(1), step="hour", now=at(3))
    with pytest.raises(InvalidRequest):
        Window.of(since=datetime(2026, 1, 1), until=None, step="hour", now=at(3))
    with pytest.raises(InvalidRequest, match=str(MAX_BUCKETS)):
        Window.of(since=at(0) - timedelta(days=365), until=at(0), step="hour", now=at(0))
    week = Window.of(since=None, until=None, step="day", now=at(0))
    assert (week.since, week.until) == (at(0) - timedelta(days=7), at(0))


@pytest.mark.parametrize(
    ("since", "until"),
    [
        (None, datetime(1, 1, 1, tzinfo=UTC)),  # its default start is before year 1
        (datetime(1, 1, 1, tzinfo=UTC), None),
        (None, datetime(9999, 12, 31, 23, tzinfo=UTC)),  # its last bucket is past 9999
        (datetime(1969, 12, 31, tzinfo=UTC), datetime(1970, 1, 2, tzinfo=UTC)),
    ],
)
def test_a_window_outside_what_a_date_holds_is_refused_with_its_bounds(
    since: datetime | None, until: datetime | None
):
    with pytest.raises(InvalidRequest, match="between 1970-01-01 and 9000-01-01"):
        Window.of(since=since, until=until, step="day", now=at(0))


def test_allocated_by_queue_sums_the_window_per_queue_and_namespace():
    rows = [a_row(), a_row(namespace="team-b"), a_row(admitted_at=at(-10), finished_at=at(-9))]
    assert allocated_by_queue(rows, since=at(0), until=at(24)) == {
        ("research", "team-a"): 4.0, ("research", "team-b"): 4.0}  # fmt: skip


# -- /shares ----------------------------------------------------------------------


def a_queue(name: str, **spec: Any) -> dict[str, Any]:
    status = spec.pop("status", None)
    body: dict[str, Any] = {"metadata": {"name": name}, "spec": spec}
    if status is not None:
        body["status"] = status
    return body


def test_a_queue_without_fair_sharing_has_weight_one_and_nothing_reported():
    plain = QueueFairness.parse(a_queue("plain"))
    assert (plain.weight, plain.fair_sharing, plain.weighted_share) == (1.0, False, None)


def test_fair_sharing_fields_are_read_where_they_are_and_bad_values_ignored():
    queue = QueueFairness.parse(a_queue(
        "a", cohort="c", fairSharing={"weight": 2},
        status={"fairSharing": {"weightedShare": 0.25, "decayedUsage": "3600", "share": "x",
                                "namespaces": [{"namespace": "team-a", "decayedUsage": 10},
                                               {"decayedUsage": 3}]}},
    ))  # fmt: skip
    assert (queue.weight, queue.weighted_share, queue.decayed_usage, queue.share) == (
        2.0, 0.25, 3600.0, None)  # fmt: skip
    assert queue.namespaces == (("team-a", 10.0),)
    flat = QueueFairness.parse(a_queue("b", status={"decayedUsage": 5, "namespaces": {"x": 1}}))
    assert (flat.decayed_usage, flat.namespaces) == (5.0, (("x", 1.0),))


def test_the_operators_usage_ledger_gives_the_decayed_usage_per_namespace():
    """status.usage as the admission fair sharing writes it (shunter.domain.fairshare)."""
    ledger = {"decayedAt": "2026-03-01T00:00:00Z", "namespaces": {
        "team-a": {"gpuSeconds": 7200.0, "users": {"alice": 7200.0}},
        "team-b": {"gpuSeconds": 1800.0, "users": {}}}}  # fmt: skip
    queue = QueueFairness.parse(a_queue("q", status={"usage": ledger}))
    assert queue.namespaces == (("team-a", 7200.0), ("team-b", 1800.0))
    assert queue.decayed_usage == 9000.0


def test_shares_normalize_weights_in_a_cohort_and_show_only_the_visible_namespaces():
    queues = [
        QueueFairness.parse(a_queue("a", cohort="c", fairSharing={"weight": 2},
                                    status={"namespaces": {"team-a": 7, "team-b": 9}})),
        QueueFairness.parse(a_queue("b", cohort="c", fairSharing={"weight": 1})),
        QueueFairness.parse(a_queue("solo")),
    ]  # fmt: skip
    running = a_training_job("r", "team-a").with_gpus(4).with_spec(queue="a")
    other = a_training_job("o", "team-b").with_gpus(8).with_spec(queue="a")
    jobs = [running.in_phase("running").job(), other.in_phase("running").job()]
    usage = {("a", "team-a"): 3.0, ("a", "team-b"): 5.0}
    lines = {q.queue: q for q in queue_shares(queues, jobs=jobs, usage=usage, visible="team-a")}
    assert [lines[q].normalized_weight for q in ("a", "b", "solo")] == [0.6667, 0.3333, 1.0]
    a = lines["a"]
    assert (a.gpus, a.usage_gpu_hours, a.usage_share) == (4, 3.0, 1.0)  # b used nothing
    assert lines["b"].usage_share == 0.0
    assert [(n.namespace, n.decayed_usage, n.usage_gpu_hours) for n in a.namespaces] == [
        ("team-a", 7.0, 3.0)]  # fmt: skip
    everyone = {q.queue: q for q in queue_shares(queues, jobs=jobs, usage=None, visible=None)}
    assert (everyone["a"].gpus, everyone["a"].usage_gpu_hours) == (12, None)
    assert [n.namespace for n in everyone["a"].namespaces] == ["team-a", "team-b"]


# -- metrics ----------------------------------------------------------------------


def finished_run(number: int, *, hours: float = 1.0, reason: str = "Preempted") -> dict[str, Any]:
    run = Attempt(number, 143, reason, started_at=at(0), finished_at=at(hours), queued_at=at(-1),
                  admitted_at=at(0), running_at=at(0), lost_seconds=600.0)  # fmt: skip
    return run.to_raw()


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_runs_already_ended_when_the_watch_lists_them_are_not_counted_again():
    registry = CollectorRegistry()
    meter = UsageMeter(registry)
    live = False
    meter.live = lambda: live
    builder = a_training_job("j", "team-a").with_gpus(2).with_spec(queue="research")
    meter.seen("ADDED", builder.in_phase("queued", attempts=1, history=[finished_run(1)]).job())
    live = True
    labels = {"queue": "research", "namespace": "team-a", "outcome": "preempted"}
    assert sample(registry, "shunter_gpu_seconds_total", **labels) is None
    two = [finished_run(1), finished_run(2, hours=2)]
    job = builder.in_phase("queued", attempts=2, history=two).job()
    meter.seen("MODIFIED", job)
    meter.seen("MODIFIED", job)  # the same state again: counted once
    assert sample(registry, "shunter_gpu_seconds_total", **labels) == 2 * 2 * 3600
    assert sample(registry, "shunter_gpu_seconds_lost_total", **labels) == 2 * 600
    assert sample(registry, "shunter_queue_wait_seconds_count", queue="research") == 1
    assert sample(registry, "shunter_queue_wait_seconds_bucket", queue="research",
                  le="3600.0") == 1  # fmt: skip


def test_the_weighted_share_metric_reads_the_shares_at_each_scrape():
    metrics = Metrics()
    shares = {"a": 0.5}
    metrics.watch_shares(lambda: shares)
    assert b'shunter_queue_weighted_share{queue="a"} 0.5' in generate_latest(metrics.registry)
    shares["b"] = 1.5
    assert b'shunter_queue_weighted_share{queue="b"} 1.5' in generate_latest(metrics.registry)


def test_the_weighted_share_of_a_queue_whose_status_reports_none_comes_from_its_jobs():
    """The operator writes no weighted share to a queue's status: the metric and
    /shares take the operator's rule over the jobs holding GPUs (the metric read the
    status alone, and was always empty)."""
    from shunter.api.shares import current_weighted_shares
    from shunter.domain.queues import QueueView

    bodies = [a_queue("a", gpuQuota=0, cohort="c", fairSharing={"weight": 2}),
              a_queue("b", gpuQuota=4, cohort="c", status={"weightedShare": 0.25})]  # fmt: skip
    specs = {"a": QueueView("a", gpu_quota=0, cohort="c", weight=2.0),
             "b": QueueView("b", gpu_quota=4, cohort="c", weight=1.0)}  # fmt: skip
    jobs = [
        a_training_job("a1").with_gpus(3).with_spec(queue="a").in_phase("running").job(),
        a_training_job("a2").with_gpus(8).with_spec(queue="a").in_phase("queued").job(),
        a_training_job("b1").with_gpus(4).with_spec(queue="b").in_phase("running").job(),
    ]
    queues = [QueueFairness.parse(body) for body in bodies]
    # a: 3 GPUs held above a quota of 0, weight 2 -> 1.5; b's status says 0.25 (its
    # jobs alone would give 0: it holds its quota and no more).
    assert current_weighted_shares(queues, specs, jobs) == {"a": 1.5, "b": 0.25}
    metrics = Metrics()
    metrics.watch_shares(lambda: current_weighted_shares(queues, specs, jobs))
    scraped = generate_latest(metrics.registry)
    assert b'shunter_queue_weighted_share{queue="a"} 1.5' in scraped
    assert b'shunter_queue_weighted_share{queue="b"} 0.25' in scraped


def test_the_weighted_share_is_the_operators_rule_over_the_jobs_holding_gpus():
    from shunter.api.shares import weighted_shares
    from shunter.domain.queues import QueueView
    from tests.support.builders import a_training_job

    specs = {
        "a": QueueView("a", gpu_quota=8, cohort="c", weight=2.0),
        "b": QueueView("b", gpu_quota=8, cohort="c", weight=0.0),
    }
    jobs = [
        a_training_job("a1").with_gpus(8).with_spec(queue="a").in_phase("running").job(),
        a_training_job("a2").with_gpus(4).with_spec(queue="a").in_phase("running").job(),
        a_training_job("a3").with_gpus(8).with_spec(queue="a").in_phase("queued").job(),
        a_training_job("b1").with_gpus(9).with_spec(queue="b").in_phase("running").job(),
    ]
    # a: 12 held, 4 above its quota, weight 2 -> 2.0; b borrows with weight 0: no
    # finite share, left out (the queue's line shows none).
    assert weighted_shares(specs, jobs) == {"a": 2.0}
