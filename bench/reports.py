"""What trainer reports cost (issue 23: "Reports are rate-limited and cheap"): 1,000
running jobs whose trainers each report every 10 s, against the same 1,000 jobs
running without reports.

    python -m bench.reports [--jobs 1000] [--every 10] [--spread S] [--warmup 30]
                            [--seconds 120] [--attribute 30]

The cluster: 125 kwok nodes x 8 GPUs, 1-GPU jobs of an hour (`run-for: 3600s`),
SHUNTER_MAX_RUNNING=1000, and SHUNTER_REPORT_URL set, so every first Pod carries the
report token volume as in production. kwok runs no process, so this process stands
in for the 1,000 trainers: for each job's first Pod it asks the API server for the
token the kubelet would mount (TokenRequest on the namespace's `default`
ServiceAccount, audience `shunter`, bound to the Pod by name and uid), then posts
reports on a fixed schedule (`schedule`): job i at i x every / jobs, then every
`every` seconds, 100 reports a second in all; the step grows, the loss falls, and
about one report in CHECKPOINT_EVERY carries a checkpoint. Like the trainer library
(urllib), every report is a connection of its own.

Two windows of `--seconds` each, measured the same way:
- baseline: the jobs running, nobody reporting;
- reports: after `--warmup` seconds of reports (the first round reviews every token,
  reads every Pod and writes every job's first progress at once; measured too, as
  its own row), the steady state.
In each: CPU seconds and RSS of the API, the operator, PostgreSQL (postmaster and
its backends: the operator mirrors every status change), etcd, kube-apiserver and
the rest of the control plane; the kube-apiserver's request counters (TokenReviews,
Pod reads, status patches and their 409s); the status changes of the jobs as a watch
sees them (what the operator's and the API's informers see), split into the report
channel's writes (only `progress`/`checkpoint` changed) and the operator's; the
operator's log lines, of them "changed since this decision; deciding again" (a 409 on
its status write); the reports' latency, answers and how late the client sent them.
The cost of reports is the difference between the windows. Then (`--attribute`
seconds each, 0 skips) each kind of call the channel makes, alone, at the rate the
report window made it: a TokenReview, a Pod read, a progress patch (what each costs
kube-apiserver, etcd, and for a patch the operator and the API's watch).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import psutil
from kubernetes import client, watch
from prometheus_client.parser import text_string_to_metric_families
from tests.support.background import Background

from bench.harness import Sampler, System, percentile, summary, system, table, write_result
from shunter.devcluster import audit
from shunter.domain.model import (
    ATTEMPT_LABEL,
    GROUP,
    PLURAL,
    VERSION,
    Progress,
    format_time,
)
from shunter.domain.podspec import REPORT_VOLUME, pod_name
from shunter.domain.reports import AUDIENCE, PATH
from shunter.kube import Kube, connect
from shunter.kube.resources import PODS, TOKEN_REVIEWS, TRAINING_JOBS

GPUS = 8
CHECKPOINT_EVERY = 30
STEPS_PER_REPORT = 100
TIMELINE_SECONDS = 5
TOKEN_SECONDS = 3600
# Fields of status the report channel writes; a change of any other is the operator's.
REPORT_FIELDS = frozenset({"progress", "checkpoint"})


# -- the trainers' schedule (pure) ---------------------------------------------


@dataclass(frozen=True)
class Send:
    at: float  # seconds from the start of reporting
    job: int  # index of the job
    number: int  # the job's report number, from 0


def schedule(jobs: int, every: float, seconds: float, *, spread: float | None = None) -> list[Send]:
    """Every report sent in [0, seconds), in time order: job i first at i x spread /
    jobs (spread: `every` unless given), then every `every` seconds, so once every job
    has started, jobs / every reports a second, evenly spread. With spread = every all
    jobs start within one period, as after a restart of the API (every cache empty);
    a longer spread puts them at other phases of the API's caches, as jobs that
    started at different times are."""
    start = every if spread is None else spread
    sends = [
        Send(at, job, number)
        for job in range(jobs)
        for number, at in enumerate(_times(job * start / jobs, every, seconds))
    ]
    return sorted(sends, key=lambda s: (s.at, s.job))


def _times(first: float, every: float, seconds: float) -> list[float]:
    count = max(0, math.ceil((seconds - first) / every))
    return [first + k * every for k in range(count)]


def has_checkpoint(send: Send) -> bool:
    """About one report in CHECKPOINT_EVERY, each job's at its own offset (the
    checkpoints of 1,000 jobs are spread over time, not all in one round)."""
    return (send.number + send.job) % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1


def report_body(send: Send, *, job_uid: str, attempt: int, now: datetime) -> dict[str, Any]:
    """What the trainer library posts: the step grows with each report, the loss falls."""
    step = (send.number + 1) * STEPS_PER_REPORT
    body: dict[str, Any] = {
        "job_uid": job_uid, "attempt": attempt, "rank": 0, "step": step,
        "total_steps": 1_000_000, "loss": round(2.0 / math.sqrt(step), 6),
        "throughput": 10.0, "checkpoint_on_stop": True,
    }  # fmt: skip
    if has_checkpoint(send):
        body["checkpoint"] = {"step": step, "time": format_time(now),
                              "size_bytes": 2**30, "write_seconds": 3.0}  # fmt: skip
    return body


# -- what the kube-apiserver counted (pure) ------------------------------------

RequestKey = tuple[str, str, str, str]  # verb, resource, subresource, code


def apiserver_requests(text: str) -> dict[RequestKey, float]:
    """apiserver_request_total from the kube-apiserver's /metrics, by (verb, resource,
    subresource, code), summed over the other labels."""
    counts: dict[RequestKey, float] = defaultdict(float)
    # Only its lines: the whole text is megabytes, and parsing it all would hold this
    # process (and the reports it sends) for a second.
    mine = "\n".join(line for line in text.splitlines() if "apiserver_request_total" in line)
    for family in text_string_to_metric_families(mine + "\n"):
        if family.name != "apiserver_request":
            continue
        for sample in family.samples:
            if sample.name != "apiserver_request_total":
                continue
            labels = sample.labels
            key = (labels.get("verb", ""), labels.get("resource", ""),
                   labels.get("subresource", ""), labels.get("code", ""))  # fmt: skip
            counts[key] += sample.value
    return dict(counts)


def apiserver_counts(api: client.ApiClient) -> dict[RequestKey, float]:
    """apiserver_request_total now, read from the kube-apiserver's /metrics (the admin
    kubeconfig's client certificate is in the client's connection pool)."""
    response = api.call_api("GET", f"{api.configuration.host}/metrics")
    return apiserver_requests(bytes(response.read()).decode())


def requests_between(
    before: dict[RequestKey, float], after: dict[RequestKey, float]
) -> dict[RequestKey, int]:
    keys = set(before) | set(after)
    made = {k: round(after.get(k, 0.0) - before.get(k, 0.0)) for k in keys}
    return {k: v for k, v in made.items() if v}


def count(made: dict[RequestKey, int], verb: str, resource: str, subresource: str = "",
          code: str | None = None) -> int:  # fmt: skip
    return sum(n for (v, r, s, c), n in made.items()
               if (v, r, s) == (verb, resource, subresource) and code in (None, c))  # fmt: skip


def audited_writes(lines: list[str]) -> dict[str, int]:
    """Writes in kube-apiserver's audit log (shunter.devcluster.audit) by resource, who
    and answer, e.g. `trainingjobs/status patch api 200`."""
    counts = Counter(f"{w.resource} {w.verb} {w.who} {w.code}" for w in audit.parse(lines))
    return dict(counts)


def report_fields_only(before: dict[str, Any], after: dict[str, Any]) -> bool | None:
    """Whether a status change touched only the report channel's fields (None: no change)."""
    changed = {k for k in set(before) | set(after) if before.get(k) != after.get(k)}
    if not changed:
        return None
    return changed <= REPORT_FIELDS


