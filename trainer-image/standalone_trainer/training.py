"""The training loop: a small MLP on a synthetic regression task, fully seeded.

Everything random derives from the seed: the data set, the initial weights, and each
step's batch (drawn from a generator seeded with (seed, step)), so a run resumed from
a checkpoint follows exactly the loss trajectory of an uninterrupted one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

FEATURES = 16
SAMPLES = 2048


@dataclass
class Config:
    steps: int
    batch_size: int = 64
    lr: float = 0.05
    seed: int = 0
    hidden: int = 64
    checkpoint_every: int = 50
    step_delay: float = 0.0  # seconds of extra work per step (to stand in for a big model)


def pick_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def dataset(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs and targets of a fixed non-linear teacher function."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(SAMPLES, FEATURES, generator=gen)
    teacher = torch.randn(FEATURES, 1, generator=gen)
    y = torch.tanh(x @ teacher) + 0.1 * torch.sin(3 * x[:, :1])
    return x, y


def build_model(config: Config) -> nn.Module:
    torch.manual_seed(config.seed)
    return nn.Sequential(
        nn.Linear(FEATURES, config.hidden),
        nn.ReLU(),
        nn.Linear(config.hidden, config.hidden),
        nn.ReLU(),
        nn.Linear(config.hidden, 1),
    )


class Trainer:
    def __init__(self, config: Config, device: torch.device) -> None:
        self.config = config
        self.device = device
        self.x, self.y = (t.to(device) for t in dataset(config.seed))
        self.model = build_model(config).to(device)
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=0.9)
        self.step = 0
        self.loss = float("nan")

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "loss": self.loss,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "config": {
                "seed": self.config.seed,
                "lr": self.config.lr,
                "hidden": self.config.hidden,
                "batch_size": self.config.batch_size,
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.loss = float(state["loss"])

    def train_step(self) -> float:
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step)
        index = torch.randint(0, SAMPLES, (self.config.batch_size,), generator=gen)
        index = index.to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(self.model(self.x[index]), self.y[index])
        loss.backward()
        self.optimizer.step()
        if self.config.step_delay:
            time.sleep(self.config.step_delay)
        self.step += 1
        self.loss = float(loss.detach().cpu())
        return self.loss

    def run(
        self,
        *,
        should_stop: Callable[[], bool],
        on_step: Callable[[int, float], None],
        on_checkpoint: Callable[[], None],
    ) -> bool:
        """Train until done (True) or asked to stop between steps (False)."""
        while self.step < self.config.steps:
            if should_stop():
                return False
            loss = self.train_step()
            on_step(self.step, loss)
            if self.step % self.config.checkpoint_every == 0 and self.step < self.config.steps:
                on_checkpoint()
        return True

    def release(self) -> None:
        """Free GPU memory before the process exits."""
        del self.model, self.optimizer, self.x, self.y
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
