"""Time slicing (TrainingQueue timeSliceSeconds), driven through the operator's real
passes (planning.plan_pass) in virtual time: jobs of equal priority share a queue
round-robin and none starves; the anti-loop rules still hold; a job of lower
priority never takes a slice from a higher one."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shunter.domain.admission import Limits
from shunter.domain.model import Job, JobKey, Phase, PodView, format_time
from shunter.domain.queues import QueueView
from shunter.operator.book import JobBook
from shunter.operator.planning import plan_pass
from shunter.operator.preemption import slice_end
from shunter.operator.rules import Rules
from tests.support.builders import a_node, a_training_job

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=20)


class World:
    """The book, as the watch would show it after each pass's writes: Pods created
    run at once, Pods deleted are gone at once (their trainer exits on SIGTERM)."""

    def __init__(self, jobs: list[Job], *, slice_seconds: int, rules: Rules) -> None:
        queue = QueueView("q", time_slice=slice_seconds)
        self.book = JobBook.of(jobs, nodes=[a_node("n0", gpus=8)], queues=[queue])
        self.rules = rules
        self.version = 1000
        self.ran: dict[str, list[datetime]] = {j.key.name: [] for j in jobs}

    def step(self, now: datetime) -> None:
        result = plan_pass(self.book, now=now, rules=self.rules)
        for key, decision in result.decisions.items():
            job = self.book.jobs[key]
            self.version += 1
            self.book.put_job(replace(job, status=decision.status,
                                      resource_version=str(self.version)))  # fmt: skip
            for delete in decision.delete_pods:
                for pod in list(self.book.pods.get(key, {}).values()):
                    if pod.name == delete.name:
                        self.book.remove_pod(pod)
            for manifest in decision.create_pods:
                self.book.put_pod(self._running(manifest, now))
        for key, job in self.book.jobs.items():
            if job.phase is Phase.RUNNING:
                self.ran[key.name].append(now)

    @staticmethod
    def _running(manifest: dict, now: datetime) -> PodView:
        body = {**manifest, "metadata": {**manifest["metadata"], "uid": manifest["metadata"]
                                         ["name"] + format_time(now)},
                "status": {"phase": "Running", "containerStatuses": [
                    {"state": {"running": {"startedAt": format_time(now)}}}]}}  # fmt: skip
        body["spec"] = {**manifest["spec"], "nodeName": "n0"}
        return PodView.parse(body)


def equal_jobs(count: int, *, gpus: int = 8) -> list[Job]:
    return [a_training_job(f"j{i}").with_gpus(gpus).with_spec(queue="q")
            .created_at(T0 + timedelta(seconds=i)).job() for i in range(count)]  # fmt: skip


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 5), st.sampled_from([60, 300, 900]))
def test_equal_jobs_share_the_queue_round_robin_and_none_starves(count: int, slice_s: int):
    rules = Rules(limits=Limits(max_running=4), min_run=timedelta(seconds=30))
    world = World(equal_jobs(count), slice_seconds=slice_s, rules=rules)
    rounds = 3
    horizon = T0 + timedelta(seconds=rounds * count * (slice_s + 120))
    now = T0
    while now < horizon:
        world.step(now)
        now += STEP
    # Every job ran, in every round: no job waits much longer than the others' slices.
    longest_wait = timedelta(seconds=(count - 1) * (slice_s + 120) + 120)
    for name, times in world.ran.items():
        assert times, f"{name} never ran"
        assert times[0] - T0 <= longest_wait, f"{name} waited {times[0] - T0}"
        gaps = [b - a for a, b in itertools.pairwise(times)]
        assert max(gaps, default=timedelta(0)) <= longest_wait + STEP, (name, max(gaps))
    # Round-robin: the shares of running time are within a slice of each other.
    shares = sorted(len(t) * STEP.total_seconds() for t in world.ran.values())
    assert shares[-1] - shares[0] <= slice_s + 240


def test_the_anti_loop_rules_still_hold():
    # Preempted (or time-sliced) three times in the window: protected until it has
    # run min_run since it last started, even past its slice.
    rules = Rules(limits=Limits(max_running=4), min_run=timedelta(seconds=3600))
    ago = [format_time(T0 - timedelta(minutes=i)) for i in (1, 2, 3)]
    recent = [{"attempt": i, "reason": "TimeSliced", "exitCode": 75, "finishedAt": at}
              for i, at in enumerate(ago, 1)]  # fmt: skip
    busy = (a_training_job("busy").with_gpus(8).with_spec(queue="q")
            .in_phase("running", placement=["n0"], attempts=4, history=recent,
                      runningSince=format_time(T0 - timedelta(seconds=900))).job())  # fmt: skip
    waiting = a_training_job("w").with_gpus(8).with_spec(queue="q").created_at(T0).job()
    world = World([busy, waiting], slice_seconds=60, rules=rules)
    labels = {"shunter.dev/job-name": "busy", "shunter.dev/job-uid": busy.uid,
              "shunter.dev/pod-index": "0", "shunter.dev/attempt": "4"}  # fmt: skip
    meta = {"name": "busy-trainer", "namespace": "default", "labels": labels}
    world.book.put_pod(World._running({"metadata": meta, "spec": {}}, T0))
    world.step(T0)
    assert world.book.jobs[JobKey("default", "busy")].phase is Phase.RUNNING
    # The pass asks to look again when the protection ends (it has run min_run), not
    # never: with nothing else happening, the waiting job would wait for busy's end.
    result = plan_pass(world.book, now=T0, rules=rules)
    assert result.wake_at[waiting.key] == T0 - timedelta(seconds=900) + rules.min_run


def test_a_lower_priority_job_takes_no_slice():
    rules = Rules(limits=Limits(max_running=4))
    high = a_training_job("high").with_gpus(8).with_priority(5).with_spec(queue="q").job()
    low = (a_training_job("low").with_gpus(8).with_spec(queue="q")
           .created_at(T0 + timedelta(seconds=1)).job())  # fmt: skip
    world = World([high, low], slice_seconds=60, rules=rules)
    now = T0
    while now < T0 + timedelta(hours=1):
        world.step(now)
        now += STEP
    assert not world.ran["low"]
    assert len(world.ran["high"]) >= 170


def test_a_trainer_that_cannot_checkpoint_on_a_stop_yields_at_its_next_checkpoint():
    since = T0 - timedelta(seconds=1000)

    def running(**checkpoint) -> Job:
        status = {"attempts": 1, "runningSince": format_time(since)}
        if checkpoint:
            status["checkpoint"] = {"step": 5, "attempt": 1, **checkpoint}
        return a_training_job("j").in_phase("running", **status).job()

    end = since + timedelta(seconds=600)
    assert slice_end(running(), 600) == end  # reports nothing: SIGTERM at the end
    assert slice_end(running(time=format_time(end), onStop=True), 600) == end
    before = running(time=format_time(end - timedelta(seconds=5)), onStop=False)
    assert slice_end(before, 600) == end + timedelta(seconds=600)  # waits for one
    after = end + timedelta(seconds=90)
    assert slice_end(running(time=format_time(after), onStop=False), 600) == after