# -- measuring -------------------------------------------------------------------


class StatusChanges:
    """Counts the jobs' status changes as a watch delivers them, the report channel's
    and the operator's apart."""

    def __init__(self, s: System) -> None:
        self.custom = s.custom()
        self.namespace = s.namespace
        self.reports = 0
        self.operator = 0
        self.events = 0
        self._last: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._thread = Background(self._run, name="status changes")

    def start(self) -> StatusChanges:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop(join=False)

    def counts(self) -> dict[str, int]:
        with self._lock:
            return {"events": self.events, "reports": self.reports, "operator": self.operator}

    def _run(self, stop: threading.Event) -> None:
        listing = self.custom.list_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL)
        version = listing["metadata"]["resourceVersion"]
        for job in listing["items"]:
            self._last[job["metadata"]["name"]] = job.get("status") or {}
        while not stop.is_set():
            for event in watch.Watch().stream(
                self.custom.list_namespaced_custom_object, GROUP, VERSION, self.namespace,
                PLURAL, resource_version=version, timeout_seconds=30,
            ):  # fmt: skip
                job = event["object"]
                version = job["metadata"]["resourceVersion"]
                name, status = job["metadata"]["name"], job.get("status") or {}
                only = report_fields_only(self._last.get(name, {}), status)
                self._last[name] = status
                with self._lock:
                    self.events += 1
                    if only is True:
                        self.reports += 1
                    elif only is False:
                        self.operator += 1
                if stop.is_set():
                    return


