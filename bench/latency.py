"""Latencies of Shunter against Kubernetes' own Job controller, in one run.

    python -m bench.latency [--jobs 200] [--chain 100]

Measured from this process with Pod watches (monotonic clock):
- submit -> Pod created, with free slots: TrainingJob (operator) vs batch/v1 Job
  (kube-controller-manager's Job controller) on the same cluster;
- POST /cancel -> Pod object gone, graceful path, vs deleting the batch/v1 Job;
- POST /cancel -> Pod gone, forced path (Pods that ignore SIGTERM), minus grace + margin;
- admission: a slot freed (Pod Succeeded) -> the next job's Pod created, limit 1.
"""

from __future__ import annotations

import argparse
import itertools
import time
from typing import Any

from kubernetes import client

from bench.harness import PodClock, batch_job, parallel, summary, system, table, write_result

GRACE, MARGIN = 1, 1


def peer_jobs(sys_: Any, clock: PodClock, count: int) -> dict[str, Any]:
    batch = client.BatchV1Api(sys_.api)
    created: dict[str, float] = {}
    for i in range(count):
        name = f"peer-{i:04d}"
        created[name] = time.monotonic()
        batch.create_namespaced_job(sys_.namespace, batch_job(name))
    pods: dict[str, str] = {}

    def all_running() -> bool:
        for pod, _ in clock.running.items():
            if pod.startswith("peer-"):
                pods[pod.rsplit("-", 1)[0]] = pod
        return len(pods) == count

    clock.wait(all_running, 300, "peer pods to run")
    create_to_pod = [clock.added[pods[n]] - created[n] for n in created]
    deleted: dict[str, float] = {}
    for name in created:
        deleted[name] = time.monotonic()
        batch.delete_namespaced_job(name, sys_.namespace, propagation_policy="Background")
    clock.wait(lambda: all(pods[n] in clock.deleted for n in created), 300, "peer pods gone")
    delete_to_gone = [clock.deleted[pods[n]] - deleted[n] for n in created]
    return {"create_to_pod": summary(create_to_pod), "delete_to_pod_gone": summary(delete_to_gone)}


def cancel_all(http: Any, names: list[str], clock: PodClock, *, workers: int) -> dict[str, float]:
    started: dict[str, float] = {}

    def one(name: str) -> None:
        started[name] = time.monotonic()
        response = http.post(f"/api/training/cancel/{name}")
        assert response.status_code == 200, response.text

    parallel(one, names, workers=workers)
    clock.wait(lambda: all(f"{n}-trainer" in clock.deleted for n in names), 600, "pods gone")
    return {n: clock.deleted[f"{n}-trainer"] - started[n] for n in names}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--chain", type=int, default=100)
    args = parser.parse_args()
    result: dict[str, Any] = {"jobs": args.jobs, "chain": args.chain}
    operator_env = {
        "SHUNTER_MAX_RUNNING": str(args.jobs * 3),
        "SHUNTER_GRACE_MARGIN_SECONDS": str(MARGIN),
    }
    with system(operator_env=operator_env, api_env={"SHUNTER_API_CANCEL_WAIT_SECONDS": "0"}) as s:
        clock = PodClock(s.api, s.namespace).start()
        graceful = [f"g{i:04d}" for i in range(args.jobs)]
        created = s.create_jobs(graceful)
        clock.wait(lambda: all(f"{n}-trainer" in clock.running for n in graceful), 600, "running")
        submit = [clock.added[f"{n}-trainer"] - created[n] for n in graceful]
        with s.http() as http:
            cancel = cancel_all(http, graceful, clock, workers=1)
            hung = [f"h{i:04d}" for i in range(args.jobs)]
            s.create_jobs(hung, labels={"sim.shunter.dev/hang-on-delete": "true"}, grace=GRACE)
            clock.wait(lambda: all(f"{n}-trainer" in clock.running for n in hung), 600, "hung")
            forced = cancel_all(http, hung, clock, workers=20)
        result["shunter"] = {
            "submit_to_pod": summary(submit),
            "cancel_to_pod_gone_graceful": summary(list(cancel.values())),
            "cancel_to_pod_gone_forced_minus_grace_and_margin": summary(
                [v - GRACE - MARGIN for v in forced.values()]
            ),
        }
        result["peer_batch_v1_job"] = peer_jobs(s, clock, args.jobs)
        clock.stop()

    with system(operator_env={"SHUNTER_MAX_RUNNING": "1"}) as s:
        clock = PodClock(s.api, s.namespace).start()
        chain = [f"a{i:04d}" for i in range(args.chain)]
        s.create_jobs(chain, annotations={"sim.shunter.dev/run-for": "1s"})
        clock.wait(lambda: all(f"{n}-trainer" in clock.finished for n in chain), 900, "chain")
        order = sorted(chain, key=lambda n: clock.added[f"{n}-trainer"])
        gaps = [
            clock.added[f"{b}-trainer"] - clock.finished[f"{a}-trainer"]
            for a, b in itertools.pairwise(order)
        ]
        result["shunter"]["slot_freed_to_next_pod"] = summary(gaps)
        clock.stop()

    sh, peer = result["shunter"], result["peer_batch_v1_job"]
    result["ratios_shunter_over_peer"] = {
        "submit_to_pod_p50": sh["submit_to_pod"]["p50"] / peer["create_to_pod"]["p50"],
        "cancel_to_gone_p50": sh["cancel_to_pod_gone_graceful"]["p50"]
        / peer["delete_to_pod_gone"]["p50"],
    }
    rows = [(f"shunter {k} {q}", v[q]) for k, v in sh.items() for q in ("p50", "p99")]
    rows += [(f"batch/v1 {k} {q}", v[q]) for k, v in peer.items() for q in ("p50", "p99")]
    rows += [(f"ratio {k}", v) for k, v in result["ratios_shunter_over_peer"].items()]
    table("latency (seconds)", rows)
    print(f"\nwrote {write_result('latency', result)}")


if __name__ == "__main__":
    main()
