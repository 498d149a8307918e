"""`shunter-dev`: bring the local control plane and PostgreSQL up and down.

    shunter-dev cluster up [--name N] [--nodes 4] [--gpus-per-node 8] [--real-node]
    shunter-dev cluster down [--name N]
    shunter-dev node up|down [--name N]     (the real worker node, on a running cluster)
    shunter-dev images                      (build the images into the node's containerd)
    shunter-dev cluster status [--name N]
    shunter-dev cluster simulate --kubeconfig PATH [--name N]   (fake GPU nodes on kind)
    shunter-dev postgres up|down|stop|start [--name N]
    shunter-dev demo up|down [--port 8000] [--real-node]

`cluster up` prints the kubeconfig path; `postgres up` prints DATABASE_URL.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from shunter.devcluster import demo, images, processes
from shunter.devcluster.controlplane import (
    COMPONENTS,
    ClusterSpec,
    ControlPlane,
    ControlPlaneError,
    default_bin_dir,
    default_state_dir,
)
from shunter.devcluster.postgres import LocalPostgres, PostgresError
from shunter.devcluster.realnode import RealNode
from shunter.devcluster.runtime import Runtime, cache_dir


def _cluster(args: argparse.Namespace) -> int:
    plane = ControlPlane(default_state_dir(args.name))
    spec = ClusterSpec(gpu_nodes=args.nodes, gpus_per_node=args.gpus_per_node)
    if args.action == "up":
        start = time.monotonic()
        kubeconfig = plane.up(spec)
        if args.real_node:
            RealNode(plane).up()
        print(f"cluster {args.name} up in {time.monotonic() - start:.1f}s", file=sys.stderr)
        print(kubeconfig)
    elif args.action == "simulate":
        if not args.kubeconfig:
            raise ControlPlaneError("cluster simulate needs --kubeconfig of the target cluster")
        plane.simulate(Path(args.kubeconfig), spec)
        print(f"kwok simulates {args.nodes} GPU nodes on that cluster", file=sys.stderr)
    elif args.action == "down":
        RealNode(plane).down(restore_apiserver=False)
        plane.down()
        print(f"cluster {args.name} down", file=sys.stderr)
    else:
        for component in COMPONENTS:
            state = (
                "running" if processes.alive(component, state_dir=plane.state_dir) else "stopped"
            )
            print(f"{component}: {state}")
        node = RealNode(plane)
        if node.state.exists():
            print(f"real node: {'running' if node.running() else 'stopped'}")
        if not plane.running():
            return 1
        print(plane.kubeconfig)
    return 0


def _node(args: argparse.Namespace) -> int:
    plane = ControlPlane(default_state_dir(args.name))
    if args.action == "up":
        if not plane.running():
            raise ControlPlaneError(f"cluster {args.name} is not running (shunter-dev cluster up)")
        RealNode(plane).up()
        print(f"real node added to cluster {args.name}", file=sys.stderr)
    else:
        RealNode(plane).down(restore_apiserver=True)
        print(f"real node removed from cluster {args.name}", file=sys.stderr)
    return 0


def _images(args: argparse.Namespace) -> int:
    start = time.monotonic()
    built = images.ensure(Runtime(default_bin_dir()), cache_dir() / "images")
    print(f"images ready in {time.monotonic() - start:.0f}s", file=sys.stderr)
    print(f"SHUNTER_IMAGE={built.operator}\nSHUNTER_TRAINER_IMAGE={built.trainer}")
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
    cluster.add_argument(
        "--real-node", action="store_true", help="also a real worker node (kubelet, containerd)"
    )
    cluster.set_defaults(run=_cluster)
    node = sub.add_parser("node", help="the real worker node of a running cluster")
    node.add_argument("action", choices=["up", "down"])
    node.add_argument("--name", default="dev")
    node.set_defaults(run=_node)
    image_parser = sub.add_parser("images", help="build the images (make images)")
    image_parser.set_defaults(run=_images)
    postgres = sub.add_parser("postgres", help="the local PostgreSQL server")
    postgres.add_argument("action", choices=["up", "down", "stop", "start"])
    postgres.add_argument("--name", default="dev")
    postgres.set_defaults(run=_postgres)
    demo_parser = sub.add_parser("demo", help="the whole system with sample jobs (API on :8000)")
    demo_parser.add_argument("action", choices=["up", "down"])
    demo_parser.add_argument("--port", type=int, default=8000)
    demo_parser.add_argument(
        "--real-node", action="store_true", help="with the real node and one real trainer job"
    )
    demo_parser.set_defaults(
        run=lambda a: demo.up(a.port, real_node=a.real_node) if a.action == "up" else demo.down()
    )
    args = parser.parse_args(argv)
    try:
        return int(args.run(args))
    except (ControlPlaneError, PostgresError, RuntimeError) as exc:
        print(f"shunter-dev: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