def _tree_cpu(pid: int) -> dict[int, float]:
    """CPU seconds of a process and each of its children (PostgreSQL's backends)."""
    root = psutil.Process(pid)
    cpu: dict[int, float] = {}
    for proc in (root, *root.children(recursive=True)):
        try:
            cpu[proc.pid] = sum(proc.cpu_times()[:2])
        except psutil.Error:
            continue
    return cpu


def _tree_rss(pid: int) -> float:
    root = psutil.Process(pid)
    total = 0
    for proc in (root, *root.children(recursive=True)):
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total / 2**20


@dataclass
class Snapshot:
    """The counters at one moment, to subtract."""

    at: float
    requests: dict[RequestKey, float]
    status: dict[str, int]
    log_offset: int
    audit_offset: int
    postgres_cpu: dict[int, float]
    api_metrics: dict[str, float]


@dataclass
class Probe:
    s: System
    changes: StatusChanges
    postgres_pid: int
    log: Path = field(init=False)
    audit: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.s.state / "logs" / "shunter-operator.log"
        self.audit = self.s.plane.audit_log

    def snapshot(self) -> Snapshot:
        return Snapshot(
            at=time.monotonic(),
            requests=apiserver_counts(self.s.api),
            status=self.changes.counts(),
            log_offset=self.log.stat().st_size,
            audit_offset=self.audit.stat().st_size,
            postgres_cpu=_tree_cpu(self.postgres_pid),
            api_metrics=api_report_counts(self._api_metrics()),
        )

    def _api_metrics(self) -> str:
        with self.s.http() as http:
            return http.get("/metrics").text

    def between(self, a: Snapshot, b: Snapshot) -> dict[str, Any]:
        made = requests_between(a.requests, b.requests)
        lines = _lines(self.log, a.log_offset, b.log_offset)
        writes = audited_writes(_lines(self.audit, a.audit_offset, b.audit_offset))
        postgres = sum(cpu - a.postgres_cpu.get(pid, 0.0) for pid, cpu in b.postgres_cpu.items())
        seconds = b.at - a.at
        api = {k: round(b.api_metrics.get(k, 0.0) - a.api_metrics.get(k, 0.0))
               for k in set(a.api_metrics) | set(b.api_metrics)}  # fmt: skip
        return {
            "seconds": seconds,
            "token_reviews": count(made, "POST", "tokenreviews"),
            "pod_gets": count(made, "GET", "pods"),
            "status_patches": count(made, "PATCH", "trainingjobs", "status"),
            "status_patches_409": count(made, "PATCH", "trainingjobs", "status", "409"),
            "apiserver_requests": sum(made.values()),
            "apiserver_requests_by_kind": {"/".join(k): v for k, v in sorted(made.items())},
            "audited_writes": writes,
            "status_patches_by_api": sum(
                n for k, n in writes.items() if k.startswith("trainingjobs/status patch api")
            ),
            "status_patches_by_operator": sum(
                n for k, n in writes.items() if k.startswith("trainingjobs/status patch operator")
            ),
            "status_changes_seen": {k: b.status[k] - a.status[k] for k in b.status},
            "operator_log_lines": len(lines),
            "operator_deciding_again": sum("deciding again" in line for line in lines),
            "postgres_cpu_seconds": postgres,
            "api_report_answers": {k: v for k, v in api.items() if v},
        }


