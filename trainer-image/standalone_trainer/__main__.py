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
The contract's mechanics are `shunter_trainer`'s `Run` (signals, checkpoints, the
agreement between ranks, reports to Shunter when the operator asks for them).
The image's entry point is `standalone_trainer.launch`, which starts torchrun when the
Pod's NNODES x NPROC_PER_NODE is more than one process.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

from shunter_trainer import distributed
from shunter_trainer.checkpoint import KEEP
from shunter_trainer.events import Log
from shunter_trainer.run import Run
from shunter_trainer.signals import StopRequest
from standalone_trainer import EXIT_CHECKPOINTED, EXIT_COMPLETED, status
from standalone_trainer.training import Config, Trainer


def parse(argv: list[str] | None) -> tuple[Config, Path, Path | None, int]:
    parser = argparse.ArgumentParser(prog="standalone_trainer", description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=int(os.environ.get("SHUNTER_SEED", "0")))
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--keep-checkpoints", type=int, default=KEEP)
    parser.add_argument("--step-delay", type=float, default=0.0)
    parser.add_argument(
        "--checkpoint-dir",
        type=Path,
        default=Path(os.environ.get("SHUNTER_CHECKPOINT_DIR", "/checkpoints")),
    )
    parser.add_argument("--termination-log", type=Path, default=Path("/dev/termination-log"))
    args = parser.parse_args(argv)
    if min(args.steps, args.batch_size, args.checkpoint_every, args.keep_checkpoints) < 1:
        parser.error(
            "--steps, --batch-size, --checkpoint-every and --keep-checkpoints must be positive"
        )
    config = Config(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        hidden=args.hidden,
        checkpoint_every=args.checkpoint_every,
        step_delay=args.step_delay,
    )
    return config, args.checkpoint_dir, args.termination_log, args.keep_checkpoints


def main(argv: list[str] | None = None) -> int:
    topology = distributed.from_environment(os.environ)
    rank_fields = {"rank": topology.rank, "world_size": topology.world_size} if topology else {}
    log = Log(**rank_fields)
    local_rank = topology.local_rank if topology else 0
    status_dir = status.from_environment(os.environ)
    stop = StopRequest(
        log=log, on_exit=lambda code: status.write(status_dir, local_rank, exit_code=code)
    )
    config, directory, termination_log, keep = parse(argv)
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
    run = Run(
        total_steps=config.steps,
        checkpoint_dir=directory,
        keep=keep,
        group=group,
        log=log,
        stop=stop,
        termination_log=termination_log,
    )
    found = run.resume()
    if found is not None:
        trainer.restore(found.state)

    def on_step(step: int, loss: float) -> None:
        run.progress(step, loss=loss)
        if run.writer:
            log("step", step=step, total=config.steps, loss=loss)

    done = trainer.run(
        should_stop=run.should_stop,
        on_step=on_step,
        on_checkpoint=lambda: run.save(trainer.step, trainer.state),
    )
    run.save(trainer.step, trainer.state)  # every rank waits until it is durable
    code = EXIT_COMPLETED if done else EXIT_CHECKPOINTED
    run.step, run.loss = trainer.step, trainer.loss
    world = group.world_size
    run.finish(
        code,
        extra={"params_sha256": trainer.digest()},  # equal on every rank
        summary={"world_size": world} if world > 1 else None,
    )
    run.close()
    status.write(status_dir, local_rank, pid=os.getpid(), rank=group.rank, exit_code=code)
    group.close()
    trainer.release()
    return code


if __name__ == "__main__":
    sys.exit(main())
