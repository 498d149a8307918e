"""Undo what a real node leaves on the host: processes, mounts, cgroups, links,
firewall rules, sysctls and directories.

Every function here removes only what matches the node's own names and paths (its
bridge, its run directory, `kubepods`, chains named KUBE-*), so it is safe beside the
other clusters of this machine, which never create such things.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
# Tables iptables-nft creates; the kubelet adds its KUBE-* chains to them.
IPTABLES_TABLES = ("filter", "nat", "mangle")


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def kill_processes(match: Callable[[str, list[str]], bool], *, timeout: float = 10) -> int:
    """SIGKILL every process whose (exe, argv) matches; wait until they are gone."""
    victims = []
    for pid in _pids():
        try:
            exe = os.readlink(f"/proc/{pid}/exe")
            argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")]
        except OSError:
            continue
        if match(exe, argv):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            victims.append(pid)
    deadline = time.monotonic() + timeout
    while victims and time.monotonic() < deadline:
        victims = [p for p in victims if Path(f"/proc/{p}").exists() and not _zombie(p)]
        time.sleep(0.05)
    return len(victims)


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def mounts_under(roots: Iterable[Path]) -> list[str]:
    """Mount points at or below any of roots, deepest first."""
    prefixes = [str(r.resolve()) for r in roots]
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == p or point.startswith(p + "/") for p in prefixes):
            found.append(point)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_under(roots: Iterable[Path]) -> None:
    roots = list(roots)
    for _ in range(3):  # a bind mount may appear twice (propagation); retry
        points = mounts_under(roots)
        if not points:
            return
        for point in points:
            if subprocess.run(["umount", point], capture_output=True).returncode:
                subprocess.run(["umount", "-l", point], capture_output=True)


def remove_cgroups(names: Iterable[str]) -> None:
    """Remove the cgroup trees with these top-level names in every hierarchy."""
    for hierarchy in CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else ():
        for name in names:
            top = hierarchy / name
            if not top.is_dir():
                continue
            for directory, _subdirs, _files in sorted(
                os.walk(top), key=lambda entry: entry[0].count("/"), reverse=True
            ):
                with contextlib.suppress(OSError):
                    os.rmdir(directory)


def remove_tree(path: Path) -> None:
    unmount_under([path])
    shutil.rmtree(path, ignore_errors=True)


def link_exists(name: str) -> bool:
    return Path(f"/sys/class/net/{name}").exists()


def delete_link(name: str) -> None:
    if link_exists(name):
        subprocess.run(["ip", "link", "delete", name], check=True, capture_output=True)


def read_sysctls(keys: Iterable[str]) -> dict[str, str]:
    values = {}
    for key in keys:
        with contextlib.suppress(OSError):
            values[key] = Path("/proc/sys", key.replace(".", "/")).read_text().strip()
    return values


def write_sysctls(values: Mapping[str, str]) -> None:
    for key, value in values.items():
        with contextlib.suppress(OSError):
            Path("/proc/sys", key.replace(".", "/")).write_text(value)


def nft_tables() -> list[tuple[str, str]]:
    """(family, name) of every nftables table."""
    result = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True)
    if result.returncode:
        return []
    items = json.loads(result.stdout).get("nftables", [])
    return [(i["table"]["family"], i["table"]["name"]) for i in items if "table" in i]


def nft(*args: str) -> None:
    subprocess.run(["nft", *args], capture_output=True, check=False)


def remove_kube_chains(keep_tables: Iterable[tuple[str, str]]) -> None:
    """Delete the KUBE-* chains (and the rules jumping to them) the kubelet added to
    iptables' tables, then those tables themselves when they are left empty and did
    not exist before (keep_tables)."""
    keep = set(keep_tables)
    for family in ("ip", "ip6"):
        for table in IPTABLES_TABLES:
            listing = subprocess.run(
                ["nft", "-j", "-a", "list", "table", family, table], capture_output=True, text=True
            )
            if listing.returncode:
                continue
            items = json.loads(listing.stdout).get("nftables", [])
            for rule in (i["rule"] for i in items if "rule" in i):
                if "KUBE-" in json.dumps(rule.get("expr", [])):
                    nft(
                        "delete",
                        "rule",
                        family,
                        table,
                        rule["chain"],
                        "handle",
                        str(rule["handle"]),
                    )
            chains = [i["chain"] for i in items if "chain" in i]
            for chain in (c for c in chains if c["name"].startswith("KUBE-")):
                nft("flush", "chain", family, table, chain["name"])
            for chain in (c for c in chains if c["name"].startswith("KUBE-")):
                nft("delete", "chain", family, table, chain["name"])
            if (family, table) not in keep and _empty(family, table):
                nft("delete", "table", family, table)


def _empty(family: str, table: str) -> bool:
    listing = subprocess.run(
        ["nft", "-j", "list", "table", family, table], capture_output=True, text=True
    )
    if listing.returncode:
        return False
    items = json.loads(listing.stdout).get("nftables", [])
    return not any("rule" in i for i in items) and not any(
        "chain" in i and "hook" not in i["chain"] for i in items
    )
