"""One real worker node beside the kwok GPU nodes: containerd, kubelet, kube-proxy.

It runs Pods for real (runc containers on a CNI bridge), so the trainer is really
signalled and the chart's images really run. Only Pods that ask land there: the node
is tainted `shunter.dev/real-node=true:NoSchedule` and labelled
`shunter.dev/node-pool=real`. It has no GPUs.

Networking: the node's address (NODE_IP) is the gateway of the pod bridge, created
here before the CNI plugin finds it (this kernel has no dummy interfaces): the kubelet
listens there and Pods reach it on their own link. The API server is restarted to advertise that
address (the `kubernetes` Service, through kube-proxy, leads there) and to listen on
every address; a guard table keeps its port closed to anything but loopback and the
pod bridge, and drops any forwarded packet from the pod subnet to elsewhere: Pods
reach this machine only.

`down` leaves nothing behind: no process, mount, cgroup, link, firewall rule, changed
sysctl or directory (tests/realnode/test_host_cleanup.py checks exactly that). The
kubelet writes to a few fixed host paths whatever its flags; the ones that did not
exist before `up` are recorded and removed.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from shunter.devcluster import hostcleanup, nodeconfig, pki, processes
from shunter.devcluster.controlplane import ControlPlane, ControlPlaneError
from shunter.devcluster.nodes import POOL_LABEL
from shunter.devcluster.runtime import RUN_DIR, Runtime

NODE_NAME = "shunter-real-node"
NODE_IP = nodeconfig.GATEWAY
POOL = "real"
TAINT_KEY = "shunter.dev/real-node"
GUARD_TABLE = ("inet", "shunter-realnode")
DAEMONS = ("kubelet", "kube-proxy")
READY_TIMEOUT = 120.0
# Host settings the kubelet, kube-proxy or the CNI bridge may change; restored on down.
SYSCTLS = (
    "kernel.panic",
    "kernel.panic_on_oops",
    "vm.overcommit_memory",
    "net.ipv4.ip_forward",
    "net.ipv4.conf.all.forwarding",
    "net.ipv4.conf.all.route_localnet",
    "net.bridge.bridge-nf-call-iptables",
    "net.bridge.bridge-nf-call-ip6tables",
    "net.netfilter.nf_conntrack_max",
    "kernel.keys.root_maxkeys",
    "kernel.keys.root_maxbytes",
)
# Fixed paths the kubelet and the runtime use whatever their configuration says.
FIXED_DIRS = tuple(
    map(
        Path,
        (
            "/var/lib/kubelet",
            "/var/log/containers",
            "/var/log/pods",
            "/run/containerd",
            "/var/lib/cni",
            "/run/netns",
            "/etc/cni",
            "/opt/cni",
            "/var/run/nri",
            "/etc/kubernetes",
        ),
    )
)


class RealNodeError(ControlPlaneError):
    """The real node could not be started, or another one runs on this machine."""


def pool_selector() -> dict[str, str]:
    return {POOL_LABEL: POOL}


def toleration() -> dict[str, str]:
    return {"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}


class RealNode:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.state = plane.state_dir / "realnode"
        self.runtime = Runtime(plane.bin_dir)
        self.identity = nodeconfig.NodeIdentity(
            name=NODE_NAME,
            ip=NODE_IP,
            labels=pool_selector(),
            taints=[{"key": TAINT_KEY, "value": "true", "effect": "NoSchedule"}],
        )

    def running(self) -> bool:
        return all(processes.alive(d, state_dir=self.state) for d in DAEMONS)

    # -- up ------------------------------------------------------------------------

    def up(self) -> None:
        """Add the node to the cluster and wait until it is Ready."""
        if self.running():
            return
        self.clear_dead_owner()
        owner = RUN_DIR / "owner"
        self.down(restore_apiserver=False)
        for name in ("pki", "logs", "kubelet"):
            (self.state / name).mkdir(parents=True, exist_ok=True)
        self._record_host()
        try:
            self._network()
            self._certificates()
            self._expose_apiserver()
            self.runtime.start()
            owner.write_text(str(self.state))
            self._start_kubelet()
            self._start_kube_proxy()
            self._wait_ready()
        except BaseException:
            self._keep_logs()
            self.down(restore_apiserver=False)
            raise

    def clear_dead_owner(self) -> None:
        """If another cluster's node owns the host paths: while its daemons live,
        refuse; when they are dead (its session was killed before it could take the
        node down), clean up after it with its own record of the host."""
        owner = RUN_DIR / "owner"
        if owner.exists() and owner.read_text() != str(self.state):
            self._take_over(Path(owner.read_text()))

    def _take_over(self, previous: Path) -> None:
        if any(processes.alive(d, state_dir=previous) for d in DAEMONS):
            raise RealNodeError(
                f"a real node already runs on this machine (cluster state {previous});"
                " only one can (the kubelet uses fixed host paths): stop it first"
            )
        print(f"taking over the host from a dead real node (cluster state {previous})",
              file=sys.stderr)  # fmt: skip
        left = RealNode(self.plane)
        left.state = previous
        left.down(restore_apiserver=False)
        (RUN_DIR / "owner").unlink(missing_ok=True)

    def _record_host(self) -> None:
        before = {
            "sysctls": hostcleanup.read_sysctls(SYSCTLS),
            "dirs": [str(d) for d in FIXED_DIRS if d.exists()],
            "nft_tables": hostcleanup.nft_tables(),
        }
        (self.state / "host-before.json").write_text(json.dumps(before, indent=2))

    def _network(self) -> None:
        if not hostcleanup.link_exists(nodeconfig.BRIDGE):
            _ip("link", "add", nodeconfig.BRIDGE, "type", "bridge")
            prefix = nodeconfig.POD_SUBNET.split("/")[1]
            _ip("addr", "add", f"{NODE_IP}/{prefix}", "dev", nodeconfig.BRIDGE)
            _ip("link", "set", nodeconfig.BRIDGE, "up")
        port = self.plane.ports().apiserver
        family, table = GUARD_TABLE
        rules = f"""
