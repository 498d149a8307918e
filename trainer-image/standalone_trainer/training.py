"""The training loop: a small MLP on a synthetic regression task, fully seeded.

Everything random derives from the seed: the data set, the initial weights, and each
step's batch (drawn from a generator seeded with (seed, step)), so a run resumed from
a checkpoint follows exactly the loss trajectory of an uninterrupted one.

Under torchrun every rank draws the same global batch and trains on its own contiguous
shard of it (batch_size / world_size samples); DistributedDataParallel averages the
gradients, so a step is the step of the whole batch, and the logged loss is the mean
over the ranks. Reproducible bit for bit for a given world size.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from shunter_trainer.distributed import Solo

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
    def __init__(self, config: Config, device: torch.device, group: Solo | None = None) -> None:
        self.config = config
        self.device = device
        self.group = group or Solo()
        if config.batch_size % self.group.world_size:
            raise ValueError(
                f"--batch-size {config.batch_size} does not split evenly over "
                f"{self.group.world_size} processes"
            )
        self.x, self.y = (t.to(device) for t in dataset(config.seed))
        self.net = build_model(config).to(device)
        self.model = self.group.wrap(self.net)  # the DDP wrapper under torchrun
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=config.lr, momentum=0.9)
        self.step = 0
        self.loss = float("nan")

    def state(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "loss": self.loss,
            "model": self.net.state_dict(),  # unwrapped: the same keys for any world size
            "optimizer": self.optimizer.state_dict(),
            "config": {
                "seed": self.config.seed,
                "lr": self.config.lr,
                "hidden": self.config.hidden,
                "batch_size": self.config.batch_size,
                "world_size": self.group.world_size,
            },
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.loss = float(state["loss"])

    def train_step(self) -> float:
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + self.step)
        index = torch.randint(0, SAMPLES, (self.config.batch_size,), generator=gen)
        share = self.config.batch_size // self.group.world_size
        index = index[self.group.rank * share : (self.group.rank + 1) * share].to(self.device)
        self.optimizer.zero_grad(set_to_none=True)
        loss = nn.functional.mse_loss(self.model(self.x[index]), self.y[index])
        loss.backward()  # under DDP this also averages the gradients over the ranks
        self.optimizer.step()
        if self.config.step_delay:
            time.sleep(self.config.step_delay)
        self.step += 1
        self.loss = self.group.mean(loss)
        return self.loss

    def digest(self) -> str:
        """SHA-256 of the weights: equal on every rank, and between equal runs."""
        sha = hashlib.sha256()
        for name, tensor in sorted(self.net.state_dict().items()):
            sha.update(name.encode())
            sha.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        return sha.hexdigest()

    def run(
        self,
        *,
        should_stop: Callable[[], bool],
        on_step: Callable[[int, float], None],
        on_checkpoint: Callable[[], object],
    ) -> bool:
        """Train until done (True) or asked to stop between steps (False).

        should_stop is called before every step on every rank (it is a collective
        under torchrun), so all ranks stop before the same step.
        """
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
        del self.model, self.net, self.optimizer, self.x, self.y
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
