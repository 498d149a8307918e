"""What a Kubernetes call costs the caller: Shunter's client (`shunter.kube`, aiohttp)
against `kubernetes_asyncio` and the `kubernetes` package (sync, the official one).

    python -m bench.kube_client [--calls 2000] [--concurrency 16]

One local control plane; N TrainingJobs; then, for each client, `--calls` GETs of
those jobs (`--concurrency` in flight: asyncio tasks, or threads for the sync client),
a LIST of all of them, and `--calls` status merge-patches. Reported per client: wall
seconds and this process's CPU seconds per 1,000 calls (the figure that matters when
the operator is the one on a busy core), and the LIST's wall time. Why this bench
exists: the one-Kubernetes-layer issue asks to pick the async client by measurement.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import kubernetes
import kubernetes_asyncio

from bench.harness import System, system, table, write_result
from shunter.domain.model import GROUP, PLURAL, VERSION
from shunter.kube import Kube, connect
from shunter.kube.resources import TRAINING_JOBS

MERGE = "application/merge-patch+json"


def cpu() -> float:
    return time.process_time()


async def gather_limited(n: int, limit: int, call: Callable[[int], Awaitable[Any]]) -> None:
    gate = asyncio.Semaphore(limit)

    async def one(i: int) -> None:
        async with gate:
            await call(i)

    await asyncio.gather(*(one(i) for i in range(n)))


def measure(label: str, results: dict[str, Any], run: Callable[[], None], calls: int) -> None:
    wall, used = time.monotonic(), cpu()
    run()
    results[label] = {
        "wall_s": time.monotonic() - wall,
        "cpu_ms_per_call": (cpu() - used) / calls * 1000,
    }


def ours(s: System, names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}

    async def run(what: str) -> None:
        kube = Kube(connect(s.plane.kubeconfig))
        try:
            if what == "get":
                await gather_limited(args.calls, args.concurrency, lambda i: kube.get(
                    TRAINING_JOBS, names[i % len(names)], namespace=s.namespace))  # fmt: skip
            elif what == "patch":
                await gather_limited(args.calls, args.concurrency, lambda i: kube.patch(
                    TRAINING_JOBS, names[i % len(names)], {"status": {"message": f"m{i}"}},
                    namespace=s.namespace, sub="status"))  # fmt: skip
            else:
                await kube.list(TRAINING_JOBS, namespace=s.namespace)
        finally:
            await kube.close()

    for what, n in (("get", args.calls), ("patch", args.calls), ("list", 1)):
        measure(what, out, lambda w=what: asyncio.run(run(w)), n)
    return out


def kubernetes_asyncio_client(
    s: System, names: list[str], args: argparse.Namespace
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    config, client = kubernetes_asyncio.config, kubernetes_asyncio.client

    async def run(what: str) -> None:
        api = await config.new_client_from_config(config_file=str(s.plane.kubeconfig))
        api.configuration.connection_pool_maxsize = args.concurrency
        custom = client.CustomObjectsApi(api)
        try:
            if what == "get":
                await gather_limited(args.calls, args.concurrency, lambda i: (
                    custom.get_namespaced_custom_object(
                        GROUP, VERSION, s.namespace, PLURAL, names[i % len(names)])))  # fmt: skip
            elif what == "patch":
                await gather_limited(args.calls, args.concurrency, lambda i: (
                    custom.patch_namespaced_custom_object_status(
                        GROUP, VERSION, s.namespace, PLURAL, names[i % len(names)],
                        {"status": {"message": f"m{i}"}}, _content_type=MERGE)))  # fmt: skip
            else:
                await custom.list_namespaced_custom_object(GROUP, VERSION, s.namespace, PLURAL)
        finally:
            await api.close()

    for what, n in (("get", args.calls), ("patch", args.calls), ("list", 1)):
        measure(what, out, lambda w=what: asyncio.run(run(w)), n)
    return out


def kubernetes_sync(s: System, names: list[str], args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    api = kubernetes.config.new_client_from_config(config_file=str(s.plane.kubeconfig))
    api.configuration.connection_pool_maxsize = args.concurrency
    custom = kubernetes.client.CustomObjectsApi(api)

    def threads(fn: Callable[[int], Any]) -> None:
        with ThreadPoolExecutor(args.concurrency) as pool:
            list(pool.map(fn, range(args.calls)))

    measure("get", out, lambda: threads(lambda i: custom.get_namespaced_custom_object(
        GROUP, VERSION, s.namespace, PLURAL, names[i % len(names)])), args.calls)  # fmt: skip
    measure("patch", out, lambda: threads(lambda i: custom.patch_namespaced_custom_object_status(
        GROUP, VERSION, s.namespace, PLURAL, names[i % len(names)],
        {"status": {"message": f"m{i}"}}, _content_type=MERGE)), args.calls)  # fmt: skip
    measure("list", out, lambda: custom.list_namespaced_custom_object(
        GROUP, VERSION, s.namespace, PLURAL), 1)  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    result: dict[str, Any] = {"jobs": args.jobs, "calls": args.calls}
    with system(nodes=1, with_operator=False, name="kube-client") as s:
        s.stop_services()  # only this process talks to the API server
        names = [f"k{i:05d}" for i in range(args.jobs)]
        s.bulk_create(names)
        clients = {
            "shunter.kube (aiohttp)": ours,
            "kubernetes_asyncio": kubernetes_asyncio_client,
            "kubernetes (sync, threads)": kubernetes_sync,
        }
        for label, fn in clients.items():
            fn(s, names, args)  # warm-up: connections, imports, caches
            result[label] = fn(s, names, args)
    rows: list[tuple[str, Any]] = []
    for label in clients:
        for what in ("get", "patch", "list"):
            r = result[label][what]
            rows.append((f"{label}: {what} wall s", r["wall_s"]))
            if what != "list":
                rows.append((f"{label}: {what} CPU ms per call", r["cpu_ms_per_call"]))
    table(f"{args.calls} calls, {args.concurrency} in flight, LIST of {args.jobs}", rows)
    print(f"\nwrote {write_result('kube_client', result)}")


if __name__ == "__main__":
    main()
