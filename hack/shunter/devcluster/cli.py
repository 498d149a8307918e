"""`shunter-dev`: bring the local control plane and PostgreSQL up and down.

    shunter-dev cluster up [--name N] [--nodes 4] [--gpus-per-node 8]
    shunter-dev cluster down [--name N]
    shunter-dev cluster status [--name N]
    shunter-dev cluster simulate --kubeconfig PATH [--name N]   (fake GPU nodes on kind)
    shunter-dev postgres up|down|stop|start [--name N]
    shunter-dev demo up|down [--port 8000]

`cluster up` prints the kubeconfig path; `postgres up` prints DATABASE_URL.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from shunter.devcluster import demo, processes
from shunter.devcluster.controlplane import (
    COMPONENTS,
    ClusterSpec,
    ControlPlane,
    ControlPlaneError,
    default_state_dir,
)
from shunter.devcluster.postgres import LocalPostgres, PostgresError


def _cluster(args: argparse.Namespace) -> int:
    plane = ControlPlane(default_state_dir(args.name))
    spec = ClusterSpec(gpu_nodes=args.nodes, gpus_per_node=args.gpus_per_node)
    if args.action == "up":
        start = time.monotonic()
        kubeconfig = plane.up(spec)
        print(f"cluster {args.name} up in {time.monotonic() - start:.1f}s", file=sys.stderr)
        print(kubeconfig)
    elif args.action == "simulate":
        if not args.kubeconfig:
            raise ControlPlaneError("cluster simulate needs --kubeconfig of the target cluster")
        plane.simulate(Path(args.kubeconfig), spec)
        print(f"kwok simulates {args.nodes} GPU nodes on that cluster", file=sys.stderr)
    elif args.action == "down":
        plane.down()
        print(f"cluster {args.name} down", file=sys.stderr)
    else:
        for component in COMPONENTS:
            state = (
                "running" if processes.alive(component, state_dir=plane.state_dir) else "stopped"
            )
            print(f"{component}: {state}")
        if not plane.running():
            return 1
        print(plane.kubeconfig)
    return 0


def _postgres(args: argparse.Namespace) -> int:
    server = LocalPostgres(default_state_dir(args.name).with_name(args.name + "-postgres"))
    if args.action == "up":
        print(server.up())
    elif args.action == "down":
        server.down()
    elif args.action == "stop":
        server.stop()
    else:
        server.start()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shunter-dev", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    cluster = sub.add_parser("cluster", help="the local Kubernetes control plane")
    cluster.add_argument("action", choices=["up", "down", "status", "simulate"])
    cluster.add_argument("--kubeconfig", help="simulate: the cluster to add fake GPU nodes to")
    cluster.add_argument("--name", default="dev")
    cluster.add_argument("--nodes", type=int, default=4, help="fake GPU nodes (default 4)")
    cluster.add_argument("--gpus-per-node", type=int, default=8, help="default 8")
    cluster.set_defaults(run=_cluster)
    postgres = sub.add_parser("postgres", help="the local PostgreSQL server")
    postgres.add_argument("action", choices=["up", "down", "stop", "start"])
    postgres.add_argument("--name", default="dev")
    postgres.set_defaults(run=_postgres)
    demo_parser = sub.add_parser("demo", help="the whole system with sample jobs (API on :8000)")
    demo_parser.add_argument("action", choices=["up", "down"])
    demo_parser.add_argument("--port", type=int, default=8000)
    demo_parser.set_defaults(run=lambda a: demo.up(a.port) if a.action == "up" else demo.down())
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (ControlPlaneError, PostgresError, RuntimeError) as exc:
        print(f"shunter-dev: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
