"""`python -m standalone_trainer`: the trainer Pod's entry point.

    python -m standalone_trainer --steps 2000 [--batch-size 64] [--lr 0.05] [--seed 0]
        [--checkpoint-dir $SHUNTER_CHECKPOINT_DIR] [--checkpoint-every 50]
        [--termination-log /dev/termination-log] [--step-delay 0]

Signals: the first SIGTERM (or SIGINT) lets the current step finish, saves a
checkpoint and exits 75; a second one exits 143 at once (the operator's force path
covers a trainer that hangs). Logs are JSON lines on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import torch

from standalone_trainer import EXIT_CHECKPOINTED, EXIT_COMPLETED, EXIT_INTERRUPTED, checkpoint
from standalone_trainer.training import Config, Trainer, pick_device


def log(event: str, **fields: Any) -> None:
    print(json.dumps({"event": event, "time": round(time.time(), 3), **fields}), flush=True)


class StopRequest:
    """The first signal asks for a clean stop; the second one exits immediately."""

    def __init__(self) -> None:
        self.requested_at: float | None = None
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.requested_at is not None:
            log("interrupted", signal=signal.Signals(signum).name)
            os._exit(EXIT_INTERRUPTED)
        self.requested_at = time.monotonic()
        log("stop_requested", signal=signal.Signals(signum).name)

    def __call__(self) -> bool:
        return self.requested_at is not None


def parse(argv: list[str] | None) -> tuple[Config, Path, Path | None]:
    parser = argparse.ArgumentParser(prog="standalone_trainer", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SHUNTER_SEED", "0")))
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path(os.environ.get("SHUNTER_CHECKPOINT_DIR", "/checkpoints")),
    )
    parser.add_argument("--termination-log", type=Path, default=Path("/dev/termination-log"))
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 1 or args.checkpoint_every < 1:
        parser.error("--steps, --batch-size and --checkpoint-every must be positive")
    config = Config(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        hidden=args.hidden,
        checkpoint_every=args.checkpoint_every,
        step_delay=args.step_delay,
    )
    return config, args.checkpoint_dir, args.termination_log


def summary(path: Path | None, **fields: Any) -> None:
    """The Pod's termination message (kubectl describe shows it; the operator reads it)."""
    if path is None:
        return
    # Not in a Pod, or not writable: the log line says the same, so that is fine.
    with contextlib.suppress(OSError):
        path.write_text(json.dumps(fields)[:4000])


def main(argv: list[str] | None = None) -> int:
    stop = StopRequest()
    config, directory, termination_log = parse(argv)
    torch.use_deterministic_algorithms(True)
    device = pick_device()
    trainer = Trainer(config, device)
    log(
        "start",
        device=device.type,
        steps=config.steps,
        seed=config.seed,
        checkpoint_dir=str(directory),
    )
    found = checkpoint.latest(directory, warn=lambda msg: log("warning", message=msg))
    if found is not None:
        trainer.restore(found.state)
        log("resumed", step=trainer.step, checkpoint=found.path.name)

    def save() -> None:
        path = checkpoint.save(directory, trainer.step, trainer.state())
        log("checkpoint", step=trainer.step, path=path.name)

    done = trainer.run(
        should_stop=stop,
        on_step=lambda step, loss: log("step", step=step, total=config.steps, loss=loss),
        on_checkpoint=save,
    )
    save()
    trainer.release()
    if done:
        log("completed", step=trainer.step, loss=trainer.loss)
        summary(termination_log, status="completed", step=trainer.step, loss=trainer.loss)
        return EXIT_COMPLETED
    assert stop.requested_at is not None
    took = time.monotonic() - stop.requested_at
    log("stopped", step=trainer.step, loss=trainer.loss, seconds_after_signal=round(took, 3))
    summary(termination_log, status="checkpointed", step=trainer.step, loss=trainer.loss)
    return EXIT_CHECKPOINTED


if __name__ == "__main__":
    sys.exit(main())
