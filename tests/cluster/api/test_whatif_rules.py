"""The what-if follows the pass's rules on the real control plane with a kwok node of
8 GPUs: in a queue with admission fair sharing it answers the position the operator
then shows for the same job submitted for real (where admission order would say
otherwise); in a queue that preempts lower priorities, a high-priority what-if names
the victims the operator then stops and starts within their grace."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kubernetes import client

from shunter.domain.model import GROUP, VERSION, parse_time
from tests.support.api import ApiProcess
from tests.support.builders import a_training_job
from tests.support.nodes import NodePool
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

TOLERANCE = 8.0  # seconds: kwok's Pod start and the operator's pass on either side


def asked(
    http: Any, body: dict[str, Any], *, since: datetime | None = None
) -> dict[str, Any] | None:
    """A what-if's answer, once the API has read a plan of the operator's made `since`
    (else None: the operator publishes a plan every few seconds, the API reads it)."""
    answer = http.post("/api/training/submit", params={"dry_run": "true"}, json=body)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    made = parse_time(found["plan_made_at"])
    if made is None or (since is not None and made < since):
        return None
    return found if found["estimated_start"] else None


def test_a_fair_queue_what_if_gives_the_position_the_operator_shows_once_submitted(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess], queues: Callable[..., str], kube_api: client.ApiClient,
):  # fmt: skip
    node_pool.add(1, gpus=8)
    queue = queues(admissionFairSharing={"halfLifeSeconds": 3600})
    start_operator(SHUNTER_MAX_RUNNING="4", SHUNTER_USAGE_WRITE_SECONDS="1",
                   SHUNTER_ESTIMATE_SECONDS="1")  # fmt: skip

    def heavy(name: str, run: int, user: str = "heavy") -> Any:
        return (a_training_job(name).with_gpus(8).submitted_by(user)
                .with_spec(queue=queue, nodeSelector=node_pool.selector, maxRuntimeSeconds=run + 10)
                .running_for(f"{run}s"))  # fmt: skip

    # heavy has used the queue (its usage is in the queue's status: what orders it
    # behind a user with none); a third user holds the node for ten minutes and two more
    # of heavy's jobs wait.
    jobs.create(heavy("heavy-0", 3))
    jobs.wait_phase("heavy-0", "completed", timeout=60)
    custom = client.CustomObjectsApi(kube_api)

    def used() -> float:
        body = custom.get_cluster_custom_object(GROUP, VERSION, "trainingqueues", queue)
        entry = ((body.get("status") or {}).get("usage") or {}).get("namespaces") or {}
        users = (entry.get(jobs.namespace) or {}).get("users") or {}
        return float(users.get("heavy") or 0.0)

    wait_for(lambda: used() >= 8, timeout=30, what="heavy's usage in the queue's status")
    jobs.create(heavy("holder", 600, user="other"))
    jobs.wait_phase("holder", "running", timeout=30)
    for name in ("heavy-1", "heavy-2"):
        jobs.create(heavy(name, 20))
    wait_for(lambda: jobs.status("heavy-2").get("queuePosition") == 2, timeout=30,
             what="heavy's two jobs to wait")  # fmt: skip
    settled = datetime.now(UTC)  # a plan made since has the holder and heavy's two jobs
    # The API's caller (another user, no usage) asks: it comes first, not third.
    body = {
        "name": "light",
        "gpus": 8,
        "queue": queue,
        "node_selector": node_pool.selector,
        "max_runtime_seconds": 30,
        "pod_annotations": {"sim.shunter.dev/run-for": "20s"},
    }
    with start_api().client() as http:
        what = wait_for(lambda: asked(http, body, since=settled), timeout=30,
                        what="a what-if answered from a plan made since")  # fmt: skip
        assert what["position"] == 1, what  # admission order would say 3
        estimate = parse_time(what["estimated_start"])
        holder_end = parse_time(jobs.status("holder")["runningSince"])
        assert estimate is not None
        assert holder_end is not None
        # It starts when the holder ends, not after heavy's two jobs.
        assert abs((estimate - holder_end).total_seconds() - 610) <= TOLERANCE, what
        assert http.post("/api/training/submit", json=body).status_code == 201

        def shown() -> dict[str, Any] | None:
            row: dict[str, Any] = http.get("/api/training/status/light").json()
            return row if row.get("queue_position") else None

        row = wait_for(shown, timeout=30, what="the operator's position for the job")
        assert row["queue_position"] == what["position"]
        # Two renumberings, written by two flights of the operator: either may land first.
        wait_for(lambda: [jobs.status(n).get("queuePosition") for n in ("heavy-1", "heavy-2")]
                 == [2, 3], timeout=30, what="heavy's jobs behind the light one")  # fmt: skip
    for name in ("light", "heavy-1", "heavy-2", "holder"):
        jobs.cancel_unless_finished(name)


def test_a_preempting_what_if_names_the_victims_and_starts_within_their_grace(
    jobs: Jobs, node_pool: NodePool, start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess], queues: Callable[..., str],
):  # fmt: skip
    node_pool.add(1, gpus=8)
    queue = queues(preemption="lowerPriority")
    start_operator(SHUNTER_MAX_RUNNING="10", SHUNTER_ESTIMATE_SECONDS="1",
                   SHUNTER_GRACE_MARGIN_SECONDS="1")  # fmt: skip
    grace = 5
    # The node is full of long low-priority jobs: a and b of 2 GPUs (b of priority 1),
    # then c of 4, started last. A 4-GPU job of priority 10 needs one 4-GPU victim, or
    # both small ones: the operator's rule takes the newest of the lowest priority, c.
    for name, gpus, priority in (("low-a", 2, 0), ("low-b", 2, 1), ("low-c", 4, 0)):
        jobs.create(a_training_job(name).with_gpus(gpus).with_priority(priority).with_grace(grace)
                    .with_spec(queue=queue, nodeSelector=node_pool.selector,
                               maxRuntimeSeconds=3600)
                    .running_for("3600s"))  # fmt: skip
        jobs.wait_phase(name, "running", timeout=30)
    body = {"name": "urgent", "gpus": 4, "priority": 10, "queue": queue,
            "node_selector": node_pool.selector, "max_runtime_seconds": 120,
            "pod_annotations": {"sim.shunter.dev/run-for": "60s"}}  # fmt: skip
    with start_api().client() as http:

        def preempting() -> dict[str, Any] | None:
            found = asked(http, body)
            return found if found and found["would_preempt"] else None

        what = wait_for(preempting, timeout=30, what="a what-if that preempts")
        answered = datetime.now(UTC)
        assert what["preempts"] == [f"{jobs.namespace}/low-c"], what
        estimate = parse_time(what["estimated_start"])
        latest = parse_time(what["estimated_start_range"]["latest"])
        assert estimate is not None
        assert latest is not None
        assert (estimate - answered).total_seconds() <= grace + 1, what  # within its grace
        assert estimate <= latest
        assert "preempt 1 job" in what["message"]
        assert http.post("/api/training/submit", json=body).status_code == 201
        submitted = datetime.now(UTC)

        def started() -> datetime | None:
            row = http.get("/api/training/status/urgent").json()
            return parse_time(row.get("admitted_at")) if row["status"] != "queued" else None

        actual = wait_for(started, timeout=60, what="the urgent job to start")
        margin = (submitted - answered).total_seconds() + TOLERANCE
        assert (actual - latest).total_seconds() <= margin, (actual, latest)
    # The victim's requeue and the urgent job's admission are written by two flights
    # of the operator at once: either may land first.
    wait_for(lambda: jobs.status("low-c").get("preemptions") == 1, timeout=15,
             what="low-c's preemption in its status")  # fmt: skip
    jobs.wait_event("low-c", "Preempted")
    for name in ("low-a", "low-b"):
        assert not jobs.status(name).get("preemptions"), name
        assert jobs.phase(name) == "running"
    for name in ("urgent", "low-a", "low-b", "low-c"):
        jobs.cancel_unless_finished(name)
