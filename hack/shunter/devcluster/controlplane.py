"""Start and stop a real Kubernetes control plane made of local processes.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok run as detached
processes whose pids, logs, certificates and kubeconfig live in one state directory,
so `up` and `down` can be separate commands. Ports are picked free at start and
recorded, so several clusters (the demo's and the tests') can run side by side.

The binaries come from hack/controlplane/build.sh (pinned Go modules) and are looked
up in $SHUNTER_BIN_DIR (default ~/.cache/shunter/bin).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import yaml

from shunter.devcluster import nodes, processes
from shunter.devcluster.pki import Pki, create_pki

# Components in start order; `down` stops them in reverse.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
BINARIES = (*COMPONENTS, "kubectl")
# A loaded 2-core machine can take well over 30 s to bring the apiserver up.
START_TIMEOUT = 180.0


class ControlPlaneError(RuntimeError):
    """The control plane could not be started or reached."""


def default_bin_dir() -> Path:
    return Path(os.environ.get("SHUNTER_BIN_DIR", Path.home() / ".cache/shunter/bin"))


def default_state_dir(name: str) -> Path:
    root = os.environ.get("SHUNTER_STATE_DIR", Path.home() / ".cache/shunter/clusters")
    return Path(root) / name


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kwok: int

    @classmethod
    def pick(cls) -> Ports:
        return cls(*(processes.free_port() for _ in range(6)))


# The node heartbeat stage's delay in stages.yaml (ClusterSpec.node_status_seconds).
HEARTBEAT = "durationMilliseconds: {}\n    jitterDurationMilliseconds: {}"
# kwok's Pod workers in stages.yaml (ClusterSpec.kwok_pod_workers).
POD_WORKERS = "podPlayStageParallelism: {}"
KWOK_POD_WORKERS = 16


@dataclass(frozen=True)
class ClusterSpec:
    """How many fake GPU nodes to create, and how many GPUs each has.

    scheduler_qps: kube-scheduler's client rate limit (its default, 50 with burst 100,
    caps every system at roughly 25 Pods bound a second: a bind and a status write each).
    Benchmarks raise it, as kwok's own performance setups do, so that the scheduler all
    peers share does not set the pace. kube-controller-manager keeps its default: its
    Job controller belongs to the batch/v1 and Kueue peers (the benches raise it on
    request, see bench.harness).

    node_lease_seconds and node_status_seconds: how long a kwok node's Lease lasts (kwok
    renews it before it runs out) and how often kwok refreshes its status conditions
    (each time after between that and 7/6 of it). A large cluster's benches lengthen
    both, so that thousands of simulated heartbeats do not take the API server from what
    is measured; kube-controller-manager's node-monitor-grace-period is then raised above
    the Lease's duration, so that no node goes NotReady for it.

    kwok_pod_workers: how many Pod stage changes kwok applies at once (stages.yaml's
    KWOK_POD_WORKERS). Each is a status write; at the API server's latency under the large shapes'
    load, 16 workers move about 10-15 Pods a second and the simulated kubelets, not
    the systems measured, set the pace. The large benches raise it.

    audit_pod_stages: the audit log also names every Pod status write and bind (kwok's
    and kube-scheduler's), for a bench that times a job's stages by the server's clock
    (bench.shunter_stages). Off by default: two or three more audit lines per Pod on a
    server that the large benches already keep busy.
    """

    gpu_nodes: int = 4
    gpus_per_node: int = 8
    scheduler_qps: int | None = None
    node_lease_seconds: int = 40
    node_status_seconds: int = 60
    kwok_pod_workers: int = KWOK_POD_WORKERS
    audit_pod_stages: bool = False

    def grace_flags(self) -> list[str]:
        """kube-controller-manager's grace for node heartbeats (its default, 50 s,
        covers the default Lease)."""
        if self.node_lease_seconds <= 40:
            return []
        return [f"--node-monitor-grace-period={self.node_lease_seconds + 20}s"]


class ControlPlane:
    """One local cluster, identified by its state directory."""

    def __init__(self, state_dir: Path, *, bin_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.bin_dir = bin_dir or default_bin_dir()
        self.pki = Pki(state_dir / "pki")

    @property
    def kubeconfig(self) -> Path:
        return self.state_dir / "kubeconfig"

    def binary(self, name: str) -> str:
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise ControlPlaneError(
                f"{path} is missing: build the control plane first (make controlplane)"
            )
        return str(path)

    def running(self) -> bool:
        return all(processes.alive(c, state_dir=self.state_dir) for c in COMPONENTS)

    def ports(self) -> Ports:
        return Ports(**json.loads((self.state_dir / "ports.json").read_text()))

    # -- start -------------------------------------------------------------------

    def up(self, spec: ClusterSpec | None = None) -> Path:
        """Start every component (a fresh cluster) and return the kubeconfig path."""
        spec = spec or ClusterSpec()
        for name in BINARIES:
            self.binary(name)
        if self.running():
            return self.kubeconfig
        self.down()
        self.state_dir.mkdir(parents=True)
        create_pki(self.pki.root)
        ports = Ports.pick()
        (self.state_dir / "ports.json").write_text(json.dumps(ports.__dict__))
        self._write_kubeconfig(ports)
        try:
            self._start_etcd(ports)
            self._wait("etcd", f"http://127.0.0.1:{ports.etcd_client}/health")
            self._start_apiserver(ports, spec)
            self._wait("kube-apiserver", f"https://127.0.0.1:{ports.apiserver}/readyz")
            self._start_controllers(ports, spec)
            self.apply(nodes.gpu_nodes(spec.gpu_nodes, gpus=spec.gpus_per_node))
            self._wait_ready()
        except BaseException:
            self.down(keep_logs=True)
            raise
        return self.kubeconfig

    def _start_etcd(self, ports: Ports) -> None:
        peer = f"http://127.0.0.1:{ports.etcd_peer}"
        client = f"http://127.0.0.1:{ports.etcd_client}"
        processes.start(
            "etcd",
            [
                self.binary("etcd"),
                "--name=shunter",
                f"--data-dir={self.state_dir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=shunter={peer}",
                # A throw-away cluster: durability is not worth the fsync latency.
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
            state_dir=self.state_dir,
        )

    @property
    def audit_log(self) -> Path:
        """The API server's audit log: one JSON line per accepted or refused write to
        TrainingJobs, their Pods (with ClusterSpec.audit_pod_stages, their binds and
        status writes too), Services, claims and Leases (who, with which user agent,
        when, and the answer); read by shunter.devcluster.audit. Fault tests read it to
        tell which operator replica's writes the server accepted; benches, a stage's
        lag by the server's clock."""
        return self.state_dir / "logs" / "audit.log"

    def _write_audit_policy(self, spec: ClusterSpec) -> Path:
        stages = ("pods/status", "pods/binding") if spec.audit_pod_stages else ()
        policy = {
            "apiVersion": "audit.k8s.io/v1",
            "kind": "Policy",
            "omitStages": ["RequestReceived"],
            "rules": [
                {
                    "level": "Metadata",
                    "verbs": ["create", "update", "patch", "delete"],
                    "resources": [
                        {
                            "group": "shunter.dev",
                            "resources": ["trainingjobs", "trainingjobs/status"],
                        },
                        {
                            "group": "",
                            "resources": [
                                *("pods", *stages),
                                *("services", "persistentvolumeclaims"),
                            ],
                        },
                        {"group": "coordination.k8s.io", "resources": ["leases"]},
                    ],
                },
                {"level": "None"},
            ],
        }
        path = self.state_dir / "audit-policy.yaml"
        path.write_text(yaml.safe_dump(policy))
        return path

    def _start_apiserver(self, ports: Ports, spec: ClusterSpec) -> None:
        pki = self.pki
        policy = self._write_audit_policy(spec)
        processes.start(
            "kube-apiserver",
            [
                self.binary("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{ports.etcd_client}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={ports.apiserver}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--client-ca-file={pki.ca_cert}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki.sa_pub}",
                f"--service-account-signing-key-file={pki.sa_key}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # A bench may read its CPU profile (/debug/pprof) with this set.
                f"--profiling={str(bool(os.environ.get('SHUNTER_APISERVER_PROFILING'))).lower()}",
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log}",
                "--v=1",
            ],
            state_dir=self.state_dir,
        )

    def _start_controllers(self, ports: Ports, spec: ClusterSpec) -> None:
        scheduler_qps = spec.scheduler_qps
        kubeconfig = str(self.kubeconfig)
        secure = [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            "--leader-elect=false",
        ]
        processes.start(
            "kube-controller-manager",
            [
                self.binary("kube-controller-manager"),
                *secure,
                f"--secure-port={ports.controller_manager}",
                f"--service-account-private-key-file={self.pki.sa_key}",
                f"--root-ca-file={self.pki.ca_cert}",
                f"--cluster-signing-cert-file={self.pki.ca_cert}",
                f"--cluster-signing-key-file={self.pki.ca_key}",
                "--profiling=false",
                *spec.grace_flags(),
            ],
            state_dir=self.state_dir,
        )
        processes.start(
            "kube-scheduler",
            [
                self.binary("kube-scheduler"),
                *secure,
                *(
                    [f"--kube-api-qps={scheduler_qps}", f"--kube-api-burst={2 * scheduler_qps}"]
                    if scheduler_qps
                    else []
                ),
                f"--secure-port={ports.scheduler}",
                "--profiling=false",
            ],
            state_dir=self.state_dir,
        )
        self._start_kwok(Path(kubeconfig), ports.kwok, spec)

    def _start_kwok(self, kubeconfig: Path, port: int, spec: ClusterSpec) -> None:
        stages = self.state_dir / "stages.yaml"
        text = resources.files("shunter.devcluster").joinpath("stages.yaml").read_text()
        heartbeat = HEARTBEAT.format(60000, 70000)
        assert heartbeat in text, "stages.yaml: the node heartbeat's delay moved"
        workers = POD_WORKERS.format(KWOK_POD_WORKERS)
        assert workers in text, "stages.yaml: kwok's Pod workers moved"
        millis = spec.node_status_seconds * 1000
        text = text.replace(heartbeat, HEARTBEAT.format(millis, millis * 7 // 6))
        stages.write_text(text.replace(workers, POD_WORKERS.format(spec.kwok_pod_workers)))
        processes.start(
            "kwok",
            [
                self.binary("kwok"),
                f"--kubeconfig={kubeconfig}",
                f"--config={stages}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={nodes.KWOK_ANNOTATION}=fake",
                f"--node-lease-duration-seconds={spec.node_lease_seconds}",
                # kwok hands out pod IPs from this range: room for benchmarks with 10,000 pods.
                "--cidr=10.128.0.1/14",
                "--node-ip=10.96.255.1",
                f"--server-address=127.0.0.1:{port}",
            ],
            state_dir=self.state_dir,
        )

    def _write_kubeconfig(self, ports: Ports) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "shunter-local",
                    "cluster": {
                        "server": f"https://127.0.0.1:{ports.apiserver}",
                        "certificate-authority": str(self.pki.ca_cert),
                    },
                }
            ],
            "users": [
                {
                    "name": "shunter-admin",
                    "user": {
                        "client-certificate": str(self.pki.admin_cert),
                        "client-key": str(self.pki.admin_key),
                    },
                }
            ],
            "contexts": [
                {
                    "name": "shunter-local",
                    "context": {"cluster": "shunter-local", "user": "shunter-admin"},
                }
            ],
            "current-context": "shunter-local",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def simulate(self, kubeconfig: Path, spec: ClusterSpec | None = None) -> None:
        """Add kwok's fake GPU nodes and pod lifecycles to another cluster (e.g. kind).

        Only kwok runs here; it manages only the nodes it creates, so the cluster's real
        nodes and their pods are untouched.
        """
        spec = spec or ClusterSpec()
        self.binary("kwok")
        processes.stop("kwok", state_dir=self.state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._start_kwok(kubeconfig, processes.free_port(), spec)
        self.kubeconfig.write_text(kubeconfig.read_text())
        self.apply(nodes.gpu_nodes(spec.gpu_nodes, gpus=spec.gpus_per_node))

    # -- readiness -----------------------------------------------------------------

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca_cert))
        context.load_cert_chain(str(self.pki.admin_cert), str(self.pki.admin_key))
        return context

    def _wait(self, component: str, url: str) -> None:
        context = self._ssl_context() if url.startswith("https") else None
        deadline = time.monotonic() + START_TIMEOUT
        last = "no answer yet"
        while time.monotonic() < deadline:
            if not processes.alive(component, state_dir=self.state_dir):
                raise ControlPlaneError(self._died(component))
            try:
                with urllib.request.urlopen(url, timeout=5, context=context) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.25)
        raise ControlPlaneError(f"{component} not healthy after {START_TIMEOUT:.0f}s: {last}")

    def _died(self, component: str) -> str:
        tail = processes.log_tail(component, state_dir=self.state_dir)
        return f"{component} exited during start-up; last log lines:\n{tail}"

    def _wait_ready(self) -> None:
        """Nodes Ready and the default ServiceAccount present (pods need it)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            for component in COMPONENTS:
                if not processes.alive(component, state_dir=self.state_dir):
                    raise ControlPlaneError(self._died(component))
            node_list = json.loads(self.kubectl("get", "nodes", "-o", "json"))
            ready = [
                n
                for n in node_list["items"]
                if any(
                    c["type"] == "Ready" and c["status"] == "True"
                    for c in n.get("status", {}).get("conditions", [])
                )
            ]
            account = subprocess.run(
                [self.binary("kubectl"), f"--kubeconfig={self.kubeconfig}",
                 "get", "serviceaccount", "default", "-n", "default"],
                capture_output=True,
            )  # fmt: skip
            if (
                node_list["items"]
                and len(ready) == len(node_list["items"])
                and not account.returncode
            ):
                return
            time.sleep(0.5)
        raise ControlPlaneError(
            f"nodes or default ServiceAccount not ready in {START_TIMEOUT:.0f}s"
        )

    # -- use -----------------------------------------------------------------------

    def kubectl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [self.binary("kubectl"), f"--kubeconfig={self.kubeconfig}", *args],
            input=stdin,
            capture_output=True,
            text=True,
        )
        if result.returncode:
            raise ControlPlaneError(f"kubectl {' '.join(args)}: {result.stderr.strip()}")
        return result.stdout

    def apply(self, objects: list[dict[str, object]]) -> None:
        self.kubectl("apply", "-f", "-", stdin=yaml.safe_dump_all(objects))

    def restart_apiserver(self, flags: Mapping[str, str] | None = None) -> None:
        """Restart kube-apiserver in place (a fault to recover from, or with flags
        added or replaced: {"--bind-address": "0.0.0.0"}) and wait until ready."""
        processes.restart("kube-apiserver", state_dir=self.state_dir, flags=flags)
        self._wait("kube-apiserver", f"https://127.0.0.1:{self.ports().apiserver}/readyz")

    def apiserver_flags(self) -> dict[str, str]:
        """The flags kube-apiserver runs with now (--name=value ones)."""
        argv = processes.recorded_argv("kube-apiserver", state_dir=self.state_dir)
        return dict(a.split("=", 1) for a in argv[1:] if "=" in a)

    # -- stop ----------------------------------------------------------------------

    def down(self, *, keep_logs: bool = False) -> None:
        """Stop every component (no process is left behind) and delete the state."""
        for component in reversed(COMPONENTS):
            processes.stop(component, state_dir=self.state_dir)
        if keep_logs and (self.state_dir / "logs").exists():
            kept = self.state_dir.with_name(self.state_dir.name + ".failed-logs")
            shutil.rmtree(kept, ignore_errors=True)
            shutil.copytree(self.state_dir / "logs", kept)
        shutil.rmtree(self.state_dir, ignore_errors=True)
