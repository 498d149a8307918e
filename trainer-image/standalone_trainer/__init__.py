"""standalone_trainer: a small, real PyTorch training loop that stops cleanly.

It trains a small MLP on a synthetic regression task generated from the seed, logs
one JSON line per step, checkpoints atomically, stops within its grace period on
SIGTERM (after the current step, with a checkpoint, exit code 75), and resumes from
its latest valid checkpoint on start. The contract's mechanics (signals, checkpoints,
agreement between ranks, reports to Shunter) come from `shunter_trainer`, of which it
is the first user. It never imports Shunter's operator code: the only contract with
the operator is the Pod (args, env, the checkpoint volume, the grace period and the
termination message file).
"""

from shunter_trainer import EXIT_CHECKPOINTED, EXIT_COMPLETED, EXIT_INTERRUPTED

__all__ = ["EXIT_CHECKPOINTED", "EXIT_COMPLETED", "EXIT_INTERRUPTED", "EXIT_USAGE"]

# The Pod's environment or the arguments make no sense (argparse's code as well).
EXIT_USAGE = 2
