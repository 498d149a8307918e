"""API under load, auth on: GET /healthz, /status, /queue and /live with N jobs (wrk), POST
/cancel with 50 clients, the leak check, and the operator and API at a large scale.

    python -m bench.api_load [--jobs 10000] [--seconds 10] [--cycles 2000] [--scale 50000]
        [--forced 200] [--only reads|writes|forced]

The API runs as in a real install: one uvicorn worker, `SHUNTER_API_AUTH=kubernetes`,
every request carrying a ServiceAccount token that TokenReview and SubjectAccessReview
decide (answers cached for a short while, as the API does). The GETs are driven by
`wrk` (Debian package `wrk`; a Python load generator saturates a core before the API
does), with the operator stopped, so the figures are the API's alone. /healthz runs
the same middleware but no auth and no cache: the ceiling a route can reach. /status
is measured twice: first reads (each job's JSON rendered on its first read), then
again (the kept renderings: the steady state of clients that poll).

POST /cancel: 1,000 queued jobs (every one numbered by the operator first) cancelled by
50 concurrent clients (aiohttp: httpx took a third of the machine), the operator
running, `SHUNTER_API_CANCEL_WAIT_SECONDS=0` (the answer does not wait for the final
phase). Also reported: the CPU of each process meanwhile, the API's own latency
histogram (from its /metrics), the kube-apiserver's writes and reads, and, with
`SHUNTER_APISERVER_PROFILING=1 SHUNTER_BENCH_APISERVER_PROFILE=FILE`, the
kube-apiserver's CPU profile of the first 6 s. The leak check: submit, cancel and delete the
finished TrainingJob (a user's or a TTL controller's clean-up), `--cycles` times; RSS of
the operator and the API before and after. `--scale N` (0 skips): N TrainingJobs created
at once against a running operator (100 running at a time, jobs of 5 s), peak RSS of
both processes, /queue measured at that size, and how many jobs completed meanwhile.

Forced cancels (`--forced N`, 0 skips): N running jobs whose Pods ignore SIGTERM
(grace 1 s) cancelled all at once, one client each; from each request to the job
`cancelled` and to its Pod gone, minus grace + margin (1 s each), and where that
time goes (the stages, from the times the stop recorded in the job's status).
`--only` runs one part (reads, writes or forced).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import httpx
from kubernetes import client, watch
from prometheus_client.parser import text_string_to_metric_families

from bench.harness import PodClock, Sampler, System, summary, system, table, write_result
from bench.reports import apiserver_counts, requests_between
from shunter.devcluster.accounts import account_with_role
from shunter.domain.model import GROUP, PLURAL, VERSION, parse_time

UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk(
    base: str, paths: list[str], *, token: str, clients: int = 10, seconds: float = 10
) -> dict[str, Any]:
    """GET random paths for `seconds` from `clients` connections on one wrk thread
    (the other core is the API's); req/s, p50/p99 (s) and non-2xx answers."""
    if shutil.which("wrk") is None:
        raise SystemExit("bench: wrk is missing (apt-get install wrk; make deps does)")
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "paths.lua"
        quoted = ",".join(f'"{p}"' for p in paths)
        script.write_text(
            f"local paths = {{{quoted}}}\n"
            "request = function()\n"
            '  return wrk.format("GET", paths[math.random(#paths)])\n'
            "end\n"
        )
        out = subprocess.run(
            ["wrk", "-t1", f"-c{clients}", f"-d{seconds:.0f}s", "--latency", "--timeout", "10s",
             "-H", f"Authorization: Bearer {token}", "-s", str(script), base],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip

    def latency(q: str) -> float:
        number, unit = re.search(rf"^\s+{q}%\s+([\d.]+)(us|ms|s|m)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(number) * UNITS[unit]

    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "requests": requests,
        "req_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": latency("50"),
        "p99": latency("99"),
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
        "clients": clients,
    }


@dataclass(frozen=True)
class Posted:
    path: str
    started: float  # time.monotonic() when it was sent
    seconds: float  # until its answer was read
    status: int


async def post_each(base: str, paths: list[str], *, token: str, clients: int) -> list[Posted]:
    """POST each path once (in random order) from `clients` concurrent connections.

    aiohttp, not httpx: on two cores the load generator competes with what it
    measures. httpx took about 8 ms of this process's CPU per request (at 100 req/s,
    most of a core while the API server needed it; and this process's watch threads
    waited for the interpreter); aiohttp takes about 0.3 ms."""
    done: list[Posted] = []
    queue = list(paths)
    random.shuffle(queue)

    async def client_loop(http: aiohttp.ClientSession) -> None:
        while queue:
            path = queue.pop()
            started = time.monotonic()
            async with http.post(path) as response:
                await response.read()
            done.append(Posted(path, started, time.monotonic() - started, response.status))

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(
        base_url=base, connector=connector, timeout=aiohttp.ClientTimeout(total=120),
        headers={"Authorization": f"Bearer {token}"},
    ) as http:  # fmt: skip
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
    return done


async def post_all(base: str, paths: list[str], *, token: str, clients: int) -> dict[str, Any]:
    """POST each path once from `clients` concurrent clients; latencies and errors."""
    start = time.monotonic()
    done = await post_each(base, paths, token=token, clients=clients)
    elapsed = time.monotonic() - start
    slowest = sorted(done, key=lambda p: p.seconds)[-len(done) // 10 :]
    return {
        "requests": len(done),
        "req_per_s": len(done) / elapsed,
        "errors": sum(1 for p in done if p.status >= 300),
        "clients": clients,
        **summary([p.seconds for p in done]),
        # When the slowest tenth started (s from the first request): a tail at the
        # start is the cold connections, one spread over the run is the load.
        "slowest_started_at": sorted(round(p.started - start, 2) for p in slowest),
    }


def user_token(s: System) -> str:
    """A token of a ServiceAccount that may do everything in the bench namespace."""
    return account_with_role(s.api, s.namespace, "bench-user", "cluster-admin")


def wait_cached(http: httpx.Client, count: int, *, timeout: float = 600, most: bool = False
                ) -> None:  # fmt: skip
    """Until the API counts at least `count` unfinished jobs (`most`: at most)."""
    deadline = time.monotonic() + timeout
    while True:
        body = http.get("/api/training/queue", params={"limit": 1}).json()
        unfinished = body["queued_count"] + body["running_count"]
        if (unfinished <= count) if most else (unfinished >= count):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: the API cache holds {body} after {timeout:.0f}s")
        time.sleep(0.5)


def wait_phased(s: System, count: int, *, timeout: float = 600) -> None:
    """Until the operator has given `count` jobs a phase (numbered them): a cancel
    measured before that races the job's first status write, which is not what a
    cancel of a queued job costs."""
    deadline = time.monotonic() + timeout
    while True:
        phased = sum(1 for job in s.list_jobs() if (job.get("status") or {}).get("phase"))
        if phased >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: {phased} of {count} jobs have a phase after {timeout:.0f}s")
        time.sleep(0.5)


def apiserver_profile(s: System, *, seconds: int) -> threading.Thread | None:
    """With SHUNTER_BENCH_APISERVER_PROFILE=FILE: the kube-apiserver's CPU profile of
    the next `seconds` (its /debug/pprof, read with `go tool pprof -top FILE`)."""
    path = os.environ.get("SHUNTER_BENCH_APISERVER_PROFILE")
    if not path:
        return None

    def take() -> None:
        url = f"{s.api.configuration.host}/debug/pprof/profile?seconds={seconds}"
        response = s.api.call_api("GET", url, _request_timeout=seconds + 30)
        Path(path).write_bytes(bytes(response.read()))

    thread = threading.Thread(target=take, name="apiserver-profile")
    thread.start()
    return thread


AUTH = {"SHUNTER_API_AUTH": "kubernetes"}


WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE")


class WriteCount:
    """The writes the kube-apiserver counted from now until `made()` (its
    apiserver_request_total: everyone's, the API's, the operator's, the scheduler's
    and kwok's), by verb and resource, and per job."""

    def __init__(self, s: System) -> None:
        self.api = s.api
        self.before = apiserver_counts(self.api)

    def made(self, jobs: int) -> dict[str, Any]:
        made = requests_between(self.before, apiserver_counts(self.api))
        kinds: dict[str, int] = {}
        reads: dict[str, int] = {}
        for (verb, resource, subresource, code), n in made.items():
            kind = f"{verb} {'/'.join(filter(None, (resource, subresource)))}"
            if verb not in WRITE_VERBS:  # GET, LIST, WATCH: what else the API server served
                reads[kind] = reads.get(kind, 0) + n
                continue
            if not code.startswith("2"):
                kind += f" {code}"  # refused: a 409's retry is a second write
            kinds[kind] = kinds.get(kind, 0) + n
        total = sum(kinds.values())
        return {"writes": total, "writes_per_job": total / max(1, jobs),
                "by_kind": dict(sorted(kinds.items(), key=lambda kv: -kv[1])),
                "reads_by_kind": dict(sorted(reads.items(), key=lambda kv: -kv[1]))}  # fmt: skip


def reads(args: argparse.Namespace) -> dict[str, Any]:
    with system(with_operator=False, api_env=AUTH) as s:
        token = user_token(s)
        names = [f"q{i:05d}" for i in range(args.jobs)]
        s.bulk_create(names)
        with s.http(token) as http:
            wait_cached(http, args.jobs)
        sampler = Sampler({"api": s.pid("shunter-api")})
        statuses = [f"/api/training/status/{n}" for n in names]
        result = {
            "get_healthz": wrk(s.base_url, ["/healthz"], token=token, seconds=args.seconds),
            # First reads: most jobs are read for the first time, so most answers are
            # rendered (a job's JSON is rendered once per version, then kept).
            "get_status": wrk(s.base_url, statuses, token=token, seconds=args.seconds),
            # The same again: nearly every answer is a kept rendering (steady state).
            "get_status_again": wrk(s.base_url, statuses, token=token, seconds=args.seconds),
            "get_queue": wrk(
                s.base_url, ["/api/training/queue"], token=token, seconds=args.seconds
            ),
            # The UI's list (100 items: the queue's head here, the operator stopped).
            "get_live": wrk(s.base_url, ["/api/training/live"], token=token, seconds=args.seconds),
        }
        result["api_process"] = sampler.stop()["api"]
        for key in ("get_status", "get_status_again", "get_live"):
            result[f"{key.removeprefix('get_')}_over_healthz"] = (
                result[key]["req_per_s"] / result["get_healthz"]["req_per_s"]
            )
        return result


def writes(args: argparse.Namespace) -> dict[str, Any]:
    env = {"SHUNTER_MAX_RUNNING": "1"}
    api_env = {**AUTH, "SHUNTER_API_CANCEL_WAIT_SECONDS": "0"}
    result: dict[str, Any] = {}
    with system(operator_env=env, api_env=api_env) as s:
        token = user_token(s)
        names = [f"c{i:05d}" for i in range(1000)]
        s.bulk_create(names)
        with s.http(token) as http:
            wait_cached(http, len(names))
        wait_phased(s, len(names))
        count = WriteCount(s)
        watched = ("shunter-operator", "shunter-api", "kube-apiserver", "etcd")
        during = Sampler({name.removeprefix("shunter-"): s.pid(name) for name in watched})
        profile = apiserver_profile(s, seconds=6)
        with s.http(token) as http:
            metrics_before = http.get("/metrics").text
        result["post_cancel"] = asyncio.run(
            post_all(
                s.base_url, [f"/api/training/cancel/{n}" for n in names], token=token, clients=50
            )
        )
        result["post_cancel_processes"] = during.stop()
        with s.http(token) as http:
            metrics_after = http.get("/metrics").text
        result["post_cancel_in_api"] = api_latency(metrics_before, metrics_after, "cancel")
        result["post_cancel_api_gc"] = {
            k: v - gc_pauses(metrics_before)[k] for k, v in gc_pauses(metrics_after).items()
        }
        if profile is not None:
            profile.join()
        with s.http(token) as http:
            wait_cached(http, 0, most=True)  # every one cancelled: its writes are all made
        result["post_cancel_writes"] = count.made(len(names))

        custom = client.CustomObjectsApi(s.api)
        sampler = Sampler({"operator": s.pid("shunter-operator"), "api": s.pid("shunter-api")})

        def cycle(http: httpx.Client, name: str) -> None:
            job = http.post("/api/training/submit", json={"name": name}).json()
            http.post(f"/api/training/cancel/{job['job_id']}")
            custom.delete_namespaced_custom_object(GROUP, VERSION, s.namespace, PLURAL, name)

        with s.http(token) as http:
            for name in names:  # the cancelled ones go too, as in the cycles
                custom.delete_namespaced_custom_object(GROUP, VERSION, s.namespace, PLURAL, name)
            for i in range(50):  # warm-up: allocate what steady state needs
                cycle(http, f"w{i:04d}")
            before = {n: sampler.rss(n) for n in ("operator", "api")}
            start = time.monotonic()
            for i in range(args.cycles):
                cycle(http, f"l{i:05d}")
            elapsed = time.monotonic() - start
            after = {n: sampler.rss(n) for n in ("operator", "api")}
        result["leak_check"] = {
            "cycles": args.cycles,
            "seconds": elapsed,
            **{f"{n}_rss_mib_before": before[n] / 2**20 for n in before},
            **{f"{n}_rss_mib_after": after[n] / 2**20 for n in after},
            **{f"{n}_rss_growth_ratio": after[n] / before[n] for n in before},
            "processes": sampler.stop(),
        }
    return result


GRACE, MARGIN = 1, 1  # the Pods' grace period, and the operator's margin past it


class JobClock:
    """Watches TrainingJobs and records when each was first seen `cancelled`."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.namespace = namespace
        self.cancelled: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="job clock", daemon=True)

    def start(self) -> JobClock:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()

    def _watch(self) -> None:
        listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        version = listing["metadata"]["resourceVersion"]
        while not self._stop.is_set():
            for event in watch.Watch().stream(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                PLURAL, resource_version=version, timeout_seconds=5,
            ):  # fmt: skip
                body = event["object"]
                version = body["metadata"]["resourceVersion"]
                if (body.get("status") or {}).get("phase") == "cancelled":
                    self.cancelled.setdefault(body["metadata"]["name"], time.monotonic())
                if self._stop.is_set():
                    return


def forced(args: argparse.Namespace) -> dict[str, Any]:
    """`--forced` running jobs whose Pods ignore SIGTERM (grace 1 s), cancelled all at
    once (one client each); from each request to the job `cancelled` and to its Pod
    gone (watches of this process), minus grace + margin."""
    env = {"SHUNTER_MAX_RUNNING": str(args.forced), "SHUNTER_GRACE_MARGIN_SECONDS": str(MARGIN)}
    api_env = {**AUTH, "SHUNTER_API_CANCEL_WAIT_SECONDS": "0"}  # as bench.latency
    with system(operator_env=env, api_env=api_env) as s:
        token = user_token(s)
        clock = PodClock(s.api, s.namespace).start()
        jobs = JobClock(s.api, s.namespace).start()
        names = [f"f{i:04d}" for i in range(args.forced)]
        s.bulk_create(names, labels={"sim.shunter.dev/hang-on-delete": "true"}, grace=GRACE)
        pods = [f"{n}-trainer" for n in names]
        clock.wait(lambda: all(p in clock.running for p in pods), 600, "running")
        count = WriteCount(s)

        paths = {f"/api/training/cancel/{n}": n for n in names}
        posted = asyncio.run(post_each(s.base_url, list(paths), token=token, clients=len(names)))
        refused = [p for p in posted if p.status != 200]
        assert not refused, refused[:5]
        started = {paths[p.path]: p.started for p in posted}
        answers = [p.seconds for p in posted]
        clock.wait(lambda: all(p in clock.deleted for p in pods), 600, "pods gone")
        deadline = time.monotonic() + 600
        while not all(n in jobs.cancelled for n in names):
            if time.monotonic() > deadline:
                raise TimeoutError("bench: the jobs did not all say cancelled")
            time.sleep(0.2)
        clock.stop()
        jobs.stop()
        writes = count.made(len(names))
        stages = forced_stages(s, started, clock.deleted, jobs.cancelled)
        gone = [clock.deleted[f"{n}-trainer"] - started[n] - GRACE - MARGIN for n in names]
        done = [jobs.cancelled[n] - started[n] - GRACE - MARGIN for n in names]
        both = [max(a, b) for a, b in zip(gone, done, strict=True)]
        return {
            "jobs": len(names),
            "answer": summary(answers),
            "pod_gone_minus_grace_and_margin": summary(gone),
            "cancelled_minus_grace_and_margin": summary(done),
            "both_minus_grace_and_margin": summary(both),
            "writes": writes,
            "stages": stages,
        }


def forced_stages(
    s: System, started: dict[str, float], gone: dict[str, float], cancelled: dict[str, float]
) -> dict[str, dict[str, float]]:
    """Where a forced cancel's time goes, per job, from the times its stop recorded in
    status.termination (the operator's clock, the same machine's, to the millisecond):
    the request to the operator's decision; the force delete's lateness past the
    decision + grace + margin; the force delete to the Pod gone (this process's watch);
    the Pod gone to the job `cancelled`."""
    shift = time.time() - time.monotonic()  # wall clock -> this process's monotonic
    names = ("request_to_decision", "force_after_deadline", "force_to_pod_gone",
             "pod_gone_to_cancelled")  # fmt: skip
    stages: dict[str, list[float]] = {stage: [] for stage in names}
    for job in s.list_jobs():
        name = job["metadata"]["name"]
        stop = (job.get("status") or {}).get("termination") or {}
        if name not in started or not stop.get("requestedAt") or not stop.get("forceDeleteAt"):
            continue
        decided = parse_time(stop["requestedAt"]).timestamp() - shift  # type: ignore[union-attr]
        forced = parse_time(stop["forceDeleteAt"]).timestamp() - shift  # type: ignore[union-attr]
        stages["request_to_decision"].append(decided - started[name])
        stages["force_after_deadline"].append(forced - decided - GRACE - MARGIN)
        stages["force_to_pod_gone"].append(gone[f"{name}-trainer"] - forced)
        stages["pod_gone_to_cancelled"].append(cancelled[name] - gone[f"{name}-trainer"])
    return {stage: summary(values) for stage, values in stages.items()}


def scale(args: argparse.Namespace) -> dict[str, Any]:
    env = {"SHUNTER_MAX_RUNNING": "100"}
    with system(operator_env=env, api_env=AUTH) as s:
        token = user_token(s)
        sampler = Sampler({"operator": s.pid("shunter-operator"), "api": s.pid("shunter-api")})
        names = [f"s{i:05d}" for i in range(args.scale)]
        start = time.monotonic()
        s.bulk_create(names, gpus=8, annotations={"sim.shunter.dev/run-for": "5s"})
        created = time.monotonic() - start
        with s.http(token) as http:
            wait_cached(http, 1)
            queue = wrk(s.base_url, ["/api/training/queue"], token=token, seconds=args.seconds)
            body = http.get("/api/training/queue", params={"limit": 1}).json()
            pauses = gc_pauses(http.get("/metrics").text)
        completed = sum(
            1 for job in s.list_jobs() if (job.get("status") or {}).get("phase") == "completed"
        )
        return {
            "jobs": args.scale,
            "create_seconds": created,
            "seconds_observed": time.monotonic() - start,
            "completed_meanwhile": completed,
            "queued_after": body["queued_count"],
            "running_after": body["running_count"],
            "get_queue": queue,
            "api_gc_pauses": pauses,
            "processes": sampler.stop(),
        }


def api_latency(before: str, after: str, route: str) -> dict[str, float]:
    """The API's own latency histogram (shunter_api_request_seconds) of the POST
    routes whose path has `route`, between two reads of its /metrics: requests per
    bucket's upper bound (seconds), counted from when its middleware saw them."""

    def buckets(metrics: str) -> dict[str, float]:
        found: dict[str, float] = {}
        for family in text_string_to_metric_families(metrics):
            if family.name != "shunter_api_request_seconds":
                continue
            for sample in family.samples:
                labels = sample.labels
                if (sample.name.endswith("_bucket") and labels.get("method") == "POST"
                        and route in labels.get("route", "")):  # fmt: skip
                    found[labels["le"]] = found.get(labels["le"], 0.0) + sample.value
        return found

    first, last = buckets(before), buckets(after)
    return {le: last[le] - first.get(le, 0.0) for le in last}


def gc_pauses(metrics: str) -> dict[str, float]:
    """The API's full (generation 2) collections from its /metrics: how many, their
    total seconds, and how many took longer than 0.1 s."""
    values: dict[str, float] = {}
    for line in metrics.splitlines():
        if line.startswith("shunter_api_gc_pause_seconds") and 'generation="2"' in line:
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    count = values.get('shunter_api_gc_pause_seconds_count{generation="2"}', 0.0)
    short = values.get('shunter_api_gc_pause_seconds_bucket{generation="2",le="0.1"}', 0.0)
    return {
        "full_collections": count,
        "seconds": values.get('shunter_api_gc_pause_seconds_sum{generation="2"}', 0.0),
        "over_0_1_s": count - short,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--cycles", type=int, default=2000)
    parser.add_argument("--scale", type=int, default=50_000, help="0 skips the scale run")
    parser.add_argument("--forced", type=int, default=200, help="0 skips the forced cancels")
    parser.add_argument(
        "--only", choices=("reads", "writes", "forced"), help="only this part (and --scale)"
    )
    args = parser.parse_args()
    result: dict[str, Any] = {"jobs": args.jobs}
    if args.only in (None, "reads"):
        result.update(reads(args))
    if args.only in (None, "writes"):
        result.update(writes(args))
    if args.forced and args.only in (None, "forced"):
        result["forced_cancels"] = forced(args)
    if args.scale:
        result["scale"] = scale(args)

    rows: list[tuple[str, Any]] = []
    if "get_live" in result:
        for key in ("get_healthz", "get_status", "get_status_again", "get_queue", "get_live"):
            for q in ("req_per_s", "p50", "p99", "non_2xx", "socket_errors"):
                rows.append((f"{key} {q}", result[key][q]))
        rows.append(("status / healthz req/s (first reads)", result["status_over_healthz"]))
        rows.append(("status / healthz req/s (again)", result["status_again_over_healthz"]))
        rows.append(("live / healthz req/s", result["live_over_healthz"]))
    if "post_cancel" in result:
        for q in ("req_per_s", "p50", "p99", "errors"):
            rows.append((f"post_cancel {q}", result["post_cancel"][q]))
        made = result["post_cancel_writes"]
        rows.append(("post_cancel writes per job (until all cancelled)", made["writes_per_job"]))
        rows += [(f"  {kind}", n) for kind, n in made["by_kind"].items()]
        rows += [
            (f"leak {k}", v) for k, v in result["leak_check"].items() if not isinstance(v, dict)
        ]
    if "forced_cancels" in result:
        forced_result = result["forced_cancels"]
        for key in ("answer", "pod_gone_minus_grace_and_margin",
                    "cancelled_minus_grace_and_margin", "both_minus_grace_and_margin"):  # fmt: skip
            rows += [(f"forced {key} {q}", forced_result[key][q]) for q in ("p50", "p99", "max")]
        for stage, value in forced_result["stages"].items():
            rows += [(f"forced stage {stage} {q}", value[q]) for q in ("p50", "p99", "max")]
        made = forced_result["writes"]
        rows.append(("forced writes per job", made["writes_per_job"]))
        rows += [(f"  {kind}", n) for kind, n in made["by_kind"].items()]
    if args.scale:
        big = result["scale"]
        rows += [(f"scale {k}", v) for k, v in big.items() if not isinstance(v, dict)]
        rows += [(f"scale get_queue {q}", big["get_queue"][q]) for q in ("req_per_s", "p50", "p99")]
        rows += [(f"scale api gc gen2 {k}", v) for k, v in big["api_gc_pauses"].items()]
        rows += [
            (f"scale {name} peak RSS MiB", big["processes"][name]["peak_rss_mib"])
            for name in ("operator", "api")
        ]
    table(f"API with {args.jobs} jobs, auth on", rows)
    print(f"\nwrote {write_result('api', result)}")


if __name__ == "__main__":
    main()
