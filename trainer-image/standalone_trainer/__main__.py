"""`python -m standalone_trainer`: one trainer process (or one torchrun worker).

    python -m standalone_trainer --steps 2000 [--batch-size 64] [--lr 0.05] [--seed 0]
        [--checkpoint-dir $SHUNTER_CHECKPOINT_DIR] [--checkpoint-every 50]
        [--termination-log /dev/termination-log] [--step-delay 0]

Signals: the first SIGTERM (or SIGINT) lets the current step finish, saves a
checkpoint and exits 75; a second one exits 143 at once (the operator's force path
covers a trainer that hangs). Logs are JSON lines on stdout.

Under torchrun (RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set) it trains
data-parallel: all ranks agree before every step whether to stop, only rank 0 reads
and writes checkpoints (the others get its state by broadcast), all ranks wait for
rank 0's final checkpoint on a barrier and then exit 75 together. Rank 0 logs the
`step` and `checkpoint` lines; every line carries `rank` and `world_size`.
The image's entry point is `standalone_trainer.launch`, which starts torchrun when the
Pod's NNODES x NPROC_PER_NODE is more than one process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import torch

from standalone_trainer import (
    EXIT_CHECKPOINTED,
    EXIT_COMPLETED,
    checkpoint,
    distributed,
    status,
)
from standalone_trainer.events import Log
from standalone_trainer.signals import StopRequest
from standalone_trainer.training import Config, Trainer


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
    topology = distributed.from_environment(os.environ)
    rank_fields = {"rank": topology.rank, "world_size": topology.world_size} if topology else {}
    log = Log(**rank_fields)
    local_rank = topology.local_rank if topology else 0
    status_dir = status.from_environment(os.environ)
    stop = StopRequest(
        log=log, on_exit=lambda code: status.write(status_dir, local_rank, exit_code=code)
    )
    config, directory, termination_log = parse(argv)
    torch.use_deterministic_algorithms(True)
    device = distributed.pick_device(topology)
    group = distributed.join(topology, device)
    trainer = Trainer(config, device, group)
    status.write(status_dir, local_rank, pid=os.getpid(), rank=group.rank)
    log(
        "start",
        device=device.type,
        steps=config.steps,
        seed=config.seed,
        checkpoint_dir=str(directory),
        pid=os.getpid(),
        **({"backend": group.backend} if topology else {}),
    )
    writer = group.rank == 0  # the one rank that reads and writes checkpoints
    resume(trainer, directory, log)

    def save() -> None:
        if writer:
            path = checkpoint.save(directory, trainer.step, trainer.state())
            log("checkpoint", step=trainer.step, path=path.name)

    def on_step(step: int, loss: float) -> None:
        if writer:
            log("step", step=step, total=config.steps, loss=loss)

    done = trainer.run(should_stop=lambda: group.agree(stop()), on_step=on_step, on_checkpoint=save)
    save()
    group.barrier()  # every rank waits until rank 0's checkpoint is durable
    code = EXIT_COMPLETED if done else EXIT_CHECKPOINTED
    stop.finishing(code)
    finish(
        trainer, stop, log, code=code, termination_log=termination_log if local_rank == 0 else None
    )
    status.write(status_dir, local_rank, pid=os.getpid(), rank=group.rank, exit_code=code)
    group.close()
    trainer.release()
    return code


def resume(trainer: Trainer, directory: Path, log: Log) -> None:
    """Rank 0 finds the newest checkpoint that verifies; every rank restores it."""
    found = None
    if trainer.group.rank == 0:
        found = checkpoint.latest(directory, warn=lambda msg: log("warning", message=msg))
    state = trainer.group.share(found.state if found else None)
    if state is not None:
        trainer.restore(state)
        name = checkpoint.path_for(directory, trainer.step).name
        log("resumed", step=trainer.step, checkpoint=name)


def finish(
    trainer: Trainer, stop: StopRequest, log: Log, *, code: int, termination_log: Path | None
) -> None:
    """The rank's last log line, and the Pod's termination message (by local rank 0)."""
    fields: dict[str, Any] = {
        "step": trainer.step,
        "loss": trainer.loss,
        "exit_code": code,
        "params_sha256": trainer.digest(),  # equal on every rank
    }
    if code == EXIT_COMPLETED:
        log("completed", **fields)
    else:
        if stop.requested_at is not None:  # a rank may stop because another was asked to
            fields["seconds_after_signal"] = round(time.monotonic() - stop.requested_at, 3)
        log("stopped", **fields)
    world = trainer.group.world_size
    summary(
        termination_log,
        status="completed" if code == EXIT_COMPLETED else "checkpointed",
        step=trainer.step,
        loss=trainer.loss,
        **({"world_size": world} if world > 1 else {}),
    )


if __name__ == "__main__":
    sys.exit(main())
