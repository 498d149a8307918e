"""Configuration files of the real node's daemons, rendered from paths (pure).

Every path a daemon would otherwise default to a fixed host location (/var/lib/...,
/etc/cni, /opt/cni, /run/containerd) is moved under the runtime's run directory, the
cluster's state directory or the image cache, so that stopping the node can remove
exactly what it created. Settings that this machine needs, found by a proof of
concept (see README, "A real node"):

- cgroup v1 hierarchies: the kubelet refuses them since 1.35 unless `failCgroupV1`
  is false; the cgroupfs driver (no systemd here).
- No CAP_SYS_RESOURCE: containerd must not set negative oom_score_adj values
  (`restrict_oom_score_adj`), or every sandbox fails to start.
- The pod network never reaches beyond this machine: the bridge does no masquerade,
  and realnode.py drops forwarded traffic from the pod subnet to anywhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

PAUSE_IMAGE = "shunter.local/pause:3.10"
BRIDGE = "shunter-cni0"
POD_SUBNET = "10.244.0.0/24"
GATEWAY = "10.244.0.1"  # the bridge's address: the node's own address too
SERVICE_SUBNET = "10.96.0.0/16"  # the control plane's --service-cluster-ip-range


@dataclass(frozen=True)
class RuntimePaths:
    run: Path  # removed when the runtime stops
    cache: Path  # kept: images and their snapshots, buildkit's cache
    bin: Path

    @property
    def containerd_socket(self) -> Path:
        return self.run / "containerd" / "containerd.sock"

    @property
    def cni_conf_dir(self) -> Path:
        return self.run / "cni" / "net.d"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "") + "'"
    return "[" + ", ".join(_toml(v) for v in value) + "]"


def _render(tables: dict[str, dict[str, Any]], top: dict[str, Any]) -> str:
    lines = [f"{key} = {_toml(value)}" for key, value in top.items()]
    for table, entries in tables.items():
        lines += ["", f"[{table}]", *(f"  {k} = {_toml(v)}" for k, v in entries.items())]
    return "\n".join(lines) + "\n"


def containerd_config(paths: RuntimePaths) -> str:
    cri = "plugins.'io.containerd.cri.v1.runtime'"
    runc = f"{cri}.containerd.runtimes.runc"
    return _render(
        {
            "grpc": {"address": str(paths.containerd_socket)},
            "ttrpc": {"address": f"{paths.containerd_socket}.ttrpc"},
            "plugins.'io.containerd.cri.v1.images'": {"snapshotter": "overlayfs"},
            "plugins.'io.containerd.cri.v1.images'.pinned_images": {"sandbox": PAUSE_IMAGE},
            cri: {
                "restrict_oom_score_adj": True,
                "netns_mounts_under_state_dir": True,
                "enable_cdi": False,
                "cdi_spec_dirs": [],
            },
            f"{cri}.containerd": {"default_runtime_name": "runc"},
            runc: {"runtime_type": "io.containerd.runc.v2"},
            f"{runc}.options": {
                "BinaryName": str(paths.bin / "runc"),
                "Root": str(paths.run / "runc"),
                "SystemdCgroup": False,
            },
            f"{cri}.cni": {
                "bin_dirs": [str(paths.bin / "cni")],
                "conf_dir": str(paths.cni_conf_dir),
                "max_conf_num": 1,
            },
            "plugins.'io.containerd.grpc.v1.cri'": {"stream_server_address": "127.0.0.1"},
            "plugins.'io.containerd.shim.v1.manager'": {"socket_dir": str(paths.run / "s")},
            "plugins.'io.containerd.internal.v1.opt'": {"path": str(paths.cache / "opt")},
            "plugins.'io.containerd.image-verifier.v1.bindir'": {
                "bin_dir": str(paths.cache / "opt/image-verifier/bin")
            },
        },
        {
            "version": 3,
            "root": str(paths.cache / "containerd"),
            "state": str(paths.run / "containerd"),
            "imports": [],
            # Plugins that would read or create fixed host paths, and that nothing uses.
            "disabled_plugins": [
                "io.containerd.nri.v1.nri",
                "io.containerd.snapshotter.v1.btrfs",
                "io.containerd.snapshotter.v1.zfs",
                "io.containerd.snapshotter.v1.devmapper",
                "io.containerd.snapshotter.v1.blockfile",
                "io.containerd.snapshotter.v1.erofs",
                "io.containerd.differ.v1.erofs",
                "io.containerd.tracing.processor.v1.otlp",
                "io.containerd.internal.v1.tracing",
            ],
        },
    )


def cni_config(paths: RuntimePaths) -> dict[str, Any]:
    return {
        "cniVersion": "1.0.0",
        "name": "shunter",
        "plugins": [
            {
                "type": "bridge",
                "bridge": BRIDGE,
                "isGateway": True,
                # No masquerade: Pods talk to this machine (API server, PostgreSQL) only.
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(paths.run / "cni" / "ipam"),
                    "ranges": [[{"subnet": POD_SUBNET, "gateway": GATEWAY}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
        ],
    }


@dataclass(frozen=True)
class NodeIdentity:
    name: str
    ip: str
    labels: dict[str, str]
    taints: list[dict[str, str]]


def kubeconfig(*, server: str, ca: Path, cert: Path, key: Path, user: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "local", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}
        ],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user}}],
        "current-context": "local",
    }


def kubelet_config(
    node: NodeIdentity,
    *,
    paths: RuntimePaths,
    state: Path,
    ca: Path,
    cert: Path,
    key: Path,
    healthz_port: int,
) -> dict[str, Any]:
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.ip,  # the API server reaches it there (kubectl logs, exec)
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "x509": {"clientCAFile": str(ca)},
            "webhook": {"enabled": True},
            "anonymous": {"enabled": False},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "containerRuntimeEndpoint": f"unix://{paths.containerd_socket}",
        "cgroupDriver": "cgroupfs",
        "failCgroupV1": False,
        "failSwapOn": False,
        "protectKernelDefaults": False,
        "registerWithTaints": node.taints,
        "podLogsDir": str(state / "pod-logs"),
        "volumePluginDir": str(state / "volume-plugins"),
        # No cluster DNS here, and no lookups of the host's resolvers from Pods.
        "resolvConf": "",
        # A nearly full disk must not evict the trainer or delete the built images.
        "imageGCHighThresholdPercent": 100,
        "evictionHard": {
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
        },
        "maxPods": 32,
        "serializeImagePulls": False,
        "rotateCertificates": False,
        "serverTLSBootstrap": False,
        "nodeStatusReportFrequency": "10s",
    }


def kube_proxy_config(
    node: NodeIdentity, *, kubeconfig_path: Path, healthz_port: int, metrics_port: int
) -> dict[str, Any]:
    return {
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        # Its own nftables table (`ip kube-proxy`): removed whole when the node stops.
        "mode": "nftables",
        "clientConnection": {"kubeconfig": str(kubeconfig_path)},
        "hostnameOverride": node.name,
        "clusterCIDR": POD_SUBNET,
        "nodePortAddresses": [f"{node.ip}/32"],
        "healthzBindAddress": f"127.0.0.1:{healthz_port}",
        "metricsBindAddress": f"127.0.0.1:{metrics_port}",
        # 0: leave the host's conntrack sysctls as they are.
        "conntrack": {
            "maxPerCore": 0,
            "min": 0,
            "tcpEstablishedTimeout": "0s",
            "tcpCloseWaitTimeout": "0s",
        },
    }
