"""`shunter-operator`: run the operator (kopf) in the foreground.

    shunter-operator [--liveness http://0.0.0.0:8080/healthz] [--verbose]

Settings come from the environment (see shunter.operator.settings). kopf runs the
process; shunter.kube does the Kubernetes work (shunter.operator.handlers says who
does what). SIGTERM or SIGINT stops it; SIGUSR1 writes every asyncio task's stack to
its log (what a stop or a pass that does not end is waiting for; py-spy shows only the
threads) and where its memory is (the C allocator's and Python's own).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import tracemalloc
from types import FrameType
from typing import TYPE_CHECKING

from shunter.operator import memory
from shunter.operator.settings import Settings, SettingsError

if TYPE_CHECKING:
    import kopf

# Kubernetes client libraries kopf imports when they are installed, only to recognise
# their objects and to offer logins through them. The operator passes kopf none of
# their objects and logs kopf in itself (handlers.login): importing them would cost
# the process about 16 MiB (`kubernetes`, in the image) and 51 MiB more
# (`kubernetes_asyncio`, in a venv with the bench's packages), for nothing.
CLIENT_LIBRARIES = ("kubernetes", "kubernetes_asyncio", "pykube")


def leave_out_client_libraries() -> None:
    """Make the client libraries unimportable in this process (an import of one
    raises ImportError, which kopf takes as not installed), unless kopf or one of them
    is already imported (a test's fork server that preloaded them all)."""
    if "kopf" in sys.modules or any(name in sys.modules for name in CLIENT_LIBRARIES):
        return
    for name in CLIENT_LIBRARIES:
        sys.modules[name] = None  # type: ignore[assignment]


def kopf_settings() -> kopf.OperatorSettings:
    """kopf as this operator uses it: a process runner with no resources of its own."""
    import kopf

    settings = kopf.OperatorSettings()
    settings.networking.request_timeout = 60  # its own calls: the API discovery at start
    # Serve the namespaces given (or the whole cluster) as they are: no watch of CRDs or
    # Namespaces, which would need cluster-wide rights the chart does not grant, to
    # start and stop watches kopf does not have.
    settings.scanning.disabled = True
    settings.posting.enabled = False  # Events are Shunter's own (Actions.post_event)
    return settings


def dump_tasks(signum: int = signal.SIGUSR1, frame: FrameType | None = None) -> None:
    """Every task of the running loop with its stack, to stdout (the log), then where
    the process's memory is (shunter.operator.memory.summary), and when memory is
    traced (PYTHONTRACEMALLOC=1) its 40 largest allocation sites. A plain
    signal handler: it runs in the main thread between two bytecodes, so it works
    while the loop itself is stuck or no longer reads its signal wake-up."""
    try:
        tasks = asyncio.all_tasks(asyncio.get_running_loop())
    except RuntimeError:
        tasks = set()
    out = [f"--- asyncio tasks ({len(tasks)}) on {signal.Signals(signum).name} ---"]
    for task in sorted(tasks, key=lambda t: t.get_name()):
        frames = task.get_stack()
        where = " <- ".join(f"{f.f_code.co_name} ({f.f_code.co_filename.rsplit('/', 1)[-1]}"
                            f":{f.f_lineno})" for f in reversed(frames))  # fmt: skip
        out.append(f"{task.get_name()}: {where or task!r}")
    out.append("--- end of asyncio tasks ---")
    out += ["--- process memory ---", *memory.summary(), "--- end of process memory ---"]
    if tracemalloc.is_tracing():  # PYTHONTRACEMALLOC=1: where the memory is, too
        top = tracemalloc.take_snapshot().statistics("lineno")
        out.append(f"--- memory: {sum(s.size for s in top) / 2**20:.1f} MiB traced, by line ---")
        out += [str(stat) for stat in top[:40]]
        out.append("--- end of memory ---")
    sys.stdout.write("\n".join(out) + "\n")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="shunter-operator", description=__doc__.splitlines()[0])
    parser.add_argument("--liveness", default=None, help="kopf liveness endpoint URL")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stdout,
    )
    for noisy in ("kopf.objects", "kopf.activities.probe"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"shunter-operator: {exc}", file=sys.stderr)
        return 2
    leave_out_client_libraries()
    import kopf

    from shunter.operator import handlers

    assert handlers  # the import registers the handlers
    memory.tune()
    memory.tune_collector()
    memory.time_collections()
    signal.signal(signal.SIGUSR1, dump_tasks)
    asyncio.run(
        kopf.operator(
            settings=kopf_settings(),
            standalone=True,  # leader election is our own Lease, not kopf peering
            clusterwide=settings.scope.cluster_wide,
            namespaces=settings.scope.namespaces,
            liveness_endpoint=args.liveness,
            memo=kopf.Memo(config=settings),
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
