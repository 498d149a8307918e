"""standalone_trainer: a small, real PyTorch training loop that stops cleanly.

It trains a small MLP on a synthetic regression task generated from the seed, logs
one JSON line per step, checkpoints atomically, stops within its grace period on
SIGTERM (after the current step, with a checkpoint, exit code 75), and resumes from
its latest valid checkpoint on start. It never imports Shunter's operator code: the
only contract with the operator is the Pod (args, env, the checkpoint volume, the
grace period and the termination message file).
"""

EXIT_COMPLETED = 0
# EX_TEMPFAIL: stopped on request with a checkpoint; resubmitting continues the run.
EXIT_CHECKPOINTED = 75
# A second signal: stop now, without a checkpoint (the usual 128 + SIGTERM).
EXIT_INTERRUPTED = 143
# The Pod's environment or the arguments make no sense (argparse's code as well).
EXIT_USAGE = 2
