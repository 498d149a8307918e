"""shunter_trainer: Shunter's stop-and-resume contract for any PyTorch training loop.

What a loop gets (see trainer-image/README.md, "Adopting the contract"):

- the first SIGTERM (or SIGINT) asks for a stop after the current step; a second one
  exits 143 at once (`signals`);
- atomic, verified checkpoints (temp file, fsync, rename, a header with the size and
  SHA-256), resume from the newest one that verifies, the last N kept (`checkpoint`);
- under torchrun, one agreed decision per step and rank 0 writing what every rank
  agreed on (`distributed`);
- progress and checkpoint reports to Shunter, whose answer may carry a preemption
  notice (`report`), off unless the operator set SHUNTER_REPORT_URL;
- exit 75 after the stop's checkpoint, which tells the operator the job can resume.

`Run` (in `run`) ties them together for a plain loop; `hf` and `pl` map the same
behaviour onto Hugging Face Transformers' Trainer and PyTorch Lightning. Nothing here
talks to Kubernetes or imports Shunter's server code: the contract is the Pod (its
signals, its environment, the checkpoint volume) and one HTTP endpoint.

This module itself imports no torch (the image's launcher imports `events` and must
stay torch-free), so `Run` and `Checkpoint` are imported on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

EXIT_COMPLETED = 0
# EX_TEMPFAIL: stopped on request with a checkpoint; resubmitting continues the run.
EXIT_CHECKPOINTED = 75
# A second signal: stop now, without a checkpoint (the usual 128 + SIGTERM).
EXIT_INTERRUPTED = 143

if TYPE_CHECKING:
    from shunter_trainer.checkpoint import Loaded as Checkpoint
    from shunter_trainer.run import Run

__all__ = ["EXIT_CHECKPOINTED", "EXIT_COMPLETED", "EXIT_INTERRUPTED", "Checkpoint", "Run"]


def __getattr__(name: str) -> Any:
    if name == "Run":
        from shunter_trainer.run import Run

        return Run
    if name == "Checkpoint":
        from shunter_trainer.checkpoint import Loaded

        return Loaded
    raise AttributeError(f"module 'shunter_trainer' has no attribute {name!r}")
