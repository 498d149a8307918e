"""A PyTorch Lightning fit with Shunter's contract (the lines marked `# shunter`): a
tiny regression model on synthetic data, on the CPU. tests/trainer runs it as it is.

    python examples/lightning_trainer.py --checkpoint-dir DIR --steps 40 [--every 1000]
        [--step-delay 0]
"""

from __future__ import annotations

import argparse
import time

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from shunter_trainer.pl import ShunterCallback  # shunter


class Regression(pl.LightningModule):
    def __init__(self, step_delay: float) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 1))
        self.step_delay = step_delay

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        time.sleep(self.step_delay)
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.05)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint-dir", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--every", type=int, default=1000)
    parser.add_argument("--step-delay", type=float, default=0.0)
    args = parser.parse_args()

    pl.seed_everything(0, verbose=False)
    x = torch.randn(512, 8)
    data = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True).sin()), batch_size=16)
    shunter = ShunterCallback(
        checkpoint_dir=args.checkpoint_dir, every_n_steps=args.every
    )  # shunter
    trainer = pl.Trainer(
        max_steps=args.steps,
        accelerator="cpu",
        devices=1,
        callbacks=[shunter],  # shunter
        plugins=[shunter.checkpoint_io],  # shunter
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
    )
    trainer.fit(Regression(args.step_delay), data, ckpt_path=shunter.resume_path())  # shunter
    shunter.exit_if_stopped()  # shunter


if __name__ == "__main__":
    main()
