"""The three systems a bench compares, run one after another on the same cluster:

- Shunter: TrainingJobs, admitted by the operator (its API runs too);
- Kueue + the Job controller: suspended batch/v1 Jobs with Kueue's queue label, admitted
  by Kueue against a ClusterQueue holding the run's GPU quota, started by
  kube-controller-manager's Job controller;
- batch/v1 Jobs alone: the Job controller creates every Pod at once and the scheduler
  holds the ones that do not fit.

Each peer has its own namespace and its controller runs only while it is measured:
`setup` starts it (or holds it back, `held=True`, so the work can be created first and
`start` measures the controller's own rate), `teardown` deletes the namespace while the
controller still runs (Kueue's finalizers need Kueue) and then stops it.
"""

from __future__ import annotations

import sys
import time
from contextlib import suppress
from typing import Any

from kubernetes import client

from bench import kueue
from bench.harness import (
    System,
    batch_job,
    create_namespace,
    delete_namespace,
    parallel,
    training_job,
)
from shunter.devcluster import processes
from shunter.domain.model import ARRAY_LABEL, GROUP, PLURAL, VERSION

KCM = "kube-controller-manager"


class Peer:
    """What every peer does; the subclasses say how."""

    name = ""  # shown in tables
    key = ""  # in result files
    prefix = ""  # job names start with it

    def __init__(self, s: System, namespace: str) -> None:
        self.s = s
        self.namespace = namespace

    def setup(self, *, gpus: int, held: bool = False) -> None:
        """Namespace, queues and controller; `gpus` is the quota of the run."""
        raise NotImplementedError

    def start(self) -> tuple[str, ...]:
        """Start the held controller; return the names of the processes it started."""
        raise NotImplementedError

    def controllers(self) -> dict[str, int]:
        """Processes whose CPU and RSS count as this peer's, by name."""
        raise NotImplementedError

    def create(self, name: str, *, gpus: int, annotations: dict[str, str]) -> None:
        raise NotImplementedError

    def count_done(self) -> int:
        """Jobs whose own status says they completed."""
        raise NotImplementedError

    def teardown(self) -> None:
        raise NotImplementedError

    def submit(
        self, names: list[str], *, gpus: int, annotations: dict[str, str], workers: int = 8
    ) -> dict[str, float]:
        """Create the jobs from `workers` threads; return when each create started."""
        started: dict[str, float] = {}

        def one(name: str) -> None:
            started[name] = time.monotonic()
            self.create(name, gpus=gpus, annotations=annotations)

        parallel(one, names, workers=workers)
        return started


class Shunter(Peer):
    name, key, prefix = "Shunter", "shunter", "t"

    def __init__(self, s: System, namespace: str, operator_env: dict[str, str]) -> None:
        super().__init__(s, namespace)
        self.operator_env = operator_env

    def setup(self, *, gpus: int, held: bool = False) -> None:
        create_namespace(self.s.api, self.namespace)
        self.s.start_services(
            namespace=self.namespace, operator_env=self.operator_env, with_operator=not held
        )

    def start(self) -> tuple[str, ...]:
        self.s.start_services(operator_env=self.operator_env)
        return ("operator", "api")

    def controllers(self) -> dict[str, int]:
        return {"operator": self.s.pid("shunter-operator"), "api": self.s.pid("shunter-api")}

    def create(self, name: str, *, gpus: int, annotations: dict[str, str]) -> None:
        self.s.custom().create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL,
            training_job(name, gpus=gpus, annotations=annotations),
        )  # fmt: skip

    def count_done(self) -> int:
        items = self.s.custom().list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL
        )["items"]
        return sum(i.get("status", {}).get("phase") == "completed" for i in items)

    def teardown(self) -> None:
        delete_namespace(self.s.api, self.namespace)
        self.s.stop_services()


class ShunterArray(Shunter):
    """Shunter with the N jobs as one array (spec.array: N runs, at most `parallel` at
    once): one object submitted, its runs created by the operator as earlier ones end."""

    name, key, prefix = "Shunter, one array", "shunter_array", "a"

    def __init__(self, s: System, namespace: str, operator_env: dict[str, str],
                 parallel: int) -> None:  # fmt: skip
        super().__init__(s, namespace, operator_env)
        self.parallel = parallel

    def submit(
        self, names: list[str], *, gpus: int, annotations: dict[str, str], workers: int = 8
    ) -> dict[str, float]:
        body = training_job("array", gpus=gpus, annotations=annotations)
        body["spec"]["array"] = {"count": len(names), "maxParallel": self.parallel}
        started = {"array": time.monotonic()}
        self.s.custom().create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, body
        )
        return started

    def count_done(self) -> int:
        """The array's runs whose own status says they completed."""
        items = self.s.custom().list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURAL, label_selector=ARRAY_LABEL
        )["items"]
        return sum(i.get("status", {}).get("phase") == "completed" for i in items)


def _jobs_complete(api: client.ApiClient, namespace: str) -> int:
    jobs = client.BatchV1Api(api).list_namespaced_job(namespace).items
    return sum(
        any(c.type == "Complete" and c.status == "True" for c in (j.status.conditions or []))
        for j in jobs
    )


