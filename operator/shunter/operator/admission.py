"""Which queued jobs may start now: priority, then FIFO, within the limits.

Pure code: the queue order, and the usage a queued job must fit beside (the walk
over the queue is in `planning`). The rules are those a Kueue or Slurm user expects:

- order: higher `spec.priority` first; equal priorities in submission order
  (creationTimestamp, then the operator's own sequence number, since
  creationTimestamp has one-second resolution, then the name);
- limits: at most `max_running` jobs hold a slot (starting, running or cancelling),
  and their GPUs sum to at most `gpu_budget` (0 = no budget);
- strict FIFO: when the head of the queue does not fit, nothing behind it starts.
  Letting smaller jobs overtake (backfill) would starve large jobs; Kueue's
  StrictFIFO makes the same choice.

A cancelling job keeps its slot until its Pod is gone, so a new Pod never lands on a
GPU the previous trainer may still hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shunter.operator.model import Job, JobStatus

# Sequence numbers stay far below this; unnumbered jobs sort after numbered ones of the
# same second, among themselves by creation revision.
UNNUMBERED = 2**40


@dataclass(frozen=True)
class Limits:
    max_running: int = 1
    gpu_budget: int = 0  # 0: no GPU budget, only the running limit applies


def queue_order(job: Job) -> tuple[int, float, int, str, str]:
    sequence = job.status.sequence
    if sequence is None:
        try:
            sequence = UNNUMBERED + int(job.resource_version)
        except ValueError:
            sequence = UNNUMBERED
    return (
        -job.spec.priority,
        job.created_at.timestamp(),
        sequence,
        job.key.namespace,
        job.key.name,
    )


def waiting(jobs: Iterable[Job]) -> list[Job]:
    """Queued, not cancelled jobs in admission order."""
    return sorted(
        (j for j in jobs if j.queued and not j.spec.cancelled),
        key=queue_order,
    )


def fits_budget(job: Job, limits: Limits) -> bool:
    return not limits.gpu_budget or job.spec.gpus <= limits.gpu_budget


@dataclass(frozen=True)
class Usage:
    """Slots and GPUs held by admitted jobs (starting, running or cancelling)."""

    running: int = 0
    gpus: int = 0

    @classmethod
    def of(cls, active: Iterable[Job]) -> Usage:
        running = gpus = 0
        for job in active:
            running += 1
            gpus += job.spec.gpus
        return cls(running, gpus)

    def admits(self, job: Job, limits: Limits) -> bool:
        if self.running >= limits.max_running:
            return False
        return not limits.gpu_budget or self.gpus + job.spec.gpus <= limits.gpu_budget

    def plus(self, job: Job) -> Usage:
        return Usage(self.running + 1, self.gpus + job.spec.gpus)

    def after(self, job: Job, status: JobStatus) -> Usage:
        """Usage once job moves to status (a finished job frees its slot)."""
        held = job.phase is not None and job.phase.holds_slot
        holds = status.phase is not None and status.phase.holds_slot
        if held and not holds:
            return Usage(self.running - 1, self.gpus - job.spec.gpus)
        return self
