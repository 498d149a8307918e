"""Kueue (sigs.k8s.io/kueue) as a bench peer: a local process against the bench's cluster.

The binary comes from `hack/controlplane/build.sh kueue` (`make kueue`), pinned by
hack/controlplane/kueue/go.mod; its CRDs from the same module in GOMODCACHE. Kueue
runs outside the cluster like the operator: admin kubeconfig, namespace kueue-system,
no leader election, no internal certificate management (so no webhook
configurations are installed: Jobs are created suspended with the queue label, as
its mutating webhook would otherwise do), the webhook server on loopback with a
self-signed certificate, metrics off, health probes on loopback, only the batch/job
integration, waitForPodsReady off.

Kueue loads metrics certificates from the fixed path /etc/kueue/metrics/certs even
with metrics off. Nothing is written to /etc: Kueue runs in a private mount namespace
(`unshare --mount`, plus a user namespace when not root) in which /etc is an overlay
whose upper layer, in the bench's state directory, holds those files. The overlay
hides mounts below /etc (none on the bench machines); Kueue only talks to the API
server by IP with the kubeconfig's CA.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from shunter.devcluster import processes

REPO = Path(__file__).resolve().parents[1]
GO_MOD = REPO / "hack/controlplane/kueue/go.mod"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
GROUP = "kueue.x-k8s.io"
VERSION = "v1beta2"
NAMESPACE = "kueue-system"
FLAVOR = "bench-flavor"
GPU = "nvidia.com/gpu"
# Kueue's manifests (config/components/manager) set these client limits.
DEFAULT_QPS, DEFAULT_BURST = 50.0, 100
# Reconciler workers per kind, as Kueue's manifest sets them.
CONCURRENCY = {
    "Job.batch": 5,
    "Workload.kueue.x-k8s.io": 5,
    "LocalQueue.kueue.x-k8s.io": 1,
    "Cohort.kueue.x-k8s.io": 1,
    "ClusterQueue.kueue.x-k8s.io": 1,
    "ResourceFlavor.kueue.x-k8s.io": 1,
}
START_TIMEOUT = 120.0
# Run in a private mount namespace whose /etc is an overlay (see the module docstring).
_ETC_OVERLAY = 'mount -t overlay kueue-etc -o "lowerdir=/etc,upperdir=$1,workdir=$2" /etc'
_WRAPPER = f'set -e; {_ETC_OVERLAY}; shift 2; exec "$@"'


# Kueue's fair sharing between the ClusterQueues of a cohort is on when the
# Configuration has a `fairSharing` section (config v1beta2 has no `enable` field, as
# v1beta1 did); it needs preemption strategies, a list among the three Kueue accepts
# (pkg/config/validation.go). Its default one: used only if a ClusterQueue allows
# preemption in its cohort.
FAIR_SHARING = {"preemptionStrategies": ["LessThanOrEqualToFinalShare", "LessThanInitialShare"]}


@dataclass(frozen=True)
class Settings:
    """Kueue's client rate limits (clientConnection) for one run, and whether fair
    sharing between the ClusterQueues of a cohort is on."""

    qps: float = DEFAULT_QPS
    burst: int = DEFAULT_BURST
    fair_sharing: bool = False

    @property
    def label(self) -> str:
        return f"qps {self.qps:g}/{self.burst}" + (", fair sharing" if self.fair_sharing else "")

    @property
    def slug(self) -> str:
        slug = f"q{self.qps:g}-b{self.burst}".replace(".", "p")
        return slug + ("-fs" if self.fair_sharing else "")

    @classmethod
    def parse(cls, text: str) -> Settings:
        """`50/100` -> qps 50, burst 100."""
        qps, _, burst = text.partition("/")
        return cls(float(qps), int(burst or 2 * float(qps)))


def version() -> str:
    match = re.search(r"^require sigs\.k8s\.io/kueue (v\S+)$", GO_MOD.read_text(), re.M)
    if not match:
        raise RuntimeError(f"{GO_MOD} does not require sigs.k8s.io/kueue")
    return match.group(1)


def binary() -> Path:
    bin_dir = Path(os.environ.get("SHUNTER_BIN_DIR", Path.home() / ".cache/shunter/bin"))
    path = bin_dir / "kueue"
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} is missing: build it first (make kueue)")
    return path


def crd_dir() -> Path:
    """config/components/crd/bases of the pinned module (downloaded by the build)."""
    cache = os.environ.get("GOMODCACHE", str(Path.home() / ".cache/go/mod"))
    path = Path(cache) / f"sigs.k8s.io/kueue@{version()}/config/components/crd/bases"
    if not path.is_dir():
        raise RuntimeError(f"{path} is missing: build Kueue first (make kueue)")
    return path


def install_crds(kubectl: Any) -> None:
    """Apply Kueue's CRDs server-side (the Workload CRD is too large for client-side
    apply's annotation) and wait until they are served. `kubectl(*args)` runs kubectl
    against the cluster (ControlPlane.kubectl)."""
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crd_dir()))
    kubectl("wait", "--for=condition=Established", "--timeout=120s", "-f", str(crd_dir()))


def queues(name: str, namespace: str, gpus: int) -> list[dict[str, Any]]:
    """A ResourceFlavor, a ClusterQueue `name` with `gpus` nvidia.com/gpu for every
    namespace, and a LocalQueue `name` in `namespace` pointing at it."""
    api_version = f"{GROUP}/{VERSION}"
    return [
        {"apiVersion": api_version, "kind": "ResourceFlavor", "metadata": {"name": FLAVOR}},
        {
            "apiVersion": api_version,
            "kind": "ClusterQueue",
            "metadata": {"name": name},
            "spec": {
                "namespaceSelector": {},
                "resourceGroups": [
                    {
                        "coveredResources": [GPU],
                        "flavors": [
                            {"name": FLAVOR, "resources": [{"name": GPU, "nominalQuota": gpus}]}
                        ],
                    }
                ],
            },
        },
        {
            "apiVersion": api_version,
            "kind": "LocalQueue",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterQueue": name},
        },
    ]


def cohort_queues(
    cohort: str,
    lender: tuple[str, int],
    borrowers: dict[str, float],
    namespace: str,
) -> list[dict[str, Any]]:
    """A ResourceFlavor and the ClusterQueues of one cohort: `lender` = (name, GPUs)
    holds the cohort's nominal quota and runs nothing; each borrower (name -> fair-
    sharing weight) has a nominal quota of 0 GPUs, so all it runs is borrowed, and a
    LocalQueue of its name in `namespace`. No ClusterQueue preempts (the default
    reclaimWithinCohort and withinClusterQueue: Never)."""
    api_version = f"{GROUP}/{VERSION}"

    def cluster_queue(name: str, gpus: int, weight: float | None) -> dict[str, Any]:
        spec: dict[str, Any] = {
            "cohortName": cohort,
            "namespaceSelector": {},
            "resourceGroups": [
                {
                    "coveredResources": [GPU],
                    "flavors": [
                        {"name": FLAVOR, "resources": [{"name": GPU, "nominalQuota": gpus}]}
                    ],
                }
            ],
        }
        if weight is not None:
            spec["fairSharing"] = {"weight": f"{weight:g}"}
        return {"apiVersion": api_version, "kind": "ClusterQueue",
                "metadata": {"name": name}, "spec": spec}  # fmt: skip

    manifests = [
        {"apiVersion": api_version, "kind": "ResourceFlavor", "metadata": {"name": FLAVOR}},
        cluster_queue(lender[0], lender[1], None),
    ]
    for name, weight in borrowers.items():
        manifests.append(cluster_queue(name, 0, weight))
        manifests.append({"apiVersion": api_version, "kind": "LocalQueue",
                          "metadata": {"name": name, "namespace": namespace},
                          "spec": {"clusterQueue": name}})  # fmt: skip
    return manifests


def _self_signed(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "7",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(directory / "tls.key"), "-out", str(directory / "tls.crt")],
        check=True, capture_output=True,
    )  # fmt: skip


class Kueue:
    """One Kueue process, its files under state_dir/kueue, its log in
    state_dir/logs/kueue.log (processes.start, like the control plane's)."""

    def __init__(self, kubeconfig: Path, state_dir: Path, settings: Settings) -> None:
        self.kubeconfig = kubeconfig
        self.state_dir = state_dir
        self.settings = settings
        self.root = state_dir / "kueue"
        self.health_port = 0
        self.pid = 0

    def configuration(self, webhook_port: int) -> dict[str, Any]:
        return {
            "apiVersion": "config.kueue.x-k8s.io/v1beta2",
            "kind": "Configuration",
            "namespace": NAMESPACE,
            "leaderElection": {"leaderElect": False},
            "internalCertManagement": {"enable": False},
            "webhook": {
                "host": "127.0.0.1",
                "port": webhook_port,
                "certDir": str(self.root / "webhook-certs"),
            },
            "metrics": {"bindAddress": "0"},
            "health": {"healthProbeBindAddress": f"127.0.0.1:{self.health_port}"},
            "clientConnection": {"qps": self.settings.qps, "burst": self.settings.burst},
            # As in Kueue's manifest (config/components/manager): without it every
            # reconciler has one worker.
            "controller": {"groupKindConcurrency": CONCURRENCY},
            "integrations": {"frameworks": ["batch/job"]},
            "manageJobsWithoutQueueName": False,
        } | ({"fairSharing": FAIR_SHARING} if self.settings.fair_sharing else {})

    def argv(self) -> list[str]:
        upper, work = self.root / "etc-upper", self.root / "etc-work"
        unshare = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            unshare[1:1] = ["--user", "--map-root-user"]
        return [
            *unshare, "--", "sh", "-c", _WRAPPER, "kueue-etc", str(upper), str(work),
            str(binary()), f"--config={self.root / 'config.yaml'}",
            # The visibility API server wants /visibility/tls.crt; the bench does not use it.
            "--feature-gates=VisibilityOnDemand=false",
        ]  # fmt: skip

    def start(self) -> int:
        """Start Kueue and return its pid once /readyz answers."""
        self.stop()
        _self_signed(self.root / "webhook-certs")
        _self_signed(self.root / "etc-upper/kueue/metrics/certs")
        (self.root / "etc-work").mkdir(parents=True, exist_ok=True)
        self.health_port = processes.free_port()
        config = self.configuration(processes.free_port())
        (self.root / "config.yaml").write_text(yaml.safe_dump(config))
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        self.pid = processes.start("kueue", self.argv(), state_dir=self.state_dir, env=env)
        self._wait_ready()
        return self.pid

    def _wait_ready(self) -> None:
        url = f"http://127.0.0.1:{self.health_port}/readyz"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if not processes.alive("kueue", state_dir=self.state_dir):
                tail = processes.log_tail("kueue", state_dir=self.state_dir)
                raise RuntimeError(f"kueue exited during start-up; last log lines:\n{tail}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            time.sleep(0.2)
        raise RuntimeError(f"kueue not ready after {START_TIMEOUT:.0f}s")

    def stop(self) -> None:
        processes.stop("kueue", state_dir=self.state_dir)
        self.pid = 0
