"""What fencing costs: fenced writes with nothing in their way, and 409s when users
write the same jobs as the operator.

    python -m bench.fencing [--plain 500] [--queued 100] [--seconds 20] [--rate 20]
                            [--baseline DIR]

Plain: `--plain` jobs of 2 s, 50 at once, nobody else writing: completed/s and the
operator's CPU seconds (each write checks leadership, gets a bounded timeout and
carries a resourceVersion precondition).

Conflicts: one job holds the only slot; `--queued` jobs wait behind it, the first 20 with their
exact position in status. For `--seconds`, users change the priority of random
queued jobs (`--rate` patches a second, 4 threads): every change reorders the queue,
so the operator rewrites positions while users write the same objects, and a status
write based on the version before a user's patch is refused (409) and decided again.

Measured: the 409s (the operator's log), the delay from each 409 to the next status
change of that job (the retry landing; a watch, wall clock on both sides) unless the
job's next user patch comes first (then the decision from the newer version needed
no write), status writes, and the settle time (last user patch -> every exact
position right).
`--baseline DIR` runs both scenarios a second time with the operator of another
checkout (its operator/, api/ and hack/ put first on PYTHONPATH): e.g. a worktree of
the commit before fencing, whose blind writes never conflict.
"""

from __future__ import annotations

import argparse
import random
import re
import threading
import time
from datetime import datetime
from functools import partial
from pathlib import Path
from typing import Any

from kubernetes import watch
from tests.support.background import Background

from bench.harness import PodClock, Sampler, System, summary, system, table, write_result
from shunter.domain.model import GROUP, PLURAL, VERSION

POSITIONS = 20
_CONFLICT = re.compile(r"^(\S+ \S+) INFO shunter\.operator: job (\S+): changed since", re.M)


class StatusWatch:
    """Every status change of the namespace's jobs: (wall time, name, status)."""

    def __init__(self, sys_: System) -> None:
        self.custom = sys_.custom()
        self.namespace = sys_.namespace
        self.changes: list[tuple[float, str, dict[str, Any]]] = []
        self._last: dict[str, dict[str, Any]] = {}
        self._thread = Background(self._run, name="status watch")

    def start(self) -> StatusWatch:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop(join=False)

    def _run(self, stop: threading.Event) -> None:
        listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        version = listing["metadata"]["resourceVersion"]
        while not stop.is_set():
            for event in watch.Watch().stream(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                PLURAL, resource_version=version, timeout_seconds=30,
            ):  # fmt: skip
                job = event["object"]
                version = job["metadata"]["resourceVersion"]
                name, status = job["metadata"]["name"], job.get("status") or {}
                if status != self._last.get(name):
                    self._last[name] = status
                    self.changes.append((time.time(), name, status))
                if stop.is_set():
                    return


def _order(job: dict[str, Any]) -> tuple[int, str, int, str]:
    status = job.get("status") or {}
    return (-int(job["spec"].get("priority", 0)), job["metadata"]["creationTimestamp"],
            int(status.get("sequence") or 0), job["metadata"]["name"])  # fmt: skip


def _positions_right(sys_: System) -> bool:
    queued = [j for j in sys_.list_jobs() if (j.get("status") or {}).get("phase") == "queued"]
    queued.sort(key=_order)
    return all(
        (j.get("status") or {}).get("queuePosition") == i
        for i, j in enumerate(queued[:POSITIONS], start=1)
    )


def _source_env(source: Path | None) -> dict[str, str]:
    if source is None:
        return {}
    return {"PYTHONPATH": ":".join(str(source / d) for d in ("operator", "api", "hack"))}


def plain(args: argparse.Namespace, *, source: Path | None) -> dict[str, Any]:
    env = {"SHUNTER_MAX_RUNNING": "50", **_source_env(source)}
    with system(nodes=10, operator_env=env, name="bench-fencing") as sys_:
        clock = PodClock(sys_.api, sys_.namespace).start()
        sampler = Sampler({"operator": sys_.pid("shunter-operator")})
        names = [f"p{i:05d}" for i in range(args.plain)]
        start = time.monotonic()
        sys_.create_jobs(names, annotations={"sim.shunter.dev/run-for": "2s"})
        pods = [f"{n}-trainer" for n in names]
        clock.wait(lambda: all(p in clock.finished for p in pods), 1800, "all jobs to finish")
        makespan = max(clock.finished[p] for p in pods) - start
        clock.stop()
        return {
            "jobs": args.plain,
            "makespan_s": makespan,
            "completed_per_s": args.plain / makespan,
            "operator_cpu_s": sampler.stop()["operator"]["cpu_seconds"],
        }


