"""The soak: mixed REST load with every fault, for as long as you like.

    python -m bench.soak [--minutes 30] [--clients 50] [--submit-share 0.05]

A dedicated local cluster ("soak": 4 kwok nodes x 8 GPUs) and PostgreSQL, two
operator replicas (lease 6 s, renew 1 s) and one API. For `--minutes`, `--clients`
REST clients submit jobs of 1-3 s, cancel some and poll (status, queue, live list,
history), while operator replicas are killed -9 every 4-9 s (each back after 0-8 s),
the API is killed -9 every 8-16 s (restarted at once), PostgreSQL is stopped for 6 s
(at 20 % of the run) and kube-apiserver restarts (at 40 %). Then the checks of
tests/support/soak.py (every job final as its history says, the mirror equal to the
CRs row for row, no orphan Pod, no 5xx but in kube-apiserver's restart window), and
the figures: bench/results/soak.json. Exit status 1 if a check fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time

from tests.support.api import ApiProcess
from tests.support.kube import api_client
from tests.support.operator import LEASE_ENV, Jobs, OperatorProcess
from tests.support.soak import Soak, SoakConfig, assert_soak

from bench.harness import write_result
from shunter.devcluster import demo
from shunter.devcluster.controlplane import ClusterSpec, ControlPlane, default_state_dir
from shunter.devcluster.postgres import LocalPostgres

NAMESPACE = "soak"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--submit-share", type=float, default=0.05)
    parser.add_argument("--cancel-share", type=float, default=0.04)
    parser.add_argument("--max-running", type=int, default=20)
    parser.add_argument("--keep", action="store_true", help="leave the cluster up afterwards")
    args = parser.parse_args()
    config = SoakConfig(seconds=args.minutes * 60, clients=args.clients,
                        submit_share=args.submit_share, cancel_share=args.cancel_share)  # fmt: skip
    state = default_state_dir("soak")
    plane = ControlPlane(state)
    plane.down()
    postgres = LocalPostgres(state.with_name("soak-postgres"))
    postgres.down()
    processes: list[OperatorProcess | ApiProcess] = []
    try:
        kubeconfig = plane.up(ClusterSpec())
        url = postgres.up()
        demo.install_crd(plane)
        plane.apply([{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}])
        logs = state / "logs"
        env = {**LEASE_ENV, "SHUNTER_MAX_RUNNING": str(args.max_running),
               "SHUNTER_GRACE_MARGIN_SECONDS": "1"}  # fmt: skip
        operators = [
            OperatorProcess(
                kubeconfig=kubeconfig,
                namespace=NAMESPACE,
                database_url=url,
                log_path=logs / f"operator-{name}.log",
                env={**env, "SHUNTER_IDENTITY": f"soak-{name}"},
            )
            for name in ("a", "b")
        ]
        api = ApiProcess(
            kubeconfig=kubeconfig, namespace=NAMESPACE, database_url=url,
            log_path=logs / "api.log", env={"SHUNTER_API_CANCEL_WAIT_SECONDS": "2"},
        )  # fmt: skip
        processes = [*operators, api]
        operators[0].start()
        operators[1].start(lead=False)
        api.start()
        jobs = Jobs(api_client(kubeconfig), NAMESPACE)
        started = time.time()
        report = Soak(config, jobs=jobs, operators=operators, api=api, postgres=postgres,
                      control_plane=plane).run()  # fmt: skip
        result: dict[str, object] = {"args": vars(args), "wall_seconds": time.time() - started}
        try:
            figures = assert_soak(report, jobs, url)
        except AssertionError as exc:
            result["failed"] = str(exc)[:5000]
            print(f"soak: FAILED: {str(exc)[:2000]}", file=sys.stderr)
            write_result("soak", result)
            return 1
        result["figures"] = dataclasses.asdict(figures)
        print(json.dumps(result, indent=2))
        print(f"wrote {write_result('soak', result)}")
        return 0
    finally:
        for process in processes:
            process.stop()
        if not args.keep:
            plane.down()
            postgres.down()


if __name__ == "__main__":
    sys.exit(main())
