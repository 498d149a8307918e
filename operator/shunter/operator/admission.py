"""Which queued jobs may start now: priority, then FIFO, within the limits.

Pure code: given every job, it returns the jobs to admit and the queue positions of
the rest. The rules are those a Kueue or Slurm user expects:

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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from shunter.operator.model import Job, JobKey


@dataclass(frozen=True)
class Limits:
    max_running: int = 1
    gpu_budget: int = 0  # 0: no GPU budget, only the running limit applies


@dataclass(frozen=True)
class AdmissionPlan:
    admit: tuple[JobKey, ...]
    # 1-based place of every job still queued after this round.
    positions: dict[JobKey, int]


def queue_order(job: Job) -> tuple[int, float, int, str, str]:
    sequence = job.status.sequence if job.status.sequence is not None else 2**62
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


def plan_admission(jobs: Sequence[Job], limits: Limits) -> AdmissionPlan:
    active = [j for j in jobs if j.phase is not None and j.phase.holds_slot]
    running = len(active)
    gpus_used = sum(j.spec.gpus for j in active)
    queue = waiting(jobs)
    admitted: list[JobKey] = []
    for job in queue:
        if not fits_budget(job, limits):
            continue  # can never start: it waits (with a message) but blocks no one
        if running >= limits.max_running:
            break
        if limits.gpu_budget and gpus_used + job.spec.gpus > limits.gpu_budget:
            break
        admitted.append(job.key)
        running += 1
        gpus_used += job.spec.gpus
    chosen = set(admitted)
    rest = [job for job in queue if job.key not in chosen]
    return AdmissionPlan(
        admit=tuple(admitted),
        positions={job.key: i for i, job in enumerate(rest, start=1)},
    )