class BatchJobs(Peer):
    name, key, prefix = "batch/v1 Jobs", "batch_v1_job", "j"

    def setup(self, *, gpus: int, held: bool = False) -> None:
        create_namespace(self.s.api, self.namespace)
        if held:
            processes.stop(KCM, state_dir=self.s.state)

    def start(self) -> tuple[str, ...]:
        processes.restart(KCM, state_dir=self.s.state)
        return (KCM,)

    def controllers(self) -> dict[str, int]:
        return {KCM: self.s.pid(KCM)}

    def create(self, name: str, *, gpus: int, annotations: dict[str, str]) -> None:
        body = batch_job(name, gpus=gpus, annotations=annotations)
        client.BatchV1Api(self.s.api).create_namespaced_job(self.namespace, body)

    def delete(self, name: str) -> None:
        client.BatchV1Api(self.s.api).delete_namespaced_job(
            name, self.namespace, propagation_policy="Background"
        )

    def count_done(self) -> int:
        return _jobs_complete(self.s.api, self.namespace)

    def teardown(self) -> None:
        if not processes.alive(KCM, state_dir=self.s.state):
            processes.restart(KCM, state_dir=self.s.state)
        delete_namespace(self.s.api, self.namespace)


class Kueue(BatchJobs):
    """Kueue in front of the Job controller, with the given client rate limits."""

    prefix = "k"

    def __init__(self, s: System, namespace: str, settings: kueue.Settings) -> None:
        super().__init__(s, namespace)
        self.settings = settings
        self.name = f"Kueue ({settings.label})"
        self.key = f"kueue_{settings.slug}"
        self.queue = f"bench-{settings.slug}"
        self.process = kueue.Kueue(s.plane.kubeconfig, s.state, settings)
        self.held = False

    def setup(self, *, gpus: int, held: bool = False) -> None:
        self.held = held
        kueue.install_crds(self.s.plane.kubectl)
        self.s.plane.apply(
            [
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": kueue.NAMESPACE}},
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace}},
                *self.manifests(gpus),
            ]
        )
        if not held:
            self.start()

    def manifests(self, gpus: int) -> list[dict[str, Any]]:
        """Kueue's queue objects for the run (one ClusterQueue of `gpus` here)."""
        return kueue.queues(self.queue, self.namespace, gpus)

    def cluster_queues(self) -> list[str]:
        """The ClusterQueues `manifests` makes, deleted by teardown."""
        return [self.queue]

    def start(self) -> tuple[str, ...]:
        self.process.start()
        if not self.held:
            # Measure from a queue Kueue has taken in, as a user would.
            self.s.plane.kubectl("wait", "--for=condition=Active", "--timeout=60s",
                                 f"clusterqueue/{self.queue}")  # fmt: skip
            self.s.plane.kubectl("wait", "--for=condition=Active", "--timeout=60s",
                                 "-n", self.namespace, f"localqueue/{self.queue}")  # fmt: skip
        return ("kueue",)

    def controllers(self) -> dict[str, int]:
        return {"kueue": self.process.pid, KCM: self.s.pid(KCM)}

    def create(self, name: str, *, gpus: int, annotations: dict[str, str]) -> None:
        body = batch_job(
            name,
            gpus=gpus,
            annotations=annotations,
            labels={kueue.QUEUE_LABEL: self.queue},
            suspend=True,
        )
        client.BatchV1Api(self.s.api).create_namespaced_job(self.namespace, body)

    def teardown(self) -> None:
        try:
            if not self.process.pid:
                with suppress(RuntimeError):  # it never started: no finalizers of its own
                    self.process.start()
            delete_namespace(self.s.api, self.namespace)
            self.s.plane.kubectl("delete", "clusterqueue", *self.cluster_queues(),
                                 "--timeout=120s")  # fmt: skip
        finally:
            self.process.stop()


def all_peers(
    s: System, operator_env: dict[str, str], kueue_settings: list[kueue.Settings]
) -> list[Peer]:
    peers: list[Peer] = [Shunter(s, "bench-shunter", operator_env)]
    peers += [Kueue(s, f"bench-kueue-{k.slug}", k) for k in kueue_settings]
    peers.append(BatchJobs(s, "bench-batch"))
    return peers


def select(peers: list[Peer], wanted: str) -> list[Peer]:
    """`shunter,kueue,batch` (any subset, in that order) or `all`."""
    if wanted == "all":
        return peers
    keys = {w.strip() for w in wanted.split(",")}
    return [p for p in peers if p.key.split("_")[0] in keys or p.key in keys]


def run_each(peers: list[Peer], body: Any) -> dict[str, Any]:
    """body(peer) for each peer in turn, tearing each down before the next.

    A teardown that times out after the last peer was measured keeps the figures (the
    cluster goes anyway): 10,000 batch/v1 Jobs can take longer to delete than to run.
    Before another peer it does not: that peer would be measured beside the deletion."""
    results: dict[str, Any] = {}
    for index, peer in enumerate(peers):
        try:
            results[peer.key] = {"name": peer.name, **body(peer)}
        finally:
            try:
                peer.teardown()
            except TimeoutError as exc:
                if peer.key not in results or index < len(peers) - 1:
                    raise
                results[peer.key]["teardown"] = str(exc)
                print(f"{exc} (its figures are kept)", file=sys.stderr)
    return results
