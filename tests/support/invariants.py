"""What must hold after a fault test, checked row by row: on the end state (phases,
Pods, the mirror) and over the recorded history (limits never exceeded, nothing
created twice)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tests.support.operator import Jobs, mirror_row
from tests.support.polling import wait_for
from tests.support.recorder import Change

TERMINAL = {"completed", "failed", "cancelled"}
HOLDING = {"starting", "running", "cancelling", "stopping"}


def all_jobs(jobs: Jobs) -> list[dict[str, Any]]:
    return jobs.custom.list_namespaced_custom_object(
        "shunter.dev", "v1alpha1", jobs.namespace, "trainingjobs"
    )["items"]


@dataclass(frozen=True)
class Finished:
    """Whether every job is in a terminal phase (truthy), naming those that are not
    with their status (what a timed-out wait prints)."""

    pending: tuple[dict[str, Any], ...]

    def __bool__(self) -> bool:
        return not self.pending

    def __repr__(self) -> str:
        return "not yet: " + "; ".join(
            f"{j['metadata']['name']} {j.get('status', {})}" for j in self.pending
        )


def all_finished(jobs: Jobs) -> Finished:
    return Finished(
        tuple(j for j in all_jobs(jobs) if j.get("status", {}).get("phase") not in TERMINAL)
    )


def assert_invariants(jobs: Jobs, database_url: str, cancelled: set[str]) -> None:
    """Right terminal phases, no orphan or duplicate Pods, the mirror equals the CRs."""
    items = all_jobs(jobs)
    phases = {j["metadata"]["name"]: j.get("status", {}).get("phase") for j in items}
    for name, phase in phases.items():
        assert phase == ("cancelled" if name in cancelled else "completed"), (name, phase)
    pods = jobs.core.list_namespaced_pod(jobs.namespace).items
    uids = {j["metadata"]["name"]: j["metadata"]["uid"] for j in items}
    owners = [p.metadata.labels["shunter.dev/job-name"] for p in pods]
    assert len(owners) == len(set(owners)), "a job has two Pods"
    for pod in pods:
        job = pod.metadata.labels["shunter.dev/job-name"]
        assert phases[job] == "completed", f"orphan pod {pod.metadata.name} of a {phases[job]} job"
        assert pod.metadata.labels["shunter.dev/job-uid"] == uids[job]

    def mirrored() -> list[str]:
        return [
            n
            for n, uid in uids.items()
            if (mirror_row(database_url, uid) or {}).get("status") != phases[n]
        ]

    wait_for(lambda: not mirrored(), timeout=60, what="the mirror to equal the CRs")


@dataclass(frozen=True)
class History:
    most_pods: int  # trainer Pods alive (not Succeeded or Failed) at once, at most
    most_holding: int  # jobs holding a slot at once, at most (see assert_history)
    most_by_status: int  # jobs whose status alone says they hold one, at most
    pods_created: int


def _revision(change: Change) -> int:
    return int(change.object["metadata"]["resourceVersion"])


def assert_history(pods: list[Change], jobs: list[Change], *, max_running: int) -> History:
    """Over everything the API server did, in its order: never more live trainer Pods
    or slot-holding jobs than the limit, no Pod name created twice, no job admitted
    twice (status.attempts never above 1: these tests give no job a retry).

    Pods and jobs share etcd's revision counter, so both histories merge into one
    exact order. A job holds a slot from its admission (phase starting) until its
    final phase, except once every Pod it had has finished or is gone: the operator
    writes the statuses of one pass concurrently, so the job that inherits such a slot
    may be written `starting` just before its predecessor is written `completed`
    (most_by_status counts those moments too, for information).
    """
    alive: dict[str, bool] = {}
    created: dict[str, int] = {}
    pods_of: dict[str, set[str]] = {}
    phases: dict[str, str] = {}
    most_pods = most_holding = most_by_status = 0
    for change in sorted([*pods, *jobs], key=_revision):
        name = change.name
        if change.object.get("kind") == "Pod":
            job = (change.object["metadata"].get("labels") or {}).get("shunter.dev/job-name", "")
            pods_of.setdefault(job, set()).add(name)
            if change.kind == "DELETED":
                alive.pop(name, None)
            else:
                if change.kind == "ADDED":
                    created[name] = created.get(name, 0) + 1
                phase = (change.object.get("status") or {}).get("phase")
                alive[name] = phase not in ("Succeeded", "Failed")
            most_pods = max(most_pods, sum(alive.values()))
            assert most_pods <= max_running, (
                f"{most_pods} trainer Pods alive at once (limit {max_running}), at {name}"
                f" revision {_revision(change)}"
            )
            continue
        status = change.object.get("status") or {}
        assert int(status.get("attempts") or 0) <= 1, f"{name} admitted twice: {status}"
        if change.kind == "DELETED":
            phases.pop(name, None)
        else:
            phases[name] = str(status.get("phase"))
        by_status = [j for j, phase in phases.items() if phase in HOLDING]
        holding = [j for j in by_status
                   if not pods_of.get(j) or any(alive.get(p) for p in pods_of[j])]  # fmt: skip
        most_by_status = max(most_by_status, len(by_status))
        most_holding = max(most_holding, len(holding))
        assert len(holding) <= max_running, (
            f"{len(holding)} jobs held a slot at once (limit {max_running}) after"
            f" {change.kind} of {name} (revision {_revision(change)}): {sorted(holding)}"
        )
    twice = {n: c for n, c in created.items() if c > 1}
    assert not twice, f"Pods created more than once: {twice}"
    return History(most_pods, most_holding, most_by_status, len(created))
