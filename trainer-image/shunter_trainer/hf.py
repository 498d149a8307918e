"""Shunter's contract for the Hugging Face Transformers `Trainer`.

    shunter = ShunterCallback()
    trainer = Trainer(model=..., args=TrainingArguments(output_dir=ckpt, max_steps=...,
                      save_steps=500), train_dataset=..., callbacks=[shunter])
    trainer.train(resume_from_checkpoint=last_checkpoint(ckpt))
    shunter.exit_if_stopped()      # exit 75 after a stop's checkpoint

The Trainer keeps writing its own checkpoints (`checkpoint-N` directories: weights,
optimizer, scheduler, RNG and trainer state). The callback:
- after each step, reports progress and decides with every rank whether to stop (a
  SIGTERM, or a notice in a report's answer); on a stop it asks the Trainer to save
  and to end training at this step;
- after each save, writes a manifest (`shunter-manifest.json`: every file's size and
  SHA-256, written atomically) into the checkpoint directory and reports the
  checkpoint (its size, and the seconds from the step's end to the manifest);
- `last_checkpoint(output_dir)` is the newest `checkpoint-N` whose manifest verifies: a
  directory the Trainer did not finish writing (the process killed mid-save) has no
  valid manifest and is skipped, where the Trainer's own `get_last_checkpoint` would
  resume from it.
Old checkpoints are removed by the Trainer itself (`save_total_limit`).

Exiting is left to `exit_if_stopped()` right after `train()`, not done inside a hook:
the Trainer finishes its own bookkeeping first, and the code after `train()` (saving
a "final" model, say) must not run after a stop, hence right after.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from shunter_trainer import distributed
from shunter_trainer.checkpoint import Written, write_atomically
from shunter_trainer.events import Log
from shunter_trainer.run import Run
from shunter_trainer.signals import StopRequest

MANIFEST = "shunter-manifest.json"
PREFIX = "checkpoint-"


class ShunterCallback(TrainerCallback):  # type: ignore[misc]
    def __init__(self, *, log: Callable[..., None] | None = None) -> None:
        self.log = log or Log()
        # Installed now: a SIGTERM while the model loads still becomes a clean stop.
        self.stop = StopRequest.installed(log=self.log)
        self.run: Run | None = None
        self.stopped = False
        self._loss: float | None = None
        self._save_started = 0.0

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        # The process group (if any) exists by now: the Trainer set it up.
        self.run = Run(
            total_steps=state.max_steps,
            checkpoint_dir=args.output_dir,
            group=distributed.attach(),
            log=self.log,
            stop=self.stop,
        )
        if state.global_step > 0:
            self.run.step = state.global_step
            self.log("resumed", step=state.global_step, checkpoint=f"{PREFIX}{state.global_step}")

    def on_log(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kw: Any
    ) -> None:
        loss = (kw.get("logs") or {}).get("loss")
        if isinstance(loss, int | float):
            self._loss = float(loss)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        assert self.run is not None
        self.run.progress(state.global_step, loss=self._loss)
        if self.run.should_stop():
            self.stopped = True
            control.should_save = True
            control.should_training_stop = True
        if control.should_save:
            self._save_started = time.monotonic()

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **_: Any
    ) -> None:
        assert self.run is not None
        self.run.group.barrier()  # every rank has written its part
        if not self.run.writer:
            return
        directory = Path(args.output_dir) / f"{PREFIX}{state.global_step}"
        size = write_manifest(directory, step=state.global_step)
        self.run.record(
            Written(
                path=directory,
                step=state.global_step,
                size_bytes=size,
                write_seconds=round(time.monotonic() - self._save_started, 3),
                time=time.time(),
            )
        )

    def exit_if_stopped(self) -> None:
        """After `train()`: exit 75 when it ended on a stop; otherwise flush the reports."""
        if self.run is not None:
            self.run.conclude(stopped=self.stopped)


def _files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.rglob("*") if p.is_file() and p.name != MANIFEST)


def _sha256(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def write_manifest(directory: Path, *, step: int) -> int:
    """Record every file's size and hash; the checkpoint's total size in bytes."""
    files = {
        str(p.relative_to(directory)): {"size": p.stat().st_size, "sha256": _sha256(p)}
        for p in _files(directory)
    }
    manifest = json.dumps({"step": step, "files": files}).encode()
    write_atomically(directory / MANIFEST, (manifest,))
    return sum(f["size"] for f in files.values()) + len(manifest)  # type: ignore[misc]


def verify(directory: Path) -> str | None:
    """Why the checkpoint directory is not complete, or None when it is."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError):
        return f"{directory.name}: no readable {MANIFEST}"
    for name, expected in manifest.get("files", {}).items():
        path = directory / name
        if not path.is_file() or path.stat().st_size != expected["size"]:
            return f"{directory.name}: {name} is missing or has the wrong size"
        if _sha256(path) != expected["sha256"]:
            return f"{directory.name}: {name} checksum mismatch"
    return None


def last_checkpoint(
    output_dir: str | Path, *, log: Callable[..., None] | None = None
) -> str | None:
    """The newest `checkpoint-N` directory that verifies (for `resume_from_checkpoint`)."""
    root = Path(output_dir)
    if not root.is_dir():
        return None
    found = [p for p in root.iterdir() if p.is_dir() and _step_of(p.name) is not None]
    for directory in sorted(found, key=lambda p: _step_of(p.name) or 0, reverse=True):
        problem = verify(directory)
        if problem is None:
            return str(directory)
        (log or Log())("warning", message=f"ignoring checkpoint {problem}")
    return None


def _step_of(name: str) -> int | None:
    digits = name.removeprefix(PREFIX)
    return int(digits) if name.startswith(PREFIX) and digits.isdigit() else None
