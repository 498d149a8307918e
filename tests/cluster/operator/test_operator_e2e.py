"""The acceptance guide's scenarios, driven through TrainingJob CRs on a real cluster.

Each test starts the real operator (a subprocess) for its own namespace, creates and
patches TrainingJobs as kubectl does, and checks the CR status, the Pods present,
the Events, the operator's log and the PostgreSQL mirror row.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kubernetes.client.exceptions import ApiException

from tests.support.builders import a_training_job
from tests.support.operator import Jobs, OperatorProcess, mirror_row
from tests.support.polling import wait_for

Start = Callable[..., OperatorProcess]


def assert_cancelled_row(database_url: str, uid: str) -> None:
    def row_cancelled() -> dict[str, object] | None:
        row = mirror_row(database_url, uid)
        return row if row and row["status"] == "cancelled" else None

    row = wait_for(row_cancelled, timeout=30, what="the mirror row to say cancelled")
    assert row["error"] == "Cancelled by user"
    assert row["completed_at"] is not None


def test_cancel_queued_job(jobs: Jobs, start_operator: Start, database_url: str):
    start_operator()
    first = jobs.create(a_training_job("first"))
    second = jobs.create(a_training_job("second"))
    jobs.wait_phase("first", "running")
    queued = jobs.wait_phase("second", "queued")
    assert queued["status"]["queuePosition"] == 1

    jobs.cancel("second")

    status = jobs.wait_phase("second", "cancelled")["status"]
    assert status["message"] == "Cancelled by user"
    assert status["completedAt"]
    assert "queuePosition" not in status
    assert status["termination"]["outcome"] == "never-started"
    assert jobs.pod_names() == ["first-trainer"]
    assert jobs.phase("first") == "running"
    jobs.wait_event("second", "Cancelled")
    assert_cancelled_row(database_url, second["metadata"]["uid"])
    assert mirror_row(database_url, first["metadata"]["uid"])["status"] == "running"


def test_cancel_running_job_gracefully(jobs: Jobs, start_operator: Start, database_url: str):
    operator = start_operator()
    job = jobs.create(a_training_job("run").with_grace(20))
    jobs.wait_phase("run", "running")
    assert jobs.pod_names() == ["run-trainer"]

    jobs.cancel("run")

    status = jobs.wait_phase("run", "cancelled")["status"]
    assert status["message"] == "Cancelled by user"
    assert status["termination"]["outcome"] == "graceful"
    assert jobs.pod_names() == []
    log = operator.log()
    assert (
        "[Terminate] Attempting graceful termination of pod " + jobs.namespace + "/run-trainer"
        in log
    )
    assert f"[Terminate] Pod {jobs.namespace}/run-trainer terminated gracefully" in log
    assert "forcing deletion" not in log
    reasons = jobs.wait_event("run", "Cancelled")
    assert reasons.index("Terminating") < reasons.index("Cancelled")
    assert_cancelled_row(database_url, job["metadata"]["uid"])


def test_cancel_running_job_whose_pod_hangs_is_forced(
    jobs: Jobs, start_operator: Start, database_url: str
):
    operator = start_operator()
    job = jobs.create(a_training_job("stuck").with_grace(2).hanging_on_delete())
    jobs.wait_phase("stuck", "running")

    jobs.cancel("stuck")

    cancelling = jobs.wait_phase("stuck", "cancelling")["status"]
    assert cancelling["termination"]["step"] in ("graceful", "forced")
    status = jobs.wait_phase("stuck", "cancelled", timeout=60)["status"]
    assert status["termination"]["outcome"] == "forced"
    assert status["termination"]["forceDeleteAt"] >= status["termination"]["gracefulDeleteAt"]
    assert jobs.pod_names() == []
    log = operator.log()
    ref = f"{jobs.namespace}/stuck-trainer"
    assert f"[Terminate] Attempting graceful termination of pod {ref}" in log
    assert f"[Terminate] Pod {ref} did not terminate gracefully, forcing deletion" in log
    assert f"[Terminate] Pod {ref} force deleted" in log
    jobs.wait_event("stuck", "ForceDeleting")
    assert_cancelled_row(database_url, job["metadata"]["uid"])


def test_cancel_completed_job_is_refused_and_changes_nothing(jobs: Jobs, start_operator: Start):
    start_operator()
    jobs.create(a_training_job("quick").running_for("1s"))
    before = jobs.wait_phase("quick", "completed")

    with pytest.raises(ApiException) as refused:
        jobs.cancel("quick")

    assert refused.value.status == 422
    assert "the job already finished with phase completed" in refused.value.body
    after = jobs.get("quick")
    assert after["status"] == before["status"]
    assert after["spec"]["cancelled"] is False


def test_cancelling_twice_is_harmless(jobs: Jobs, start_operator: Start):
    start_operator()
    jobs.create(a_training_job("twice"))
    jobs.wait_phase("twice", "running")

    jobs.cancel("twice")
    jobs.cancel("twice")
    status = jobs.wait_phase("twice", "cancelled")["status"]
    jobs.cancel("twice")  # a no-op patch on a cancelled job is accepted and changes nothing

    assert jobs.get("twice")["status"] == status
    assert jobs.wait_event("twice", "Cancelled").count("Cancelled") == 1


def test_queue_continues_after_cancelling_the_running_job(jobs: Jobs, start_operator: Start):
    start_operator()
    for name in ("job-a", "job-b", "job-c"):
        jobs.create(a_training_job(name))
    jobs.wait_phase("job-a", "running")
    assert jobs.wait_phase("job-b", "queued")["status"]["queuePosition"] == 1
    assert jobs.wait_phase("job-c", "queued")["status"]["queuePosition"] == 2

    jobs.cancel("job-a")

    jobs.wait_phase("job-a", "cancelled")
    jobs.wait_phase("job-b", "running", timeout=10)  # the guide: "wait 10 seconds"
    wait_for(
        lambda: jobs.get("job-c")["status"].get("queuePosition") == 1,
        timeout=10,
        what="job-c to move to position 1",
    )
    assert jobs.phase("job-c") == "queued"
    assert jobs.pod_names() == ["job-b-trainer"]


def test_ten_rapid_submit_and_cancel_cycles(jobs: Jobs, start_operator: Start):
    start_operator()
    names = [f"rapid-{i}" for i in range(10)]
    for name in names:
        jobs.create(a_training_job(name))
        jobs.cancel(name)

    for name in names:
        jobs.wait_phase(name, "cancelled")
    wait_for(lambda: jobs.pod_names() == [], timeout=30, what="every pod to be gone")

    # The queue still works afterwards.
    jobs.create(a_training_job("after"))
    jobs.wait_phase("after", "running")


def test_failed_pod_fails_the_job_and_the_next_starts(jobs: Jobs, start_operator: Start):
    start_operator()
    jobs.create(a_training_job("bad").failing_after("1s"))
    jobs.create(a_training_job("next"))

    status = jobs.wait_phase("bad", "failed")["status"]
    assert status["exitCode"] == 1
    assert "Trainer exited with code 1" in status["message"]
    jobs.wait_phase("next", "running")


def test_pod_deleted_behind_the_operators_back_fails_the_job(jobs: Jobs, start_operator: Start):
    start_operator()
    jobs.create(a_training_job("victim"))
    jobs.wait_phase("victim", "running")

    jobs.core.delete_namespaced_pod("victim-trainer", jobs.namespace)

    status = jobs.wait_phase("victim", "failed")["status"]
    assert status["reason"] == "PodVanished"
    assert "victim-trainer disappeared" in status["message"]


def test_operator_killed_during_forced_termination_resumes_it(jobs: Jobs, start_operator: Start):
    operator = start_operator()
    jobs.create(a_training_job("resume").with_grace(5).hanging_on_delete())
    jobs.wait_phase("resume", "running")
    jobs.cancel("resume")
    jobs.wait_phase("resume", "cancelling")

    operator.kill()
    assert jobs.phase("resume") == "cancelling"  # nobody finishes it while the operator is down
    operator.start()

    status = jobs.wait_phase("resume", "cancelled", timeout=60)["status"]
    assert status["termination"]["outcome"] == "forced"
    assert jobs.pod_names() == []
    resumed_log = operator.log_since_start()
    assert "did not terminate gracefully, forcing deletion" in resumed_log
    assert "Attempting graceful termination" not in resumed_log  # not started over


def test_priority_jumps_the_queue(jobs: Jobs, start_operator: Start):
    start_operator()
    jobs.create(a_training_job("running"))
    jobs.wait_phase("running", "running")
    jobs.create(a_training_job("low"))
    jobs.create(a_training_job("urgent").with_priority(100))
    wait_for(
        lambda: (
            jobs.get("urgent").get("status", {}).get("queuePosition") == 1
            and jobs.get("low").get("status", {}).get("queuePosition") == 2
        ),
        timeout=30,
        what="urgent ahead of low",
    )
    jobs.cancel("running")
    jobs.wait_phase("urgent", "running")
    assert jobs.phase("low") == "queued"


def test_gpu_budget_limits_concurrent_jobs(jobs: Jobs, start_operator: Start):
    start_operator(SHUNTER_MAX_RUNNING="10", SHUNTER_GPU_BUDGET="8")
    for name in ("g1", "g2", "g3"):
        jobs.create(a_training_job(name).with_gpus(4))
    jobs.wait_phase("g1", "running")
    jobs.wait_phase("g2", "running")
    assert jobs.wait_phase("g3", "queued")["status"]["queuePosition"] == 1
    jobs.cancel("g1")
    jobs.wait_phase("g3", "running")
