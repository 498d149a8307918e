"""The generator of Kueue's scheduler-performance shape (bench/kueue_shape.py): the
counts, classes and arrival schedule of Kueue's configs, and their mapping to
TrainingQueues, Kueue's queues and the jobs of both systems."""

from __future__ import annotations

from collections import Counter

import pytest
from bench.kueue_shape import (
    SHAPES,
    PodRecord,
    PodWatch,
    Sample,
    UserProbe,
    arrivals,
    class_of,
    figures,
    kueue_job,
    kueue_manifests,
    nodes_for,
    scaled,
    shunter_job,
    shunter_queues,
)
from kubernetes import client

BASELINE = SHAPES["baseline"]


def test_the_baseline_is_kueues_5_cohorts_of_6_queues_and_15000_jobs() -> None:
    jobs = arrivals(BASELINE)
    assert len(jobs) == BASELINE.jobs() == 15_000
    per_queue = Counter((a.cohort, a.queue, a.job_class.name) for a in jobs)
    assert len({(c, q) for c, q, _ in per_queue}) == 30
    assert {n for (_, _, cls), n in per_queue.items() if cls == "small"} == {350}
    assert {n for (_, _, cls), n in per_queue.items() if cls == "medium"} == {100}
    assert {n for (_, _, cls), n in per_queue.items() if cls == "large"} == {50}
    classes = {c.name: (c.gpus, c.runtime_ms, c.priority, c.interval_ms) for c in BASELINE.classes}
    assert classes == {"small": (1, 200, 50, 100), "medium": (5, 500, 100, 500),
                       "large": (20, 1000, 200, 1200)}  # fmt: skip
    assert len({a.name for a in jobs}) == len(jobs)


def test_the_large_shapes_have_their_queue_and_job_counts() -> None:
    assert (SHAPES["large"].queue_count, SHAPES["large"].jobs()) == (1000, 50_000)
    assert (SHAPES["large-2000"].queue_count, SHAPES["large-2000"].jobs()) == (2000, 60_000)


def test_each_class_arrives_at_its_rate_and_names_sort_by_arrival() -> None:
    jobs = arrivals(BASELINE)
    one_queue = [a for a in jobs if (a.cohort, a.queue) == (2, 3)]
    for job_class in BASELINE.classes:
        offsets = [a.offset_ms for a in one_queue if a.job_class is job_class]
        assert offsets == [(j + 1) * job_class.interval_ms for j in range(job_class.count)]
    assert [a.name for a in jobs] == sorted(a.name for a in jobs)
    assert [a.offset_ms for a in jobs] == sorted(a.offset_ms for a in jobs)
    assert all(class_of(a.name, BASELINE) is a.job_class for a in jobs)


def test_scale_shrinks_the_jobs_per_queue_not_the_queues_or_rates() -> None:
    jobs = arrivals(BASELINE, 0.05)
    assert BASELINE.per_queue(0.05) == {"small": 18, "medium": 5, "large": 3}
    assert len(jobs) == 30 * (18 + 5 + 3)
    assert len({(a.cohort, a.queue) for a in jobs}) == 30
    large = sorted(a.offset_ms for a in jobs if (a.cohort, a.queue, a.job_class.name)
                   == (0, 0, "large"))  # fmt: skip
    assert large == [1200, 2400, 3600]
    assert scaled(1, 0.001) == 1


def test_shunter_queues_carry_quota_borrowing_cohort_and_preemption() -> None:
    queues = shunter_queues(BASELINE)
    assert len(queues) == 30
    cohorts = Counter(q["spec"]["cohort"] for q in queues)
    assert sorted(cohorts.values()) == [6] * 5
    spec = queues[7]["spec"]
    assert spec == {"cohort": spec["cohort"], "gpuQuota": 20, "borrowingLimit": 100,
                    "preemption": "lowerPriority",
                    "queueingStrategy": "BestEffortFIFO"}  # fmt: skip


def test_kueue_queues_and_priority_classes_match_the_config() -> None:
    manifests = kueue_manifests(BASELINE, "ns")
    kinds = Counter(m["kind"] for m in manifests)
    assert kinds == {"ResourceFlavor": 1, "WorkloadPriorityClass": 3, "ClusterQueue": 30,
                     "LocalQueue": 30}  # fmt: skip
    priorities = {m["metadata"]["name"]: m["value"] for m in manifests
                  if m["kind"] == "WorkloadPriorityClass"}  # fmt: skip
    assert priorities == {"ks-small": 50, "ks-medium": 100, "ks-large": 200}
    cq = next(m for m in manifests if m["kind"] == "ClusterQueue")
    quota = cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
    assert (quota["nominalQuota"], quota["borrowingLimit"]) == (20, 100)
    assert cq["spec"]["preemption"] == {"reclaimWithinCohort": "Any",
                                        "withinClusterQueue": "LowerPriority"}  # fmt: skip