def conflicts(args: argparse.Namespace, *, source: Path | None) -> dict[str, Any]:
    env = {"SHUNTER_MAX_RUNNING": "1", "SHUNTER_QUEUE_POSITIONS": str(POSITIONS),
           **_source_env(source)}  # fmt: skip
    with system(nodes=4, operator_env=env, name="bench-fencing") as sys_:
        sys_.create_jobs(["hold"])
        names = [f"q{i:04d}" for i in range(args.queued)]
        sys_.create_jobs(names)
        deadline = time.monotonic() + 120
        while not _positions_right(sys_):
            if time.monotonic() > deadline:
                raise TimeoutError("bench: queue positions never settled")
            time.sleep(0.2)
        statuses = StatusWatch(sys_).start()
        custom = sys_.custom()
        patches: list[tuple[float, str]] = []
        stop_at = time.monotonic() + args.seconds
        rng = random.Random(7)

        def user(own: random.Random, _: threading.Event) -> None:
            while time.monotonic() < stop_at:
                name = own.choice(names)
                custom.patch_namespaced_custom_object(
                    GROUP, VERSION, sys_.namespace, PLURAL, name,
                    {"spec": {"priority": own.randint(0, 100)}},
                )  # fmt: skip
                patches.append((time.time(), name))
                time.sleep(4 / args.rate)

        users = [
            Background(partial(user, random.Random(rng.random())), name=f"user {i}").start()
            for i in range(4)
        ]
        for thread in users:
            thread.wait()
        last_patch = max(t for t, _ in patches)
        while not _positions_right(sys_):
            time.sleep(0.05)
        settle = time.time() - last_patch
        time.sleep(1.0)  # let the watch catch the last writes (a figure, not a check)
        statuses.stop()
        log = (sys_.state / "logs" / "shunter-operator.log").read_text(errors="replace")
        conflicts = [
            (datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp(), key.split("/")[1])
            for stamp, key in _CONFLICT.findall(log)
        ]
        # A retry landed: the job's next status change after the 409 and before any
        # later user patch of it (which could be the cause instead). None there: the
        # decision from the newer version needed no write.
        retries, unneeded = [], 0
        for at, name in conflicts:
            until = min((t for t, n in patches if n == name and t > at), default=float("inf"))
            later = [t for t, n, _ in statuses.changes if n == name and at <= t < until]
            if later:
                retries.append(min(later) - at)
            else:
                unneeded += 1
        window = [c for c in statuses.changes if c[0] <= last_patch + settle]
        return {
            "user_patches": len(patches),
            "status_changes": len(window),
            "conflicts": len(conflicts),
            "retry_landed_after_conflict": summary(retries),
            "retry_needed_no_write": unneeded,
            "settle_after_last_patch": settle,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plain", type=int, default=500, help="jobs of the plain run")
    parser.add_argument("--queued", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rate", type=float, default=20, help="user patches per second")
    parser.add_argument("--baseline", type=Path, help="a checkout whose operator to compare")
    args = parser.parse_args()
    sources: list[Path | None] = [None, *([args.baseline] if args.baseline else [])]
    rounds = []
    for source in sources:
        found = {
            "operator": str(source or "this checkout"),
            "plain": plain(args, source=source),
            "conflicts": conflicts(args, source=source),
        }
        rounds.append(found)
        quiet, busy = found["plain"], found["conflicts"]
        retry = busy["retry_landed_after_conflict"]
        table(f"fencing: operator of {found['operator']}", [
            (f"plain: {quiet['jobs']} jobs, completed/s", quiet["completed_per_s"]),
            ("plain: operator CPU seconds", quiet["operator_cpu_s"]),
            ("conflicts: user patches (priority changes)", busy["user_patches"]),
            ("conflicts: status changes written", busy["status_changes"]),
            ("conflicts: 409 on a status write", busy["conflicts"]),
            ("conflicts: 409 -> decided again, nothing to write", busy["retry_needed_no_write"]),
            ("conflicts: 409 -> retry landed p50 (s)", retry["p50"]),
            ("conflicts: 409 -> retry landed p99 (s)", retry["p99"]),
            ("conflicts: 409 -> retry landed max (s)", retry["max"]),
            ("conflicts: last patch -> positions right (s)", busy["settle_after_last_patch"]),
        ])  # fmt: skip
    print(f"\nwrote {write_result('fencing', {'args': vars(args), 'rounds': rounds})}")


if __name__ == "__main__":
    main()
