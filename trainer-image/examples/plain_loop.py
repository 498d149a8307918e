"""An existing plain PyTorch loop that adopted Shunter's contract: the lines marked
`# shunter` are all it took (trainer-image/README.md shows the diff).

    python examples/plain_loop.py --steps 1000 [--every 100] [--keep 2] [--step-delay 0]

SIGTERM (or a preemption notice from Shunter) stops it after the current step with a
checkpoint and exit code 75; started again, it continues from the newest checkpoint
that verifies, on exactly the trajectory of an uninterrupted run (the model,
optimizer, scheduler and every random generator are in the checkpoint). tests/trainer
runs it as it is.
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn

from shunter_trainer import Run, rng  # shunter


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--every", type=int, default=100)
    parser.add_argument("--keep", type=int, default=2)
    parser.add_argument("--step-delay", type=float, default=0.0)
    args = parser.parse_args()

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=50, gamma=0.5)

    def state() -> dict[str, object]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng.capture(),
        }

    run = Run(total_steps=args.steps, keep=args.keep)  # shunter
    start = 0
    if (ckpt := run.resume()) is not None:  # shunter
        model.load_state_dict(ckpt.state["model"])
        optimizer.load_state_dict(ckpt.state["optimizer"])
        scheduler.load_state_dict(ckpt.state["scheduler"])
        rng.restore(ckpt.state["rng"])
        start = ckpt.step

    for step in range(start + 1, args.steps + 1):
        x = torch.randn(32, 8)
        loss = nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True).sin())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        scheduler.step()
        time.sleep(args.step_delay)
        print(json.dumps({"event": "train", "step": step, "loss": loss.item()}), flush=True)
        run.end_step(step, loss=loss.item(), every=args.every, state=state)  # shunter


if __name__ == "__main__":
    main()
