"""A mixed-load soak with faults: many API clients, killed replicas, outages.

`Soak` drives a running system (two operator replicas, one API, PostgreSQL, a local
control plane) for `seconds`: `clients` concurrent REST clients (asyncio) submit,
cancel and poll their own jobs, while one chaos thread kill -9s operator replicas
(restarting each after a while) and the API (restarting it at once), stops
PostgreSQL for a while, and restarts kube-apiserver once. Each client keeps the
definitive answer of every request it made (it retries a request whose answer it
did not get), so it knows the final phase each of its jobs must reach.

`SoakReport.check()` then asserts: every job final, in the phase its history says;
the mirror equal to the CRs row for row; no orphan or duplicate Pod; no 5xx except
while kube-apiserver restarted (and GET /jobs while PostgreSQL was down). Used by
tests/faults/test_soak.py (short) and bench/soak.py (30 minutes).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import psycopg

from shunter.devcluster.controlplane import ControlPlane
from shunter.devcluster.postgres import LocalPostgres
from tests.support.api import ApiProcess
from tests.support.invariants import TERMINAL, all_jobs
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

# 5xx just after kube-apiserver is back are its restart's too (the API's client and
# watch reconnect); the same for GET /jobs after PostgreSQL is back (the pool).
RECOVERY = 5.0


RECENT = 3  # a client cancels one of its latest jobs


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 40.0
    clients: int = 50
    submit_share: float = 0.12  # of client actions
    cancel_share: float = 0.08
    pause: tuple[float, float] = (0.3, 1.2)  # between a client's actions
    operator_kills: tuple[float, float] = (4.0, 9.0)  # seconds between two kills
    api_kills: tuple[float, float] = (8.0, 16.0)
    postgres_at: float = 0.2  # share of `seconds`
    postgres_down: float = 6.0
    apiserver_at: float = 0.4
    quiet_end: float = 8.0  # no kill in the last seconds: the drain starts with all up
    seed: int = 20261128


@dataclass(frozen=True)
class Call:
    endpoint: str
    started: float  # time.time()
    seconds: float
    code: int  # 0: no answer (connection refused or dropped)


@dataclass
class Expect:
    submitted: bool | None = None  # None: the answer never came
    final: str = "completed"


@dataclass
class SoakReport:
    config: SoakConfig
    calls: list[Call] = field(default_factory=list)
    jobs: dict[str, Expect] = field(default_factory=dict)
    windows: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    events: list[tuple[float, str]] = field(default_factory=list)
    drained_seconds: float = 0.0

    def window(self, name: str, start: float, end: float) -> None:
        self.windows.setdefault(name, []).append((start, end))

    def within(self, name: str, call: Call) -> bool:
        return any(
            call.started <= end + RECOVERY and call.started + call.seconds >= start
            for start, end in self.windows.get(name, ())
        )

    def unexpected_5xx(self) -> list[Call]:
        return [
            c for c in self.calls if c.code >= 500 and not self.within("apiserver", c)
            and not (c.endpoint == "jobs" and self.within("postgres", c))
        ]  # fmt: skip


class Soak:
    def __init__(
        self, config: SoakConfig, *, jobs: Jobs, operators: list[OperatorProcess],
        api: ApiProcess, postgres: LocalPostgres, control_plane: ControlPlane,
    ) -> None:  # fmt: skip
        self.config = config
        self.k8s_jobs = jobs
        self.operators = operators
        self.api = api
        self.postgres = postgres
        self.control_plane = control_plane
        self.report = SoakReport(config)
        self.rng = random.Random(config.seed)
        self._stop = threading.Event()

    # -- the run ---------------------------------------------------------------------

    def run(self) -> SoakReport:
        began = time.time()
        asyncio.run(self._load())
        self._settle()
        wait_for(
            lambda: all(
                (j.get("status") or {}).get("phase") in TERMINAL for j in all_jobs(self.k8s_jobs)
            ),
            timeout=300, what="every job to reach a final phase",
        )  # fmt: skip
        self.report.drained_seconds = time.time() - began - self.config.seconds
        return self.report

    async def _load(self) -> None:
        chaos = asyncio.create_task(asyncio.to_thread(self._chaos))
        async with httpx.AsyncClient(base_url=self.api.base_url, timeout=30) as http:
            await asyncio.gather(*(self._client(http, i) for i in range(self.config.clients)))
        self._stop.set()
        await chaos

    def _settle(self) -> None:
        """Everything up again for the drain."""
        if not self.postgres.running():
            self.postgres.start()
        for replica in self.operators:
            if not replica.running():
                replica.start(lead=None)
        if not self.api.running():
            self.api.start()

    # -- clients ---------------------------------------------------------------------

    async def _client(self, http: httpx.AsyncClient, number: int) -> None:
        rng = random.Random(self.config.seed * 1000 + number)
        mine: list[str] = []
        deadline = time.monotonic() + self.config.seconds
        while time.monotonic() < deadline:
            roll = rng.random()
            if roll < self.config.submit_share:
                name = f"s{number:02d}-{len(mine):04d}"
                mine.append(name)
                await self._submit(http, name, rng)
            elif roll < self.config.submit_share + self.config.cancel_share and mine:
                # One of its latest: a job of 1-3 s submitted long ago has finished, and
                # a refused cancel of it exercises little. How many cancels land then
                # depends less on how fast the loaded machine runs the jobs.
                await self._cancel(http, rng.choice(mine[-RECENT:]))
            else:
                await self._poll(http, rng, mine)
            await asyncio.sleep(rng.uniform(*self.config.pause))

    async def _call(self, http: httpx.AsyncClient, endpoint: str, method: str, path: str,
                    **kwargs: Any) -> httpx.Response | None:  # fmt: skip
        started, clock = time.time(), time.monotonic()
        try:
            response = await http.request(method, path, **kwargs)
        except httpx.TransportError:
            response = None
        code = response.status_code if response is not None else 0
        self.report.calls.append(Call(endpoint, started, time.monotonic() - clock, code))
        return response

    async def _definitive(self, http: httpx.AsyncClient, endpoint: str, method: str, path: str,
                          done: Callable[[httpx.Response], bool],
                          **kwargs: Any) -> httpx.Response | None:  # fmt: skip
        """Repeat until an answer that settles it (not a dropped connection, not a 5xx)."""
        give_up = time.monotonic() + self.config.seconds + 120
        while time.monotonic() < give_up:
            response = await self._call(http, endpoint, method, path, **kwargs)
            if response is not None and done(response):
                return response
            await asyncio.sleep(0.5)
        return None

    async def _submit(self, http: httpx.AsyncClient, name: str, rng: random.Random) -> None:
        expect = self.report.jobs.setdefault(name, Expect())
        run_for = f"{rng.choice([1, 2, 3])}s"
        body = {"name": name, "gpus": 1, "pod_annotations": {"sim.shunter.dev/run-for": run_for}}
        answer = await self._definitive(
            http, "submit", "POST", "/api/training/submit",
            lambda r: r.status_code in (201, 409), json=body,
        )  # fmt: skip
        # 409: our own earlier attempt created it, its answer lost with the API.
        expect.submitted = None if answer is None else True

    async def _cancel(self, http: httpx.AsyncClient, name: str) -> None:
        expect = self.report.jobs[name]
        if not expect.submitted or expect.final != "completed":
            return
        answer = await self._definitive(http, "cancel", "POST", f"/api/training/cancel/{name}",
                                        lambda r: r.status_code in (200, 409))  # fmt: skip
        if answer is None:
            expect.submitted = None  # unknown: the job may end either way
            return
        previous = answer.json().get("previous_status")
        if answer.status_code == 200 or previous in ("cancelling", "cancelled"):
            expect.final = "cancelled"
        else:
            expect.final = str(previous)  # it had finished: completed (or failed)

    async def _poll(self, http: httpx.AsyncClient, rng: random.Random, mine: list[str]) -> None:
        roll = rng.random()
        if roll < 0.5 and mine:
            await self._call(http, "status", "GET", f"/api/training/status/{rng.choice(mine)}")
        elif roll < 0.75:
            await self._call(http, "queue", "GET", "/api/training/queue")
        elif roll < 0.9:
            await self._call(http, "live", "GET", "/api/training/live?limit=50")
        else:
            await self._call(http, "jobs", "GET", "/api/training/jobs?limit=20")

    # -- chaos -----------------------------------------------------------------------

    def _chaos(self) -> None:
        config, rng, start = self.config, self.rng, time.monotonic()
        plan: list[tuple[float, str, int]] = [
            (config.seconds * config.postgres_at, "postgres", 0),
            (config.seconds * config.apiserver_at, "apiserver", 0),
        ]
        for kind, (low, high) in (("operator", config.operator_kills), ("api", config.api_kills)):
            at = rng.uniform(low, high)
            while at < config.seconds - config.quiet_end:
                plan.append((at, kind, rng.randrange(len(self.operators))))
                at += rng.uniform(low, high)
        plan.sort()
        while plan and not self._stop.is_set():
            at, kind, which = plan.pop(0)
            if self._stop.wait(max(0.0, start + at - time.monotonic())):
                return
            self._fault(kind, which, plan, start)

    def _fault(self, kind: str, which: int, plan: list[tuple[float, str, int]],
               start: float) -> None:  # fmt: skip
        now = time.time()
        self.report.events.append((now, f"{kind} {which}"))
        if kind == "operator":
            replica = self.operators[which]
            if replica.running():
                replica.kill()
                # Back after a while: long enough, sometimes, for the other to take over.
                plan.append((time.monotonic() - start + self.rng.uniform(0, 8), "restart", which))
                plan.sort()
        elif kind == "restart":
            if not self.operators[which].running():
                self.operators[which].start(lead=None)
        elif kind == "api":
            self.api.kill()
            self.api.start()
            self.report.window("api", now, time.time())
        elif kind == "postgres":
            self.postgres.stop()
            self._stop.wait(self.config.postgres_down)
            self.postgres.start()
            self.report.window("postgres", now, time.time())
        elif kind == "apiserver":
            self.control_plane.restart_apiserver()
            self.report.window("apiserver", now, time.time())


def mirror_rows(database_url: str, namespace: str) -> dict[str, dict[str, Any]]:
    with (
        psycopg.connect(database_url) as conn,
        conn.cursor(row_factory=psycopg.rows.dict_row) as cur,
    ):
        cur.execute(
            "SELECT id::text AS id, name, status, resource_version FROM local_training_jobs"
            " WHERE namespace = %s",
            (namespace,),
        )
        return {row["id"]: row for row in cur.fetchall()}


@dataclass(frozen=True)
class Figures:
    jobs: int
    cancelled: int
    completed: int
    calls: int
    no_answer: int  # connection refused or dropped (the API killed)
    tolerated_5xx: int  # while kube-apiserver restarted (or /jobs while PostgreSQL was down)
    drained_seconds: float
    # Per endpoint: calls, answered 2xx-4xx, p50 and p99 seconds of those, 5xx.
    endpoints: dict[str, dict[str, float]]
    # Per fault: how many, and the seconds each window lasted (longest).
    faults: dict[str, dict[str, float]]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] if ordered else 0.0


def _endpoints(calls: list[Call]) -> dict[str, dict[str, float]]:
    found: dict[str, dict[str, float]] = {}
    for endpoint in sorted({c.endpoint for c in calls}):
        mine = [c for c in calls if c.endpoint == endpoint]
        answered = [c.seconds for c in mine if 0 < c.code < 500]
        found[endpoint] = {
            "calls": len(mine), "answered": len(answered),
            "p50": round(_percentile(answered, 50), 4), "p99": round(_percentile(answered, 99), 4),
            "5xx": sum(1 for c in mine if c.code >= 500),
        }  # fmt: skip
    return found


def _faults(report: SoakReport) -> dict[str, dict[str, float]]:
    kinds = [kind.split()[0] for _, kind in report.events]
    found = {kind: {"count": kinds.count(kind)} for kind in sorted(set(kinds))}
    for name, spans in report.windows.items():
        found.setdefault(name, {})["longest_s"] = round(max(e - s for s, e in spans), 2)
    return found


def assert_soak(report: SoakReport, jobs: Jobs, database_url: str) -> Figures:
    """What must hold at the end of a soak (see the module docstring)."""
    items = {j["metadata"]["name"]: j for j in all_jobs(jobs)}
    phases = {name: (j.get("status") or {}).get("phase") for name, j in items.items()}
    wrong = []
    for name, expect in report.jobs.items():
        if name not in items:
            if expect.submitted:
                wrong.append(f"{name}: acknowledged but missing")
            continue
        allowed = {"completed", "cancelled"} if expect.submitted is None else {expect.final}
        if phases[name] not in allowed:
            wrong.append(f"{name}: {phases[name]}, expected {sorted(allowed)}")
    wrong += [f"{name}: nobody submitted it" for name in items if name not in report.jobs]
    assert not wrong, wrong

    pods = jobs.core.list_namespaced_pod(jobs.namespace).items
    owners = [p.metadata.labels.get("shunter.dev/job-name") for p in pods]
    assert len(owners) == len(set(owners)), "a job has two Pods"
    for pod in pods:
        owner = items.get(pod.metadata.labels.get("shunter.dev/job-name", ""))
        assert owner is not None, f"orphan pod {pod.metadata.name}: no job"
        assert phases[owner["metadata"]["name"]] == "completed", f"orphan pod {pod.metadata.name}"
        assert pod.metadata.labels["shunter.dev/job-uid"] == owner["metadata"]["uid"]

    def rows_differ() -> list[str]:
        rows = mirror_rows(database_url, jobs.namespace)
        crs = {
            j["metadata"]["uid"]: (name, phases[name], int(j["metadata"]["resourceVersion"]))
            for name, j in items.items()
        }
        mirrored = {uid: (r["name"], r["status"], r["resource_version"]) for uid, r in rows.items()}
        differ = [u for u in crs.keys() | mirrored.keys() if crs.get(u) != mirrored.get(u)]
        return [f"{uid}: CR {crs.get(uid)} row {mirrored.get(uid)}" for uid in differ]

    wait_for(lambda: not rows_differ(), timeout=90, what="the mirror to equal the CRs row for row")
    unexpected = report.unexpected_5xx()
    assert not unexpected, unexpected[:20]
    values = list(phases.values())
    return Figures(
        jobs=len(items),
        cancelled=values.count("cancelled"),
        completed=values.count("completed"),
        calls=len(report.calls),
        no_answer=sum(1 for c in report.calls if c.code == 0),
        tolerated_5xx=sum(1 for c in report.calls if c.code >= 500),
        drained_seconds=round(report.drained_seconds, 1),
        endpoints=_endpoints(report.calls),
        faults=_faults(report),
    )
