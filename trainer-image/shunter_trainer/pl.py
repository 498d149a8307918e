"""Shunter's contract for PyTorch Lightning.

    shunter = ShunterCallback(checkpoint_dir=ckpt, every_n_steps=500)
    trainer = L.Trainer(max_steps=..., callbacks=[shunter], plugins=[shunter.checkpoint_io],
                        enable_checkpointing=False)
    trainer.fit(model, data, ckpt_path=shunter.resume_path())
    shunter.exit_if_stopped()      # exit 75 after a stop's checkpoint

- Checkpoints are Lightning's own (`trainer.save_checkpoint`: weights, optimizers,
  schedulers, loops, callbacks), written by `checkpoint_io` in shunter_trainer's format:
  atomic, with the size and SHA-256 in a header, named `ckpt-<step>.pt`, the newest
  `keep` kept. `resume_path()` is the newest that verifies.
- After each training batch the callback reports progress, decides with every rank
  whether to stop, saves every `every_n_steps` and on a stop (Lightning's
  `save_checkpoint` runs on every rank, rank 0 writes, a barrier follows), reports the
  checkpoint and ends the fit at this step (`trainer.should_stop`).
- Lightning installs its own SIGTERM handler at the start of a fit, which would end it
  without a checkpoint (and, under torchrun, kill the other ranks); the callback puts
  shunter_trainer's back in `on_train_start`.
- Lightning checkpoints hold objects beyond tensors, so they are loaded with
  `weights_only=False`: only files this plugin wrote (and whose hash verifies) are read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.fabric.plugins import CheckpointIO

from shunter_trainer import checkpoint, distributed
from shunter_trainer.checkpoint import KEEP, Written
from shunter_trainer.events import Log
from shunter_trainer.run import Run, checkpoint_directory
from shunter_trainer.signals import StopRequest


class VerifiedCheckpointIO(CheckpointIO):  # type: ignore[misc]
    """Lightning's checkpoint dict in shunter_trainer's atomic, verified format."""

    def __init__(self) -> None:
        self.last: Written | None = None

    def save_checkpoint(
        self, checkpoint_dict: dict[str, Any], path: Any, storage_options: Any = None
    ) -> None:
        step = int(checkpoint_dict.get("global_step", 0))
        self.last = checkpoint.write(Path(path), step, checkpoint_dict)

    def load_checkpoint(self, path: Any, map_location: Any = None, **_: Any) -> dict[str, Any]:
        return checkpoint.read(Path(path), weights_only=False).state

    def remove_checkpoint(self, path: Any) -> None:
        Path(path).unlink(missing_ok=True)


class ShunterCallback(pl.Callback):  # type: ignore[misc]
    def __init__(
        self,
        *,
        checkpoint_dir: str | Path | None = None,
        every_n_steps: int | None = None,
        keep: int = KEEP,
        log: Callable[..., None] | None = None,
    ) -> None:
        # Not `self.log`: Lightning sets every callback's `log` to the module's.
        self._log = log or Log()
        self.stop = StopRequest.installed(log=self._log)
        self.checkpoint_io = VerifiedCheckpointIO()
        self.checkpoint_dir = checkpoint_dir
        self.every_n_steps = every_n_steps
        self.keep = keep
        self.run: Run | None = None
        self.stopped = False

    def _run(self) -> Run:
        if self.run is None:  # after the strategy set up the process group
            self.run = Run(
                checkpoint_dir=self.checkpoint_dir,
                keep=self.keep,
                group=distributed.attach(),
                log=self._log,
                stop=self.stop,
            )
        return self.run

    def resume_path(self) -> str | None:
        """The newest checkpoint that verifies, for `fit(ckpt_path=...)`."""
        directory = checkpoint_directory(self.checkpoint_dir, os.environ)
        warn = lambda msg: self._log("warning", message=msg)  # noqa: E731
        found = checkpoint.latest(directory, warn, weights_only=False)
        return str(found.path) if found else None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.stop.reclaim()
        run = self._run()
        run.total_steps = trainer.max_steps if trainer.max_steps > 0 else None
        if trainer.global_step > 0:
            run.step = trainer.global_step
            self._log("resumed", step=trainer.global_step)

    def on_train_batch_end(
        self,
        trainer: pl.Trainer,
        pl_module: pl.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        run = self._run()
        step = trainer.global_step
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        run.progress(step, loss=float(loss) if loss is not None else None)
        stopping = run.should_stop()
        if stopping or (self.every_n_steps and step % self.every_n_steps == 0):
            self._save(trainer, step)
        if stopping:
            self.stopped = True
            trainer.should_stop = True

    def _save(self, trainer: pl.Trainer, step: int) -> None:
        run = self._run()
        trainer.save_checkpoint(checkpoint.path_for(run.directory, step))  # barrier inside
        written = self.checkpoint_io.last
        if run.writer and written is not None:
            checkpoint.prune(run.directory, keep=self.keep)
            run.record(written)

    def exit_if_stopped(self) -> None:
        """After `fit()`: exit 75 when it ended on a stop; otherwise flush the reports."""
        if self.run is not None:
            self.run.conclude(stopped=self.stopped)