def _lines(path: Path, start: int, end: int) -> list[str]:
    with path.open("rb") as f:
        f.seek(start)
        return f.read(end - start).decode(errors="replace").splitlines()


def api_report_counts(text: str) -> dict[str, float]:
    """The API's own count of report answers by status (its /metrics)."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if (sample.name == "shunter_api_requests_total"
                    and sample.labels.get("route") == PATH):  # fmt: skip
                counts[sample.labels["status"]] = sample.value
    return counts


def measure(probe: Probe, seconds: float, pids: dict[str, int]) -> dict[str, Any]:
    """A window of `seconds` with whatever load runs meanwhile."""
    load = os.getloadavg()
    sampler = Sampler(pids)
    start = probe.snapshot()
    time.sleep(seconds)
    end = probe.snapshot()
    return {**_window(probe, sampler, start, end), "load_before": load}


def _window(probe: Probe, sampler: Sampler, a: Snapshot, b: Snapshot) -> dict[str, Any]:
    usage = sampler.stop()
    return {
        **probe.between(a, b),
        "processes": usage,
        "rss_mib_end": {n: sampler.rss(n) / 2**20 for n in sampler.procs},
        "postgres_rss_mib_end": _tree_rss(probe.postgres_pid),
        "load_after": os.getloadavg(),
    }


# -- the trainers ------------------------------------------------------------------


@dataclass(frozen=True)
class Trainer:
    job: str
    uid: str
    attempt: int
    token: str


async def tokens(s: System, targets: list[tuple[str, str, str, int]]) -> list[Trainer]:
    """Each first Pod's token (TokenRequest bound to the Pod, audience shunter), as
    the kubelet would mount it; targets are (job, job uid, Pod uid, attempt)."""
    kube = Kube(connect(s.plane.kubeconfig))
    gate = asyncio.Semaphore(16)
    path = f"/api/v1/namespaces/{s.namespace}/serviceaccounts/default/token"

    async def one(job: str, uid: str, pod_uid: str, attempt: int) -> Trainer:
        pod = pod_name(job, 0, nodes=1)
        body = {
            "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [AUDIENCE], "expirationSeconds": TOKEN_SECONDS,
                     "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": pod,
                                        "uid": pod_uid}},
        }  # fmt: skip
        async with gate:
            answer = await kube.request("POST", path, body=body, what=f"a token for {pod}")
        return Trainer(job, uid, attempt, answer["status"]["token"])

    try:
        return list(await asyncio.gather(*(one(*t) for t in targets)))
    finally:
        await kube.close()


@dataclass
class Answers:
    latency: list[float] = field(default_factory=list)
    checkpoint_latency: list[float] = field(default_factory=list)
    late: list[float] = field(default_factory=list)  # sent this long after its time
    codes: Counter[str] = field(default_factory=Counter)
    refusals: Counter[str] = field(default_factory=Counter)
    # By TIMELINE_SECONDS of the schedule: (latency, answer) of each report sent then.
    timeline: dict[int, list[tuple[float, str]]] = field(default_factory=lambda: defaultdict(list))

    def summary(self) -> dict[str, Any]:
        return {
            "timeline": {
                int(bucket * TIMELINE_SECONDS): {
                    "reports": len(seen),
                    "p50": percentile([t for t, _ in seen], 50),
                    "p99": percentile([t for t, _ in seen], 99),
                    "max": max(t for t, _ in seen),
                    "refused": sum(code != "200" for _, code in seen),
                }
                for bucket, seen in sorted(self.timeline.items())
            },
            "reports": len(self.latency),
            "latency": summary(self.latency),
            "checkpoint_latency": summary(self.checkpoint_latency),
            "sent_late": summary(self.late),
            "codes": dict(self.codes),
            "refusals": dict(self.refusals.most_common(5)),
        }


async def report(
    base_url: str, trainers: list[Trainer], *, every: float, spread: float | None, warmup: float,
    seconds: float, probe: Probe, pids: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    """Post the schedule's reports (each on a connection of its own, as urllib does)
    and measure the warm-up and the window after it."""
    plan = schedule(len(trainers), every, warmup + seconds, spread=spread)
    warm, steady = Answers(), Answers()
    connector = aiohttp.TCPConnector(force_close=True, limit=0)
    timeout = aiohttp.ClientTimeout(total=30)
    tasks: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(base_url, connector=connector, timeout=timeout) as http:

        async def send(item: Send, due: float) -> None:
            trainer = trainers[item.job]
            answers = warm if item.at < warmup else steady
            body = report_body(item, job_uid=trainer.uid, attempt=trainer.attempt,
                               now=datetime.now(UTC))  # fmt: skip
            sent = time.monotonic()
            answers.late.append(sent - due)
            try:
                async with http.post(PATH, json=body,
                                     headers={"Authorization": f"Bearer {trainer.token}"}
                                     ) as response:  # fmt: skip
                    text = await response.text()
                    code = str(response.status)
            except (aiohttp.ClientError, TimeoutError) as exc:
                code, text = type(exc).__name__, str(exc)
            took = time.monotonic() - sent
            answers.codes[code] += 1
            if code != "200":
                answers.refusals[f"{code} {text[:120]}"] += 1
            answers.latency.append(took)
            answers.timeline[int(item.at // TIMELINE_SECONDS)].append((took, code))
            if "checkpoint" in body:
                answers.checkpoint_latency.append(took)

        load_before = os.getloadavg()
        start = time.monotonic()
        first = await asyncio.to_thread(probe.snapshot)
        warm_sampler = Sampler(pids)
        marks: dict[str, Any] = {}

        async def at_marks() -> None:
            await asyncio.sleep(max(0.0, start + warmup - time.monotonic()))
            marks["warm_end"] = await asyncio.to_thread(probe.snapshot)
            marks["warm"] = await asyncio.to_thread(
                _window, probe, warm_sampler, first, marks["warm_end"]
            )
            marks["load"] = os.getloadavg()
            marks["sampler"] = Sampler(pids)
            await asyncio.sleep(max(0.0, start + warmup + seconds - time.monotonic()))
            marks["end"] = await asyncio.to_thread(probe.snapshot)

        marker = asyncio.create_task(at_marks())
        for item in plan:
            due = start + item.at
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(item, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        await marker
        steady_window = _window(probe, marks["sampler"], marks["warm_end"], marks["end"])
        warm_window = marks["warm"]
        await asyncio.gather(*tasks)
    return {
        "warmup": {**warm_window, "load_before": load_before, "answers": warm.summary()},
        "reports": {**steady_window, "load_before": marks["load"], "answers": steady.summary()},
    }


# -- where the control plane's share goes ---------------------------------------------


async def attribute(
    s: System, trainers: list[Trainer], rates: dict[str, float], *, seconds: float,
    probe: Probe, pids: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    """Each kind of call the report channel makes, alone, straight from this process
    at the rate the report window made it, for `seconds` each: what one TokenReview,
    one Pod read and one progress patch cost kube-apiserver and etcd, and what a
    progress patch costs the operator (and the API's watch cache) with no report
    behind it."""
    kube = Kube(connect(s.plane.kubeconfig))
    ns = s.namespace
    steps = 10**9  # beyond any reported step: the patches are the newest progress

    async def review(i: int) -> None:
        token = trainers[i % len(trainers)].token
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                "spec": {"token": token, "audiences": [AUDIENCE]}}  # fmt: skip
        await kube.create(TOKEN_REVIEWS, body)

    async def read_pod(i: int) -> None:
        await kube.get(PODS, pod_name(trainers[i % len(trainers)].job, 0, nodes=1), namespace=ns)

    async def patch(i: int) -> None:
        trainer = trainers[i % len(trainers)]
        progress = Progress(step=steps + i, reported_at=datetime.now(UTC),
                            attempt=trainer.attempt, total_steps=2 * steps)  # fmt: skip
        await kube.patch(TRAINING_JOBS, trainer.job, {"status": {"progress": progress.to_raw()}},
                         namespace=ns, sub="status")  # fmt: skip

    calls = {"token_reviews": review, "pod_gets": read_pod, "status_patches": patch}
    out: dict[str, Any] = {}
    try:
        for kind, rate in rates.items():
            if rate <= 0:
                continue
            sampler = Sampler(pids)
            before = await asyncio.to_thread(probe.snapshot)
            start = time.monotonic()
            tasks = []
            for i in range(int(rate * seconds)):
                await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
                tasks.append(asyncio.create_task(calls[kind](i)))
            await asyncio.gather(*tasks)
            after = await asyncio.to_thread(probe.snapshot)
            out[kind] = {"rate": rate, **_window(probe, sampler, before, after)}
            await asyncio.sleep(5)  # the operator's and the API's watches catch up
    finally:
        await kube.close()
    return out


# -- the run ------------------------------------------------------------------------


def running(s: System, jobs: int, *, timeout: float = 1200) -> None:
    deadline = time.monotonic() + timeout
    while True:
        counts = s.phase_counts()
        if counts.get("running", 0) >= jobs:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"bench: {counts} after {timeout:.0f}s, want {jobs} running")
        time.sleep(2)


def targets(s: System) -> list[tuple[str, str, str, int]]:
    """(job, job uid, first Pod's uid, attempt) of every running job."""
    pods = {
        p.metadata.name: p for p in client.CoreV1Api(s.api).list_namespaced_pod(s.namespace).items
    }
    found = []
    for job in s.list_jobs():
        name, status = job["metadata"]["name"], job.get("status") or {}
        pod = pods.get(pod_name(name, 0, nodes=1))
        attempt = int(status.get("attempts") or 0)
        if status.get("phase") != "running" or pod is None:
            continue
        if (pod.metadata.labels or {}).get(ATTEMPT_LABEL) != str(attempt):
            continue
        if REPORT_VOLUME not in {v.name for v in pod.spec.volumes or ()}:
            raise SystemExit(f"bench: Pod {pod.metadata.name} has no report token volume")
        found.append((name, job["metadata"]["uid"], pod.metadata.uid, attempt))
    return found


def default_account(s: System, *, timeout: float = 60) -> None:
    """Wait for the namespace's default ServiceAccount (kube-controller-manager makes it)."""
    core = client.CoreV1Api(s.api)
    deadline = time.monotonic() + timeout
    while True:
        try:
            core.read_namespaced_service_account("default", s.namespace)
            return
        except client.ApiException:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def run(args: argparse.Namespace) -> dict[str, Any]:
    # Any URL: kwok runs no trainer to use it; set, it gives every first Pod the token.
    url = f"http://shunter-api.shunter-system.svc{PATH}"
    operator_env = {"SHUNTER_MAX_RUNNING": str(args.jobs), "SHUNTER_REPORT_URL": url}
    name = os.environ.get("SHUNTER_BENCH_CLUSTER", "bench-reports")
    nodes = math.ceil(args.jobs / GPUS)  # 1-GPU jobs: 125 nodes for 1,000
    with system(nodes=nodes, gpus_per_node=GPUS, operator_env=operator_env, name=name) as s:
        started = time.monotonic()
        s.bulk_create([f"r{i:05d}" for i in range(args.jobs)],
                      annotations={"sim.shunter.dev/run-for": "3600s"})  # fmt: skip
        running(s, args.jobs)
        admitted = time.monotonic() - started
        print(f"bench: {args.jobs} jobs running after {admitted:.0f}s", flush=True)
        default_account(s)
        found = targets(s)
        if len(found) != args.jobs:
            raise SystemExit(f"bench: {len(found)} first Pods of running jobs, want {args.jobs}")
        trainers = asyncio.run(tokens(s, found))
        changes = StatusChanges(s).start()
        postgres = int((s.state.with_name(f"{s.state.name}-postgres") / "data" / "postmaster.pid")
                       .read_text().split()[0])  # fmt: skip
        probe = Probe(s, changes, postgres)
        pids = {"api": s.pid("shunter-api"), "operator": s.pid("shunter-operator"),
                **s.control_plane_pids()}  # fmt: skip
        time.sleep(args.settle)  # the admission's Events and mirror rows have gone out
        print(f"bench: baseline window, {args.seconds:.0f}s", flush=True)
        baseline = measure(probe, args.seconds, pids)
        print(f"bench: reports, {args.warmup:.0f}s warm-up + {args.seconds:.0f}s", flush=True)
        measured = asyncio.run(report(
            s.base_url, trainers, every=args.every, spread=args.spread, warmup=args.warmup,
            seconds=args.seconds, probe=probe, pids=pids,
        ))  # fmt: skip
        window = measured["reports"]
        rates = {k: window[k] / window["seconds"] for k in ("token_reviews", "pod_gets",
                                                              "status_patches")}  # fmt: skip
        if args.attribute:
            # The last reports' progress is written up to 30 s later (the API's
            # PROGRESS_WRITE_SECONDS): let it go out before the calls are measured alone.
            time.sleep(35)
        alone = asyncio.run(attribute(s, trainers, rates if args.attribute else {},
                                      seconds=args.attribute, probe=probe, pids=pids))  # fmt: skip
        changes.stop()
        return {
            "alone": alone,
            "jobs": args.jobs, "every": args.every, "spread": args.spread,
            "window_seconds": args.seconds, "warmup_seconds": args.warmup,
            "admitted_seconds": admitted, "baseline": baseline, **measured,
        }  # fmt: skip


COUNTED = ("token_reviews", "pod_gets", "status_patches", "status_patches_409",
           "status_patches_by_api", "status_patches_by_operator",
           "apiserver_requests", "operator_log_lines", "operator_deciding_again")  # fmt: skip


def rows(result: dict[str, Any]) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for window in ("baseline", "warmup", "reports"):
        w = result[window]
        seconds = w["seconds"]
        out.append((f"{window}: seconds", seconds))
        for name in ("api", "operator", "kube-apiserver", "etcd", "kwok",
                     "kube-controller-manager", "kube-scheduler", "bench client",
                     "other processes"):  # fmt: skip
            out.append((f"{window}: {name} CPU s", w["processes"][name]["cpu_seconds"]))
        out.append((f"{window}: postgres CPU s", w["postgres_cpu_seconds"]))
        for name in ("api", "operator"):
            out.append((f"{window}: {name} RSS MiB end / peak",
                        f"{w['rss_mib_end'][name]:.1f} / "
                        f"{w['processes'][name]['peak_rss_mib']:.1f}"))  # fmt: skip
        for key in COUNTED:
            out.append((f"{window}: {key}", w[key]))
        out.append((f"{window}: status changes seen", w["status_changes_seen"]))
        out.append((f"{window}: load avg before / after",
                    f"{w['load_before'][0]:.2f} / {w['load_after'][0]:.2f}"))  # fmt: skip
        if "answers" in w:
            a = w["answers"]
            out.append((f"{window}: reports / codes", f"{a['reports']} {a['codes']}"))
            out.append((f"{window}: API's count", w["api_report_answers"]))
            for key in ("latency", "checkpoint_latency", "sent_late"):
                q = a[key]
                shown = f"{q['p50']:.4f} / {q['p99']:.4f} / {q['max']:.4f}"
                out.append((f"{window}: {key} p50 / p99 / max", shown))
            if a["refusals"]:
                out.append((f"{window}: refusals", a["refusals"]))
    for kind, w in result.get("alone", {}).items():
        out.append((f"alone {kind}: rate /s, calls", f"{w['rate']:.1f}, {w[kind]}"))
        for name in ("kube-apiserver", "etcd", "operator", "api", "bench client"):
            out.append((f"alone {kind}: {name} CPU s", w["processes"][name]["cpu_seconds"]))
        out.append((f"alone {kind}: postgres CPU s", w["postgres_cpu_seconds"]))
        out.append((f"alone {kind}: seconds", w["seconds"]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--every", type=float, default=10.0, help="seconds between a job's reports")
    parser.add_argument(
        "--spread",
        type=float,
        default=None,
        help="seconds over which the jobs start reporting (default: --every)",
    )
    parser.add_argument("--warmup", type=float, default=30.0)
    parser.add_argument("--seconds", type=float, default=120.0, help="each measured window")
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument(
        "--attribute",
        type=float,
        default=30.0,
        help="seconds of each kind of call alone after the windows (0: none)",
    )
    args = parser.parse_args()
    result = run(args)
    table(f"Reports: {args.jobs} running jobs, one report each per {args.every:.0f}s",
          rows(result))  # fmt: skip
    print(f"\nwrote {write_result('reports', result)}")


if __name__ == "__main__":
    main()
