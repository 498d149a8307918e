"""The operator process's memory: how glibc's allocator is set, giving its free pages
back, and where the memory is (SIGUSR1's dump, shunter.operator.main).

Measured on the large-2000 shape (60,000 jobs; the dump's figures, bench/RESULTS.md):
beside what Python's objects hold, glibc's heaps kept 80-90 MiB free and never gave
it back. glibc raises its mmap threshold each time a large block is freed (up to 32
MiB), so the large transient blocks of a pass or a list over 60,000 jobs come from the
heap after the first ones, and their space stays in the RSS once freed. `tune` fixes
the threshold at glibc's own starting value (which also stops the trim threshold from
moving): such blocks are mapped and unmapped. `trim` gives back the free pages inside
the heaps (malloc_trim), every TRIM_SECONDS from the controller's loop.

The cyclic garbage collector: its time is counted (`time_collections`), and its young
generations are collected less often (`tune_collector`, GC_THRESHOLDS): with 60,000
jobs the objects a full collection walks number in the millions, and Python's
thresholds made 80 of them in 20 minutes (87 s, up to 3.3 s each); with these, two.

Anything this platform lacks (another C library, no mallinfo2) is skipped: the
operator runs as it would without this module.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
import os
import sys
import tempfile
import time
from functools import cache
from typing import Any

log = logging.getLogger("shunter.operator.memory")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
# glibc's default start for both; a fixed value turns off their raising.
MMAP_THRESHOLD = 128 * 1024
TRIM_SECONDS = 30.0
MIB = 2**20
# The cyclic garbage collector's thresholds (Python's are 700, 10, 10). A young
# collection every 700 net allocations promotes whatever lives across an await (a
# write in flight, a pass's work waiting for the API server) to the oldest generation,
# whose growth by a quarter starts a full collection, which walks every tracked object:
# in the large-2000 run 42 full collections in the first five minutes, 19 s in all,
# up to 1.5 s each with the event loop stopped. Collections of the young generations
# every 50,000 and 1,000,000 net allocations let such objects die before they are
# promoted (at most about 50,000 young objects wait for a collection).
GC_THRESHOLDS = (50_000, 20, 10)


@cache
def _libc() -> Any | None:
    """glibc, or None (another C library: nothing to tune)."""
    with contextlib.suppress(OSError, TypeError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim"):
            if hasattr(libc, "mallinfo2"):  # glibc 2.33 and later
                libc.mallinfo2.restype = _MallInfo2
            return libc
    return None


class _MallInfo2(ctypes.Structure):
    """glibc's `struct mallinfo2` (all arenas; sizes in bytes)."""

    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]  # fmt: skip


def tune() -> bool:
    """Fix glibc's mmap and trim thresholds (True when this is glibc and it took them)."""
    libc = _libc()
    if libc is None:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        libc.mallopt(M_TRIM_THRESHOLD, MMAP_THRESHOLD)
    )


def tune_collector() -> None:
    """The collector's thresholds for a process holding millions of objects."""
    gc.set_threshold(*GC_THRESHOLDS)


def trim() -> bool:
    """Give the heaps' free pages back to the system (True when some were)."""
    libc = _libc()
    return libc is not None and bool(libc.malloc_trim(0))


async def keep_trimmed(every: float = TRIM_SECONDS) -> None:
    """`trim` every so often, on the loop that frees most (a few milliseconds each)."""
    while True:
        await asyncio.sleep(every)
        trim()


class CollectionClock:
    """The time the cyclic garbage collector took, by generation (a gc callback). A
    collection of the oldest generation walks every tracked object (about a second
    per two million here): it stops the event loop for that long."""

    def __init__(self) -> None:
        self.count = [0, 0, 0]
        self.collected = [0, 0, 0]  # unreachable objects freed (cyclic garbage)
        self.seconds = [0.0, 0.0, 0.0]
        self.longest = [0.0, 0.0, 0.0]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        took, generation = time.perf_counter() - self._started, info["generation"]
        self.count[generation] += 1
        self.collected[generation] += info["collected"]
        self.seconds[generation] += took
        self.longest[generation] = max(self.longest[generation], took)

    def lines(self) -> list[str]:
        return [
            f"gc generation {g}: {self.count[g]} collections, {self.seconds[g]:.1f} s "
            f"(longest {self.longest[g] * 1000:.0f} ms), {self.collected[g]} objects freed"
            for g in (2, 1, 0)
        ]


CLOCK = CollectionClock()
# The operator's child processes by name (the planner, shunter.operator.planner): their
# RSS is in the dump too, since their memory is the operator's Pod's.
CHILDREN: dict[str, int] = {}


def time_collections() -> None:
    """Time the collector's work from now on (CLOCK; shown by `summary`)."""
    if CLOCK not in gc.callbacks:
        gc.callbacks.append(CLOCK)


def summary() -> list[str]:
    """Where the process's memory is, as lines for the log: its RSS; glibc's heaps
    (bytes in use, and free but kept; the large blocks it mapped); Python's
    small-object allocator (its arenas, the bytes of objects in them, and the bytes
    free in them: what fragmentation keeps). A part this platform lacks is left out."""
    out = []
    own = rss_mib("self")
    if own is not None:
        out.append(f"rss {own:.1f} MiB")
    libc = _libc()
    if libc is not None and hasattr(libc, "mallinfo2"):
        info = libc.mallinfo2()
        heaps, used, free = info.arena / MIB, info.uordblks / MIB, info.fordblks / MIB
        out.append(f"glibc heaps {heaps:.1f} MiB: in use {used:.1f}, free {free:.1f}; "
                   f"mapped blocks {info.hblkhd / MIB:.1f} MiB")  # fmt: skip
    stats = _pymalloc_stats()
    if stats:
        used = stats.get("bytes in allocated blocks", 0) / MIB
        free = (
            stats.get("bytes in available blocks", 0) + stats.get("bytes in empty pools", 0)
        ) / MIB
        out.append(f"python arenas {stats.get('arenas allocated current', 0)}, "
                   f"{stats.get('Total', 0) / MIB:.1f} MiB: objects {used:.1f} MiB, "
                   f"free in them {free:.1f} MiB")  # fmt: skip
    if CLOCK in gc.callbacks:
        out += CLOCK.lines()
    for name, pid in sorted(CHILDREN.items()):
        child = rss_mib(str(pid))
        if child is not None:
            out.append(f"{name} (pid {pid}): rss {child:.1f} MiB")
    return out


def rss_mib(pid: str = "self") -> float | None:
    """A process's resident memory in MiB (None: gone, or no /proc here)."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        with open(f"/proc/{pid}/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / MIB
    return None


def _pymalloc_stats() -> dict[str, int]:
    """sys._debugmallocstats' figures by name (the first of each: the arenas' own),
    read from the C stderr it writes to; empty where it is missing."""
    if not hasattr(sys, "_debugmallocstats"):
        return {}
    stats: dict[str, int] = {}
    with contextlib.suppress(OSError), tempfile.TemporaryFile() as capture:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(capture.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        for line in capture.read().decode(errors="replace").splitlines():
            name, _, value = line.partition("=")
            number = value.strip().replace(",", "")
            if number.isdigit():
                stats.setdefault(name.lstrip("# ").strip(), int(number))
    return stats