table {family} {table} {{
  chain input {{
    type filter hook input priority filter; policy accept;
    tcp dport {{ {port}, 10250 }} iifname != {{ "lo", "{nodeconfig.BRIDGE}" }} drop
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    ip saddr {nodeconfig.POD_SUBNET} ip daddr != {nodeconfig.POD_SUBNET} drop
  }}
}}
"""
        hostcleanup.nft("delete", "table", family, table)
        (self.state / "guard.nft").write_text(rules)
        hostcleanup.nft("-f", str(self.state / "guard.nft"))

    def _certificates(self) -> None:
        ca = self.plane.pki  # one CA: the node's certificates sit beside the cluster's
        for name, subject in (
            ("kubelet-client", f"/O=system:nodes/CN=system:node:{NODE_NAME}"),
            ("kube-proxy", "/CN=system:kube-proxy"),
            ("apiserver-kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client"),
        ):
            pki.issue(ca, name, subject=subject, extensions=pki.client_extensions())
        pki.issue(
            ca,
            "kubelet-serving",
            subject=f"/CN={NODE_NAME}",
            extensions=pki.serving_extensions(f"IP:{NODE_IP},DNS:{NODE_NAME}"),
        )

    def _expose_apiserver(self) -> None:
        """The API server advertises the node address, listens where Pods reach it,
        and calls kubelets with a client certificate (kubectl logs/exec)."""
        ca = self.plane.pki
        wanted = {
            "--bind-address": "0.0.0.0",
            "--advertise-address": NODE_IP,
            "--kubelet-client-certificate": str(ca.root / "apiserver-kubelet-client.crt"),
            "--kubelet-client-key": str(ca.root / "apiserver-kubelet-client.key"),
            "--kubelet-certificate-authority": str(ca.ca_cert),
            "--kubelet-preferred-address-types": "InternalIP",
        }
        current = self.plane.apiserver_flags()
        if any(current.get(k) != v for k, v in wanted.items()):
            pki.reissue_serving_cert(ca, extra_ips=(NODE_IP,))
            self.plane.restart_apiserver(wanted)

    def _start_kubelet(self) -> None:
        ca = self.plane.pki
        config = nodeconfig.kubelet_config(
            self.identity,
            paths=self.runtime.paths,
            state=self.state,
            ca=ca.ca_cert,
            cert=ca.root / "kubelet-serving.crt",
            key=ca.root / "kubelet-serving.key",
            healthz_port=processes.free_port(),
        )
        kubeconfig = self._kubeconfig("kubelet", "kubelet-client")
        (self.state / "kubelet.yaml").write_text(yaml.safe_dump(config))
        labels = ",".join(f"{k}={v}" for k, v in self.identity.labels.items())
        self.kubelet_argv = [
            str(self.plane.bin_dir / "kubelet"),
            f"--config={self.state / 'kubelet.yaml'}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={self.state / 'kubelet'}",
            f"--cert-dir={self.state / 'pki'}",
            f"--hostname-override={NODE_NAME}",
            f"--node-ip={NODE_IP}",
            f"--node-labels={labels}",
            "--v=1",
        ]
        processes.start("kubelet", self.kubelet_argv, state_dir=self.state, env=self.runtime.env())

    def _start_kube_proxy(self) -> None:
        config = nodeconfig.kube_proxy_config(
            self.identity,
            kubeconfig_path=self._kubeconfig("kube-proxy", "kube-proxy"),
            healthz_port=processes.free_port(),
            metrics_port=processes.free_port(),
        )
        (self.state / "kube-proxy.yaml").write_text(yaml.safe_dump(config))
        processes.start(
            "kube-proxy",
            [str(self.plane.bin_dir / "kube-proxy"), f"--config={self.state / 'kube-proxy.yaml'}"],
            state_dir=self.state,
            env=self.runtime.env(),
        )

    def _kubeconfig(self, name: str, cert: str) -> Path:
        ca = self.plane.pki
        body = nodeconfig.kubeconfig(
            server=f"https://{NODE_IP}:{self.plane.ports().apiserver}",
            ca=ca.ca_cert,
            cert=ca.root / f"{cert}.crt",
            key=ca.root / f"{cert}.key",
            user=name,
        )
        path = self.state / f"{name}.kubeconfig"
        path.write_text(yaml.safe_dump(body))
        path.chmod(0o600)
        return path

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            for daemon in DAEMONS:
                if not processes.alive(daemon, state_dir=self.state):
                    tail = processes.log_tail(daemon, state_dir=self.state)
                    raise RealNodeError(f"{daemon} exited during start-up:\n{tail}")
            if self.ready() and self._service_endpoints() == [NODE_IP]:
                return
            time.sleep(0.5)
        raise RealNodeError(f"node {NODE_NAME} not Ready after {READY_TIMEOUT:.0f}s")

    def ready(self) -> bool:
        try:
            node: dict[str, Any] = json.loads(
                self.plane.kubectl("get", "node", NODE_NAME, "-o", "json")
            )
        except ControlPlaneError:
            return False
        conditions = node.get("status", {}).get("conditions", [])
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    def _service_endpoints(self) -> list[str]:
        """Addresses behind the `kubernetes` Service (the API server for Pods)."""
        slices = json.loads(
            self.plane.kubectl(
                "get",
                "endpointslices",
                "-n",
                "default",
                "-l",
                "kubernetes.io/service-name=kubernetes",
                "-o",
                "json",
            )
        )
        return sorted(
            a for s in slices["items"] for e in s.get("endpoints") or [] for a in e["addresses"]
        )

    # -- faults (tests) --------------------------------------------------------------

    def stop_kubelet(self) -> None:
        """Stop the kubelet alone, as a node failure would: containers keep running."""
        processes.stop("kubelet", state_dir=self.state)

    def start_kubelet(self) -> None:
        processes.restart("kubelet", state_dir=self.state)

    # -- down ------------------------------------------------------------------------

    def down(self, *, restore_apiserver: bool) -> None:
        """Remove the node and everything it left on the host.

        restore_apiserver: put the API server back on loopback (when the cluster
        itself stays up)."""
        if self.state.exists():
            self._delete_node_object()
        # The kubelet first, or it would restart the containers removed next.
        for daemon in DAEMONS:
            processes.stop(daemon, state_dir=self.state)
        self.runtime.stop()
        proxy_config = self.state / "kube-proxy.yaml"
        if proxy_config.exists():
            # kube-proxy removes its own rules (every mode) and exits.
            subprocess.run(
                [str(self.plane.bin_dir / "kube-proxy"), "--cleanup", f"--config={proxy_config}"],
                capture_output=True,
                env=self.runtime.env(),
                timeout=60,
                check=False,
            )
        self._clean_host()
        if restore_apiserver and self.plane.running():
            flags = self.plane.apiserver_flags()
            if flags.get("--advertise-address") == NODE_IP:
                self.plane.restart_apiserver(
                    {"--bind-address": "127.0.0.1", "--advertise-address": "127.0.0.1"}
                )

    def _delete_node_object(self) -> None:
        if self.plane.running():
            with contextlib.suppress(ControlPlaneError):
                self.plane.kubectl(
                    "delete", "node", NODE_NAME, "--ignore-not-found", "--wait=false"
                )

    def _clean_host(self) -> None:
        before_file = self.state / "host-before.json"
        before: dict[str, Any] = json.loads(before_file.read_text()) if before_file.exists() else {}
        hostcleanup.unmount_under([self.state, *FIXED_DIRS])
        hostcleanup.remove_cgroups(("kubepods",))
        hostcleanup.delete_link(nodeconfig.BRIDGE)
        hostcleanup.nft("delete", "table", *GUARD_TABLE)
        hostcleanup.nft("delete", "table", "ip", "kube-proxy")
        hostcleanup.nft("delete", "table", "ip6", "kube-proxy")
        hostcleanup.remove_kube_chains(tuple(t) for t in before.get("nft_tables", []))
        hostcleanup.write_sysctls(before.get("sysctls", {}))
        kept = set(before.get("dirs", [str(d) for d in FIXED_DIRS if d.exists()]))
        for directory in FIXED_DIRS:
            if str(directory) not in kept:
                hostcleanup.remove_tree(directory)
        owner = RUN_DIR / "owner"
        if owner.exists() and owner.read_text() == str(self.state):
            owner.unlink()
        hostcleanup.remove_tree(self.state)

    def _keep_logs(self) -> None:
        logs = self.state / "logs"
        if logs.exists():
            kept = self.state.parent / "realnode.failed-logs"
            hostcleanup.remove_tree(kept)
            shutil.copytree(logs, kept)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)