def test_jobs_of_both_systems_carry_queue_priority_gpus_and_scaled_runtime() -> None:
    large = next(a for a in arrivals(BASELINE) if a.job_class.name == "large")
    shunter = shunter_job(large, 25)
    assert (shunter["spec"]["queue"], shunter["spec"]["priority"], shunter["spec"]["gpus"]) == (
        large.queue_name, 200, 20)  # fmt: skip
    assert shunter["spec"]["podMetadata"]["annotations"]["sim.shunter.dev/run-for"] == "25000ms"
    job = kueue_job(large, 1)
    assert job["spec"]["suspend"] is True
    assert job["metadata"]["labels"] == {"kueue.x-k8s.io/queue-name": large.queue_name,
                                         "kueue.x-k8s.io/priority-class": "ks-large"}  # fmt: skip
    template = job["spec"]["template"]
    assert template["metadata"]["annotations"]["sim.shunter.dev/run-for"] == "1000ms"
    assert template["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "20"


def test_nodes_leave_room_for_a_large_job_however_the_quota_is_placed() -> None:
    for shape in SHAPES.values():
        nodes = nodes_for(shape, 64)
        # Every node one GPU short of a large job still holds less than the quota.
        assert nodes * (64 - 20 + 1) > shape.total_quota
        assert nodes * 100 >= shape.total_quota


def test_figures_count_admission_usage_and_evictions_per_class() -> None:
    jobs = arrivals(BASELINE, 0.01)  # one job of each class per queue
    small = next(a for a in jobs if a.job_class.name == "small")
    large = next(a for a in jobs if a.job_class.name == "large")
    pods = [
        PodRecord(small.name, 1, added=12.0, running=12.5, ended=13.0),  # evicted
        PodRecord(
            small.name, 1, added=14.0, scheduled=14.1, running=14.5, ended=15.0, succeeded=True
        ),
        PodRecord(
            large.name, 20, added=11.0, scheduled=11.3, running=11.5, ended=13.0, succeeded=True
        ),
    ]
    done = {small.name: 15.0, large.name: 13.0}
    out = figures(BASELINE, jobs, pods, done, start=10.0, end=20.0, runtime_scale=1.0)
    assert out["wall_s"] == 10.0
    assert out["classes"]["small"]["avg_admission_s"] == 2.0  # its first Pod
    assert out["classes"]["small"]["evictions"] == 1
    assert out["classes"]["large"]["p99_admission_s"] == 1.0
    assert out["classes"]["medium"]["admitted"] == 0
    # GPU-seconds held: 1 + 1 + 20 x 2 over 600 GPUs x 10 s.
    assert out["usage_held"] == (1 + 1 + 40) / 6000
    assert out["usage_running"] == (0.5 + 0.5 + 30) / 6000
    # The floor split: bound by kube-scheduler, then Running by kwok (those seen bound).
    assert out["pod_created_to_bound_p50_p99_s"] == pytest.approx([0.1, 0.3], abs=0.05)
    assert out["pod_bound_to_running_p50_p99_s"] == pytest.approx([0.2, 0.4], abs=0.05)


def test_the_user_probe_cancels_the_latest_waiting_arrival_and_times_the_latest_finish():
    """A user's cancel goes to a job still waiting (the latest arrival not yet seen
    with a Pod); the finish looked at is the job whose Pod was seen done last. No
    client call is made: nothing is started."""
    jobs = arrivals(BASELINE, 0.01)
    watch = PodWatch(client.ApiClient(), "ns")
    latest, second, third = (a.name for a in jobs[::-1][:3])
    watch.jobs.add(latest)  # admitted already
    probe = UserProbe(client.ApiClient(), "ns", jobs, watch, every=1.0, start=0.0)
    assert probe._pick() == second
    assert probe._pick() == third
    probe.cancels += [Sample(second, 1.0, ended=2.5, phase="cancelled"), Sample(third, 2.0)]
    watch.done |= {jobs[0].name: 3.0, latest: 9.0}
    probe._finish()
    probe._finish()  # the same latest: looked at once
    assert [(f.job, f.at) for f in probe.finishes] == [(latest, 9.0)]
    assert probe.not_to_finish() == 1  # the one ended; the other's cancel is not done
    out = probe.figures()
    assert (out["cancel"]["count"], out["cancel"]["ended"], out["cancel"]["ended_max_s"]) == (
        2,
        1,
        2.5,
    )
    assert (out["finish"]["count"], out["finish"]["ended"]) == (1, 0)
