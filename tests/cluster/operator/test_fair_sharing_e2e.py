"""Fair sharing on the real control plane with kwok nodes: two teams of weights 2:1
saturate a cohort and the GPU-seconds of quota each held, measured from the jobs' own
statuses (admitted until finished), end within 5 % of 2:1; a queue's decayed usage is
written to its status and ordering by it survives an operator restart."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime

from kubernetes import client

from shunter.domain.model import GROUP, VERSION, Phase, parse_time
from tests.support.builders import a_training_job
from tests.support.nodes import NodePool
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for


def _queue(kube_api: client.ApiClient, name: str) -> dict:
    custom = client.CustomObjectsApi(kube_api)
    return custom.get_cluster_custom_object(GROUP, VERSION, "trainingqueues", name)


def _spans(status: dict) -> list[tuple[datetime, datetime | None]]:
    """When the job held its quota, from its own history: each attempt from its
    admission to its end (None: under way)."""
    spans = [(a.get("admittedAt"), a.get("finishedAt")) for a in status.get("history") or []]
    if Phase(status.get("phase") or "queued").holds_slot:  # the attempt under way
        spans.append((status.get("admittedAt"), None))
    return [(since, parse_time(until)) for admitted, until in spans
            if (since := parse_time(admitted)) is not None]  # fmt: skip


def _held(status: dict, start: datetime, end: datetime) -> float:
    """Seconds the job held its quota within [start, end]. Fair sharing divides quota;
    how long the Pods then take to bind and start on a loaded control plane is the
    scheduler's and the nodes', not the share's (team a's Pods start four at a time and
    lag more under load)."""
    return sum(max(0.0, (min(until or end, end) - max(since, start)).total_seconds())
               for since, until in _spans(status))  # fmt: skip


def _timeline(statuses: dict[str, list[dict]], start: datetime) -> str:
    """Each admission (+) and end (-) in seconds from `start`, with what each team held
    after it, and the jobs preempted: what a failure needs to be read."""
    moves = []
    for team, found in statuses.items():
        for i, status in enumerate(found):
            for since, until in _spans(status):
                moves.append(((since - start).total_seconds(), team, 1, f"{team}{i:02d}"))
                if until is not None:
                    moves.append(((until - start).total_seconds(), team, -1, f"{team}{i:02d}"))
    held = dict.fromkeys(statuses, 0)
    lines = []
    for at, team, step, name in sorted(moves):
        held[team] += step
        lines.append(f"{at:7.2f} {'+' if step > 0 else '-'}{name} {held}")
    preempted = [f"{t}{i:02d}" for t, found in statuses.items() for i, s in enumerate(found)
                 if s.get("preemptions")]  # fmt: skip
    return "\n".join(lines) + f"\npreempted: {preempted}"


def test_two_teams_of_weights_two_to_one_share_a_saturated_cohort_two_to_one(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess],
    queues: Callable[..., str],
):  # fmt: skip
    node_pool.add(1)
    cohort = f"c-{uuid.uuid4().hex[:6]}"
    queues(gpuQuota=6, cohort=cohort)  # lends its idle 6 GPUs; no jobs of its own
    teams = {
        "a": queues(gpuQuota=0, cohort=cohort, fairSharing={"weight": 2}),
        "b": queues(gpuQuota=0, cohort=cohort, fairSharing={"weight": 1}),
    }
    start_operator(SHUNTER_MAX_RUNNING="20")
    # Far more work than 6 GPUs do in the measured window: neither team runs dry.
    names = {"a": [f"a-{i:02d}" for i in range(60)], "b": [f"b-{i:02d}" for i in range(30)]}
    for i in range(60):
        for team, queue in teams.items():
            if i >= len(names[team]):
                continue
            jobs.create(a_training_job(names[team][i]).with_gpus(1)
                        .with_spec(queue=queue, nodeSelector=node_pool.selector)
                        .running_for("3s"))  # fmt: skip
    created = datetime.now().astimezone()

    # The jobs admitted while the others were still being created were decided without
    # them: a team with nothing queued yet leaves its share to the other (no preemption
    # here, as Kueue's default), and on a loaded machine that lasted a whole run (3:3
    # for 3.5 s). The window opens once every one of them has ended.
    def early_ended() -> bool:
        for n in (*names["a"], *names["b"]):
            status = jobs.status(n)
            admitted = parse_time(status.get("admittedAt"))
            if admitted is not None and admitted < created and not status.get("completedAt"):
                return False
        return True

    wait_for(early_ended, timeout=60, what="the jobs admitted during creation to end")
    start = datetime.now().astimezone()
    completed = sum(jobs.phase(n) == "completed" for n in names["b"])
    wait_for(lambda: sum(jobs.phase(n) == "completed" for n in names["b"]) >= completed + 12,
             timeout=90, what="team b to complete 12 more jobs")  # fmt: skip
    end = datetime.now().astimezone()
    # Neither team ran out of queued work in the window.
    for team in teams:
        assert any(jobs.phase(n) == "queued" for n in names[team]), team
    statuses = {team: [jobs.status(n) for n in names[team]] for team in teams}
    seconds = {team: sum(_held(s, start, end) for s in statuses[team]) for team in teams}
    ratio = seconds["a"] / seconds["b"]
    assert abs(ratio - 2.0) / 2.0 <= 0.05, f"{seconds} {ratio}\n" + _timeline(statuses, start)
    for team in teams:
        for name in names[team]:
            if jobs.phase(name) not in ("completed", "cancelled"):
                jobs.cancel_unless_finished(name)


def test_the_queue_usage_is_kept_in_its_status_and_orders_jobs_after_a_restart(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess],
    queues: Callable[..., str], kube_api: client.ApiClient,
):  # fmt: skip
    node_pool.add(1)
    queue = queues(admissionFairSharing={"halfLifeSeconds": 3600})
    operator = start_operator(SHUNTER_MAX_RUNNING="4", SHUNTER_USAGE_WRITE_SECONDS="1")

    def job(name: str, user: str):
        return (a_training_job(name).with_gpus(8).submitted_by(user)
                .with_spec(queue=queue, nodeSelector=node_pool.selector))  # fmt: skip

    jobs.create(job("heavy-1", "heavy").running_for("4s"))
    jobs.wait_phase("heavy-1", "completed", timeout=60)

    def used() -> float:
        usage = (_queue(kube_api, queue).get("status") or {}).get("usage") or {}
        entry = (usage.get("namespaces") or {}).get(jobs.namespace) or {}
        return float((entry.get("users") or {}).get("heavy") or 0.0)

    wait_for(lambda: used() >= 8 * 3, timeout=20, what="heavy's usage in the queue status")
    operator.stop()
    # While no operator runs, heavy submits first, then light: a restarted operator
    # that read heavy's usage back starts light's job first.
    jobs.create(job("heavy-2", "heavy").running_for("600s"))
    jobs.create(job("light", "light").running_for("600s"))
    operator.start()
    jobs.wait_phase("light", "running", timeout=30)
    assert jobs.phase("heavy-2") == "queued"
    jobs.cancel("light")
    jobs.wait_phase("heavy-2", "running", timeout=60)
    jobs.cancel("heavy-2")
