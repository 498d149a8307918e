"""Atomic, verified checkpoints, and which ones to keep.

A checkpoint file is one JSON header line ({"format", "step", "sha256", "size"})
followed by the torch-serialized payload. It is written to a temporary file in the
same directory, fsynced, then renamed over the final name (and the directory fsynced),
so a reader sees either the previous file or the whole new one. On load the size and
hash are checked: a torn, truncated or scribbled file is reported and skipped, never
trusted and never fatal.

Files are named `ckpt-<step, 9 digits>.pt`, so the newest is the last by name. After
each write all but the newest `keep` (default 2: the one just written and the one
before it, in case the newest turns out unreadable) are deleted; a resume reads the
newest that verifies.

The payload is loaded with `weights_only=True` (tensors, numbers, strings, lists,
tuples, dicts: what model, optimizer and scheduler state dicts and `rng.capture()` hold)
unless a caller that trusts its own files needs arbitrary objects (Lightning's
checkpoints hold some).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

FORMAT = "shunter-trainer-checkpoint/1"
NAME = re.compile(r"^ckpt-(\d{9})\.pt$")
KEEP = 2


class CorruptCheckpoint(Exception):
    """The file is not a complete checkpoint of ours."""


@dataclass(frozen=True)
class Loaded:
    path: Path
    step: int
    state: dict[str, Any]


@dataclass(frozen=True)
class Written:
    """A durable checkpoint, as Shunter is told about it."""

    path: Path
    step: int
    size_bytes: int
    write_seconds: float  # serializing, writing, fsync and rename
    time: float  # when it became durable (seconds since the epoch)


def path_for(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:09d}.pt"


def save(directory: Path, step: int, state: dict[str, Any], *, keep: int = KEEP) -> Written:
    """Write `state` as the checkpoint of `step`, then keep only the newest `keep`."""
    written = write(path_for(directory, step), step, state)
    prune(directory, keep=keep)
    return written


def write(final: Path, step: int, state: dict[str, Any]) -> Written:
    started = time.monotonic()
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = {
        "format": FORMAT,
        "step": step,
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    head = json.dumps(header).encode() + b"\n"
    write_atomically(final, (head, payload))
    return Written(
        path=final,
        step=step,
        size_bytes=len(head) + len(payload),
        write_seconds=round(time.monotonic() - started, 3),
        time=time.time(),
    )


def write_atomically(final: Path, chunks: Iterable[bytes]) -> None:
    """`final` holds either its previous content or all of `chunks`, even after a crash."""
    directory = final.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{final.stem}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # the rename itself is durable too
    finally:
        os.close(dir_fd)


def prune(directory: Path, *, keep: int = KEEP) -> list[Path]:
    """Delete all but the newest `keep` checkpoints; the deleted paths."""
    if keep < 1:
        raise ValueError(f"keep={keep}: at least the newest checkpoint must stay")
    old = candidates(directory)[keep:]
    for path in old:
        path.unlink(missing_ok=True)
    return old


def candidates(directory: Path) -> list[Path]:
    """Checkpoint files, newest step first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if NAME.match(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def read(path: Path, *, weights_only: bool = True) -> Loaded:
    data = path.read_bytes()
    newline = data.find(b"\n")
    if newline < 0:
        raise CorruptCheckpoint(f"{path.name}: no header")
    try:
        header = json.loads(data[:newline])
    except ValueError as exc:
        raise CorruptCheckpoint(f"{path.name}: unreadable header") from exc
    payload = data[newline + 1 :]
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CorruptCheckpoint(f"{path.name}: not a {FORMAT} file")
    if len(payload) != header.get("size"):
        raise CorruptCheckpoint(f"{path.name}: {len(payload)} of {header.get('size')} bytes")
    if hashlib.sha256(payload).hexdigest() != header.get("sha256"):
        raise CorruptCheckpoint(f"{path.name}: checksum mismatch")
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=weights_only)
    return Loaded(path=path, step=int(header["step"]), state=state)


def latest(
    directory: Path, warn: Callable[[str], None], *, weights_only: bool = True
) -> Loaded | None:
    """The newest checkpoint that verifies; each bad one is reported via warn(msg)."""
    for path in candidates(directory):
        try:
            return read(path, weights_only=weights_only)
        except (CorruptCheckpoint, OSError, RuntimeError) as exc:
            warn(f"ignoring checkpoint {exc}")
    return None
