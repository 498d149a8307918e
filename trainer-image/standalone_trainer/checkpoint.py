"""Atomic, verified checkpoints.

A checkpoint file is one JSON header line ({"format", "step", "sha256", "size"})
followed by the torch-serialized payload. It is written to a temporary file in the
same directory, fsynced, then renamed over the final name, so a reader sees either the
previous file or the whole new one. On load the size and hash are checked: a torn,
truncated or scribbled file is reported and skipped, never trusted and never fatal.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import tempfile
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


def path_for(directory: Path, step: int) -> Path:
    return directory / f"ckpt-{step:09d}.pt"


def save(directory: Path, step: int, state: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = {
        "format": FORMAT,
        "step": step,
        "size": len(payload),
        "sha256": hashlib.sha256(payload).hexdigest(),
    }
    final = path_for(directory, step)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ckpt-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(json.dumps(header).encode() + b"\n")
            out.write(payload)
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
    _prune(directory)
    return final


def _prune(directory: Path) -> None:
    for old in candidates(directory)[KEEP:]:
        old.unlink(missing_ok=True)


def candidates(directory: Path) -> list[Path]:
    """Checkpoint files, newest step first."""
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if NAME.match(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def read(path: Path) -> Loaded:
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
    state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    return Loaded(path=path, step=int(header["step"]), state=state)


def latest(directory: Path, warn: Any) -> Loaded | None:
    """The newest checkpoint that verifies; each bad one is reported via warn(msg)."""
    for path in candidates(directory):
        try:
            return read(path)
        except (CorruptCheckpoint, OSError, RuntimeError) as exc:
            warn(f"ignoring checkpoint {exc}")
    return None
