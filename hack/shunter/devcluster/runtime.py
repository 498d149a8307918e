"""The real node's container runtime: containerd with runc and CNI, and buildkitd.

One per machine: the kubelet's fixed host paths allow only one real node anyway.
Runtime state (sockets, runc's state, network namespaces, shim sockets) lives under
RUN_DIR and is removed when the runtime stops; images and their snapshots live in
~/.cache/shunter/realnode and are kept, so an image built or imported once is there
for every later cluster. `make images` starts the runtime for its build when no node
runs, and stops it afterwards.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

from shunter.devcluster import hostcleanup, nodeconfig, ociimage, processes

RUN_DIR = Path("/run/shunter-realnode")
# Fixed paths containerd's clients use whatever the configuration says (buildkit's
# FIFOs and the runc root of its build steps): removed on stop unless they existed.
HOST_DIRS = (Path("/run/containerd"),)
NAMESPACE = "k8s.io"  # where the kubelet (CRI) looks for images
START_TIMEOUT = 60.0


class RuntimeUnavailable(RuntimeError):
    """containerd or buildkitd could not be started or used."""


def cache_dir() -> Path:
    root = os.environ.get("SHUNTER_CACHE_DIR", Path.home() / ".cache/shunter")
    return Path(root) / "realnode"


class Runtime:
    """containerd (and buildkitd on demand), identified by RUN_DIR."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.paths = nodeconfig.RuntimePaths(run=RUN_DIR, cache=cache_dir(), bin=bin_dir)

    @property
    def socket(self) -> Path:
        return self.paths.containerd_socket

    def env(self) -> dict[str, str]:
        """The shim, runc, the CNI plugins and iptables are found through PATH."""
        path = f"{self.bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        return {**os.environ, "PATH": path}

    def running(self) -> bool:
        return processes.alive("containerd", state_dir=RUN_DIR)

    def owned(self) -> bool:
        """Whether a real node uses this runtime (realnode.py writes the owner file)."""
        return (RUN_DIR / "owner").exists()

    # -- containerd --------------------------------------------------------------

    def start(self) -> None:
        """Start containerd (no-op when it runs) with the pause image in its store."""
        if self.running():
            return
        for directory in (self.paths.run, self.paths.cache):
            directory.mkdir(parents=True, exist_ok=True)
        existing = self.paths.run / "host-dirs.json"
        if not existing.exists():
            existing.write_text(json.dumps([str(d) for d in HOST_DIRS if d.exists()]))
        config = self.paths.run / "containerd.toml"
        config.write_text(nodeconfig.containerd_config(self.paths))
        self.paths.cni_conf_dir.mkdir(parents=True, exist_ok=True)
        (self.paths.cni_conf_dir / "10-shunter.conflist").write_text(
            json.dumps(nodeconfig.cni_config(self.paths), indent=2)
        )
        processes.start(
            "containerd",
            [str(self.bin_dir / "containerd"), f"--config={config}", "--log-level=warn"],
            state_dir=RUN_DIR,
            env=self.env(),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while self.ctr("version", check=False).returncode:
            if not self.running():
                tail = processes.log_tail("containerd", state_dir=RUN_DIR)
                raise RuntimeUnavailable(f"containerd exited during start-up:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeUnavailable(f"containerd did not answer in {START_TIMEOUT:.0f}s")
            time.sleep(0.2)
        if not self.has_image(nodeconfig.PAUSE_IMAGE):
            self.import_image(ociimage.pause_image(self.bin_dir / "pause", self.paths.run))

    def stop(self) -> None:
        """Remove every Pod sandbox, stop buildkitd and containerd, and leave no
        process, mount, cgroup or runtime directory behind (images stay cached)."""
        if self.running():
            # Sandboxes first: their processes live outside containerd's own cgroup.
            self.crictl("stopp", *self._sandboxes(), check=False)
            self.crictl("rmp", "--force", "--all", check=False)
        self.stop_buildkitd()
        processes.stop("containerd", state_dir=RUN_DIR, timeout=30)
        shim = str(self.bin_dir / "containerd-shim-runc-v2")
        hostcleanup.kill_processes(lambda exe, argv: exe == shim or argv[:1] == [shim])
        hostcleanup.unmount_under([self.paths.run, self.paths.cache])
        hostcleanup.remove_cgroups(("buildkit",))
        existing = self.paths.run / "host-dirs.json"
        kept = json.loads(existing.read_text()) if existing.exists() else []
        for directory in HOST_DIRS:
            if str(directory) not in kept:
                hostcleanup.remove_tree(directory)
        hostcleanup.remove_tree(self.paths.run)

    def _sandboxes(self) -> list[str]:
        result = self.crictl("pods", "-q", check=False)
        return result.stdout.split() if not result.returncode else []

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / "ctr"), f"--address={self.socket}", f"--namespace={NAMESPACE}"]
        return self._run([*argv, *args], check=check)

    def crictl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        endpoint = f"unix://{self.socket}"
        argv = [
            str(self.bin_dir / "crictl"),
            f"--runtime-endpoint={endpoint}",
            f"--image-endpoint={endpoint}",
            "--timeout=30s",
        ]
        return self._run([*argv, *args], check=check)

    def _run(self, argv: list[str], *, check: bool) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(argv, capture_output=True, text=True, env=self.env())
        if check and result.returncode:
            raise RuntimeUnavailable(f"{' '.join(argv[:1] + argv[2:])}: {result.stderr.strip()}")
        return result

    def has_image(self, name: str) -> bool:
        listed = self.ctr("images", "ls", "-q", f"name=={name}", check=False)
        return name in listed.stdout.split()

    def import_image(self, tarball: Path) -> None:
        self.ctr("images", "import", "--local", str(tarball))
        tarball.unlink()

    # -- buildkitd -----------------------------------------------------------------

    @property
    def buildkit_socket(self) -> Path:
        return self.paths.run / "buildkitd.sock"

    def start_buildkitd(self) -> None:
        """buildkitd on containerd's k8s.io namespace: built images land where the
        kubelet finds them, with their snapshots already unpacked."""
        if processes.alive("buildkitd", state_dir=RUN_DIR):
            return
        self.start()
        processes.start(
            "buildkitd",
            [
                str(self.bin_dir / "buildkitd"),
                f"--root={self.paths.cache / 'buildkit'}",
                f"--addr=unix://{self.buildkit_socket}",
                "--oci-worker=false",
                "--containerd-worker=true",
                f"--containerd-worker-addr={self.socket}",
                f"--containerd-worker-namespace={NAMESPACE}",
                "--containerd-worker-snapshotter=overlayfs",
                # RUN steps (pip) use the host's network: the builder has no CNI of its own.
                "--containerd-worker-net=host",
                "--containerd-worker-gc=true",
                "--containerd-worker-gc-keepstorage=2000",  # MB of build cache kept
            ],
            state_dir=RUN_DIR,
            env=self.env(),
        )
        deadline = time.monotonic() + START_TIMEOUT
        while self.buildctl("debug", "workers", check=False).returncode:
            if not processes.alive("buildkitd", state_dir=RUN_DIR):
                tail = processes.log_tail("buildkitd", state_dir=RUN_DIR)
                raise RuntimeUnavailable(f"buildkitd exited during start-up:\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeUnavailable(f"buildkitd did not answer in {START_TIMEOUT:.0f}s")
            time.sleep(0.2)

    def stop_buildkitd(self) -> None:
        processes.stop("buildkitd", state_dir=RUN_DIR, timeout=30)

    def buildctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / "buildctl"), f"--addr=unix://{self.buildkit_socket}"]
        return self._run([*argv, *args], check=check)
