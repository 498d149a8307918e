"""API under load: GET /queue and GET /status with N jobs, POST /cancel with 50 clients,
and the leak check (operator and API RSS around many submit/cancel cycles).

    python -m bench.api_load [--jobs 10000] [--seconds 10] [--cycles 2000]

Loads come from this process (asyncio + httpx, loopback only), bounded in count and
time. /queue and /status are measured with the operator stopped, so the figures are
the API's alone; cancel and the cycles run with the operator.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
from typing import Any

import httpx

from bench.harness import Sampler, summary, system, table, write_result


async def hammer(
    base: str, paths: list[str], *, clients: int, seconds: float, method: str = "GET"
) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    deadline = time.monotonic() + seconds
    queue = list(paths)

    async def client_loop(http: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.monotonic() < deadline and (method == "GET" or queue):
            path = random.choice(paths) if method == "GET" else queue.pop()
            start = time.perf_counter()
            response = await http.request(method, path)
            latencies.append(time.perf_counter() - start)
            if response.status_code >= 500:
                errors += 1

    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        start = time.monotonic()
        await asyncio.gather(*(client_loop(http) for _ in range(clients)))
        elapsed = time.monotonic() - start
    return {
        "requests": len(latencies),
        "req_per_s": len(latencies) / elapsed,
        "errors_5xx": errors,
        "clients": clients,
        **summary(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--cycles", type=int, default=2000)
    args = parser.parse_args()
    result: dict[str, Any] = {"jobs": args.jobs}

    with system(with_operator=False) as s:
        names = [f"q{i:05d}" for i in range(args.jobs)]
        s.create_jobs(names)
        with s.http() as http:
            deadline = time.monotonic() + 120
            while http.get("/api/training/queue").json()["queued_count"] < args.jobs:
                assert time.monotonic() < deadline, "the API cache did not fill"
                time.sleep(0.5)
        sampler = Sampler({"api": s.pid("shunter-api")})
        result["get_queue"] = asyncio.run(
            hammer(s.base_url, ["/api/training/queue"], clients=10, seconds=args.seconds)
        )
        status_paths = [f"/api/training/status/{n}" for n in names]
        result["get_status"] = asyncio.run(
            hammer(s.base_url, status_paths, clients=10, seconds=args.seconds)
        )
        result["api_process"] = sampler.stop()["api"]

    env = {"SHUNTER_MAX_RUNNING": "1"}
    with system(operator_env=env, api_env={"SHUNTER_API_CANCEL_WAIT_SECONDS": "0"}) as s:
        names = [f"c{i:05d}" for i in range(1000)]
        s.create_jobs(names)
        result["post_cancel"] = asyncio.run(
            hammer(
                s.base_url,
                [f"/api/training/cancel/{n}" for n in names],
                clients=50,
                seconds=120,
                method="POST",
            )
        )

        sampler = Sampler({"operator": s.pid("shunter-operator"), "api": s.pid("shunter-api")})
        with s.http() as http:
            for i in range(50):  # warm-up: allocate what steady state needs
                job = http.post("/api/training/submit", json={"name": f"w{i:04d}"}).json()
                http.post(f"/api/training/cancel/{job['job_id']}")
            before = {n: sampler.rss(n) for n in ("operator", "api")}
            start = time.monotonic()
            for i in range(args.cycles):
                job = http.post("/api/training/submit", json={"name": f"l{i:05d}"}).json()
                http.post(f"/api/training/cancel/{job['job_id']}")
            elapsed = time.monotonic() - start
            after = {n: sampler.rss(n) for n in ("operator", "api")}
        processes = sampler.stop()
        result["leak_check"] = {
            "cycles": args.cycles,
            "seconds": elapsed,
            **{f"{n}_rss_mib_before": before[n] / 2**20 for n in before},
            **{f"{n}_rss_mib_after": after[n] / 2**20 for n in after},
            **{f"{n}_rss_growth_ratio": after[n] / before[n] for n in before},
            "processes": processes,
        }

    rows: list[tuple[str, Any]] = []
    for key in ("get_queue", "get_status", "post_cancel"):
        for q in ("req_per_s", "p50", "p99", "errors_5xx", "clients"):
            rows.append((f"{key} {q}", result[key][q]))
    rows += [(f"leak {k}", v) for k, v in result["leak_check"].items() if not isinstance(v, dict)]
    table(f"API with {args.jobs} jobs", rows)
    print(f"\nwrote {write_result('api', result)}")


if __name__ == "__main__":
    main()
