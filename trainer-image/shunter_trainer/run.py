"""`Run`: the contract for a plain PyTorch loop, in a few lines.

    run = Run(total_steps=10_000)              # signals, reports, the checkpoint directory
    start = 0
    if (ckpt := run.resume()) is not None:     # the newest checkpoint that verifies
        model.load_state_dict(ckpt.state["model"]); start = ckpt.step
    for step in range(start + 1, 10_001):
        loss = train_one_step(...)
        run.end_step(step, loss=float(loss), every=500, state=lambda: {...})

`end_step` reports progress, decides (with every rank) whether to stop, writes a
checkpoint every `every` steps, at the last step and when stopping, and after a
stop's checkpoint exits 75. The pieces (`should_stop`, `progress`, `save`, `exit`) are
public for loops with their own order (`standalone_trainer` is one).

Decisions:
- `should_stop()` is a collective under torchrun (one tiny all_reduce): call it once
  per step on every rank, so all ranks stop after the same step, whichever rank got
  the signal or the notice (only rank 0 reports, so only rank 0 gets notices).
- `save()` is called on every rank; rank 0 serializes and writes, then all ranks pass
  a barrier, and only then is the checkpoint reported: it counts once every rank has
  agreed on it. State is taken from rank 0 (data parallel: the ranks are replicas);
  `state` may be a callable, evaluated on rank 0 only.
- Reports to Shunter are flushed (bounded: report.FLUSH_SECONDS) at exit, so the stop's
  checkpoint report reaches the operator before the process ends.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, NoReturn

from shunter_trainer import EXIT_CHECKPOINTED, EXIT_COMPLETED, checkpoint, distributed, report
from shunter_trainer.checkpoint import KEEP, Loaded, Written
from shunter_trainer.events import Log
from shunter_trainer.signals import StopRequest

State = dict[str, Any] | Callable[[], dict[str, Any]]
DEFAULT_TERMINATION_LOG = Path("/dev/termination-log")


class Run:
    def __init__(
        self,
        *,
        total_steps: int | None = None,
        checkpoint_dir: Path | str | None = None,
        keep: int = KEEP,
        group: distributed.Solo | None = None,
        log: Callable[..., None] | None = None,
        stop: StopRequest | None = None,
        termination_log: Path | None = DEFAULT_TERMINATION_LOG,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.group = group if group is not None else distributed.attach()
        fixed = {"rank": self.group.rank, "world_size": self.group.world_size}
        self.log = log or Log(**(fixed if self.group.world_size > 1 else {}))
        self.stop = stop or StopRequest.installed(log=self.log)
        self.directory = checkpoint_directory(checkpoint_dir, env)
        self.total_steps = total_steps
        self.keep = keep
        self.termination_log = termination_log
        self.step = 0
        self.loss: float | None = None
        self.reporter = (
            report.from_environment(env, rank=0, log=self.log, on_notice=self._notice)
            if self.writer
            else None
        )
        atexit.register(self.close)

    @property
    def writer(self) -> bool:
        """The one rank that reads, writes and reports checkpoints."""
        return self.group.rank == 0

    def resume(self, *, weights_only: bool = True) -> Loaded | None:
        """Rank 0 finds the newest checkpoint that verifies; every rank gets it."""
        found = None
        if self.writer:
            warn = lambda msg: self.log("warning", message=msg)  # noqa: E731
            found = checkpoint.latest(self.directory, warn, weights_only=weights_only)
        box = {"path": str(found.path), "step": found.step, "state": found.state} if found else None
        shared = self.group.share(box)
        if shared is None:
            return None
        loaded = Loaded(path=Path(shared["path"]), step=shared["step"], state=shared["state"])
        self.step = loaded.step
        if self.reporter is not None:
            self.reporter.resumed_from_step = loaded.step
        self.log("resumed", step=loaded.step, checkpoint=loaded.path.name)
        return loaded

    def should_stop(self) -> bool:
        """Whether any rank was asked to stop (a collective: once per step, every rank)."""
        return self.group.agree(self.stop())

    def progress(self, step: int, *, loss: float | None = None) -> None:
        """Step `step` is done; reported to Shunter (rate-limited, in the background)."""
        self.step, self.loss = step, loss
        if self.reporter is not None:
            self.reporter.progress(step, total_steps=self.total_steps, loss=loss)

    def save(self, step: int, state: State) -> Written | None:
        """The checkpoint of `step`: written by rank 0, durable on return on every rank."""
        written = None
        if self.writer:
            payload = state() if callable(state) else state
            written = checkpoint.save(self.directory, step, payload, keep=self.keep)
        self.group.barrier()  # it counts once every rank has agreed on it
        if written is not None:
            self.record(written)
        return written

    def record(self, written: Written) -> None:
        """A durable, agreed checkpoint (rank 0): logged, and reported to Shunter."""
        self.log(
            "checkpoint",
            step=written.step,
            path=written.path.name,
            size_bytes=written.size_bytes,
            write_seconds=written.write_seconds,
        )
        if self.reporter is not None:
            done = report.CheckpointReport(
                step=written.step,
                time=written.time,
                size_bytes=written.size_bytes,
                write_seconds=written.write_seconds,
            )
            self.reporter.checkpoint(done, total_steps=self.total_steps, loss=self.loss)

    def end_step(self, step: int, *, state: State, every: int, loss: float | None = None) -> None:
        """After each step, on every rank: report, checkpoint when due, exit 75 on a stop."""
        if every < 1:
            raise ValueError(f"every={every}: checkpoint at least every step count >= 1")
        self.progress(step, loss=loss)
        stopping = self.should_stop()
        last = self.total_steps is not None and step >= self.total_steps
        if stopping or last or step % every == 0:
            self.save(step, state)
        if stopping:
            self.exit(EXIT_CHECKPOINTED)

    def _notice(self, notice: report.Notice) -> None:
        """Shunter asks for a stop (preemption, the end of a time slice): the same stop
        as a SIGTERM's, after the current step, from the reporter's thread."""
        self.stop.request(reason=notice.reason, checkpoint_by=notice.checkpoint_by)

    def close(self) -> None:
        """Send the reports still pending (bounded), then stop reporting."""
        if self.reporter is not None:
            self.reporter.close()
            self.reporter = None

    def finish(
        self,
        code: int,
        *,
        extra: Mapping[str, Any] | None = None,
        summary: Mapping[str, Any] | None = None,
    ) -> None:
        """The run's last log line (`completed` or `stopped`, with `extra`), and the
        Pod's termination message (with `summary`) from local rank 0."""
        self.stop.finishing(code)
        fields: dict[str, Any] = {"step": self.step, "loss": self.loss, "exit_code": code}
        fields.update(extra or {})
        if code == EXIT_COMPLETED:
            self.log("completed", **fields)
        else:
            if self.stop.requested_at is not None:  # a rank may stop because another was asked
                fields["seconds_after_signal"] = round(time.monotonic() - self.stop.requested_at, 3)
            self.log("stopped", **fields)
        if self.group.local_rank == 0:
            write_termination_message(
                self.termination_log,
                status="completed" if code == EXIT_COMPLETED else "checkpointed",
                step=self.step,
                loss=self.loss,
                **(summary or {}),
            )

    def conclude(self, *, stopped: bool) -> None:
        """After a framework's training call: exit 75 when it ended on a stop, else log
        the completion and flush the reports."""
        if stopped:
            self.exit(EXIT_CHECKPOINTED)
        self.finish(EXIT_COMPLETED)
        self.close()

    def exit(self, code: int = EXIT_CHECKPOINTED) -> NoReturn:
        """End the process the way the operator reads it: 75 after a stop's checkpoint
        (resubmit to continue), 0 when done; reports flushed first."""
        self.finish(code)
        self.close()
        sys.exit(code)


def checkpoint_directory(explicit: Path | str | None, env: Mapping[str, str]) -> Path:
    """The given directory, else the operator's mount (SHUNTER_CHECKPOINT_DIR)."""
    return Path(explicit or env.get("SHUNTER_CHECKPOINT_DIR") or "checkpoints")


def write_termination_message(path: Path | None, **fields: Any) -> None:
    """The Pod's termination message (kubectl describe shows it; the operator reads it)."""
    if path is None:
        return
    # Not in a Pod, or not writable: the log line says the same, so that is fine.
    with contextlib.suppress(OSError):
        path.write_text(json.dumps(fields)[:4000])
