"""What a real node can leave on this machine, captured so that two snapshots compare.

Processes of the node's own binaries, mounts, cgroups, network links, the nftables
ruleset (iptables-nft included), sysctls and the fixed host directories the kubelet
and the runtime use. Things other jobs on the machine change all the time (their
processes, counters, entropy) are left out, so a difference means the node left it.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shunter.devcluster.realnode import FIXED_DIRS
from shunter.devcluster.runtime import RUN_DIR

NODE_BINARIES = ("containerd", "containerd-shim-runc-v2", "kubelet", "kube-proxy", "runc",
                 "buildkitd", "pause")  # fmt: skip
NODE_CGROUPS = ("kubepods", "buildkit")
# sysctls that move by themselves (counters, clocks, random state).
VOLATILE_SYSCTLS = (
    "fs/dentry-state",
    "fs/inode-nr",
    "fs/inode-state",
    "fs/file-nr",
    "fs/quota/",
    "kernel/random/",
    "kernel/ns_last_pid",
    "kernel/pty/nr",
    "kernel/tainted",
    "net/netfilter/nf_conntrack_count",
    "vm/stat_refresh",
    "fs/aio-nr",
    "kernel/perf_event_max_sample_rate",
    "net/ipv4/route/",
    "net/ipv6/route/",
    "kernel/sched_domain/",
    "fs/binfmt_misc/",
    "kernel/keys/",
    "fs/pipe-user-pages",
    "net/core/bpf_jit_kallsyms",
    "dev/cdrom/",
)


@dataclass(frozen=True)
class HostState:
    processes: frozenset[str]
    mounts: frozenset[str]
    cgroups: frozenset[str]
    links: frozenset[str]
    ruleset: str
    sysctls: tuple[tuple[str, str], ...]
    dirs: frozenset[str]

    def differences(self, other: HostState) -> list[str]:
        """Human-readable differences between self (before) and other (after)."""
        found = []
        for name in ("processes", "mounts", "cgroups", "links", "dirs"):
            before, after = getattr(self, name), getattr(other, name)
            found += [f"{name}: left behind {x}" for x in sorted(after - before)]
            found += [f"{name}: removed {x}" for x in sorted(before - after)]
        if self.ruleset != other.ruleset:
            found.append(f"nftables ruleset differs:\n--- before\n{self.ruleset}\n--- after\n"
                         f"{other.ruleset}")  # fmt: skip
        before_s, after_s = dict(self.sysctls), dict(other.sysctls)
        for key in sorted(set(before_s) | set(after_s)):
            if before_s.get(key) != after_s.get(key):
                found.append(f"sysctl {key}: {before_s.get(key)!r} -> {after_s.get(key)!r}")
        return found


def _node_processes(bin_dir: Path) -> frozenset[str]:
    ours = {str(bin_dir / name) for name in NODE_BINARIES}
    found = set()
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            cgroup = Path(f"/proc/{pid}/cgroup").read_text()
        except OSError:
            continue
        if exe in ours or "kubepods" in cgroup or "/buildkit/" in cgroup:
            found.add(f"{pid} {exe}")
    return frozenset(found)


def _mounts() -> frozenset[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return frozenset(" ".join(line.split()[3:5]) for line in lines)


def _cgroups() -> frozenset[str]:
    """Top-level cgroups of every hierarchy (where the kubelet and runc create theirs),
    and the whole trees a node makes. Below other top-level groups, e.g. the ones this
    machine's own process runner makes per command, things come and go."""
    found = set()
    root = Path("/sys/fs/cgroup")
    for hierarchy in root.iterdir() if root.is_dir() else ():
        for top in (d for d in hierarchy.iterdir() if d.is_dir()):
            found.add(str(top))
            if top.name in NODE_CGROUPS:
                found.update(directory for directory, _dirs, _files in os.walk(top))
    return frozenset(found)


def _sysctls() -> tuple[tuple[str, str], ...]:
    values = []
    for directory, _subdirs, files in os.walk("/proc/sys"):
        for name in files:
            path = os.path.join(directory, name)
            key = path[len("/proc/sys/") :]
            if key.startswith(VOLATILE_SYSCTLS) or ("/conf/" in key and "/conf/all/" not in key):
                continue  # per-interface settings vanish with their interface
            if "/neigh/" in key and "/neigh/default/" not in key:
                continue
            try:
                values.append((key, Path(path).read_text().strip()))
            except OSError:
                continue  # write-only or not readable
    return tuple(sorted(values))


def snapshot(bin_dir: Path) -> HostState:
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True)
    ruleset = subprocess.run(["nft", "list", "ruleset"], capture_output=True, text=True)
    return HostState(
        processes=_node_processes(bin_dir),
        mounts=_mounts(),
        cgroups=_cgroups(),
        links=frozenset(line.split(":")[1].strip() for line in links.stdout.splitlines()),
        ruleset=ruleset.stdout,
        sysctls=_sysctls(),
        dirs=frozenset(str(d) for d in (*FIXED_DIRS, RUN_DIR) if d.exists()),
    )
