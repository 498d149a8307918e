"""A Hugging Face Transformers `Trainer` with Shunter's contract (the lines marked
`# shunter`): a tiny GPT-2 built from a config in code (nothing is downloaded) on a
synthetic token task, on the CPU. tests/trainer runs it as it is.

    python examples/hf_trainer.py --output-dir DIR --steps 40 [--save-steps 1000] [--step-delay 0]
"""

from __future__ import annotations

import argparse
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainerCallback, TrainingArguments

from shunter_trainer.hf import ShunterCallback, last_checkpoint  # shunter


class Tokens(torch.utils.data.Dataset[dict[str, torch.Tensor]]):
    def __init__(self, size: int = 256) -> None:
        gen = torch.Generator().manual_seed(0)
        self.data = torch.randint(0, 64, (size, 16), generator=gen)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.data[i], "labels": self.data[i]}


class Slow(TrainerCallback):  # stands in for a bigger model's step time
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def on_step_begin(self, *_: object, **__: object) -> None:
        time.sleep(self.seconds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--output-dir", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--save-steps", type=int, default=1000)
    parser.add_argument("--step-delay", type=float, default=0.0)
    args = parser.parse_args()

    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    model = GPT2LMHeadModel(config)
    shunter = ShunterCallback()  # shunter
    training = TrainingArguments(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=8,
        save_steps=args.save_steps,
        save_total_limit=2,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=Tokens(),
        callbacks=[Slow(args.step_delay), shunter],  # shunter
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(args.output_dir))  # shunter
    shunter.exit_if_stopped()  # shunter


if __name__ == "__main__":
    main()
