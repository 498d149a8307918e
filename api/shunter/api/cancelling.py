"""What `POST /cancel/{job_id}` answers, decided from the live job (pure).

| the job | HTTP | success | previous_status | message |
| --- | --- | --- | --- | --- |
| absent | 404 | false | (none) | Job not found |
| queued | 200 | true | queued | Job removed from queue and cancelled |
| starting / running | 200 | true | its phase | Job cancelled (was running) |
| cancel already requested | 409 | false | cancelling | Job is already being cancelled |
| completed / failed / cancelled | 409 | false | its phase | Job already finished with status: … |

409 says "the job's state conflicts with the request": nothing was changed, and the
body says why. The messages are the acceptance guide's.
"""

from __future__ import annotations

from dataclasses import dataclass

from shunter.domain.model import Job, Phase


@dataclass(frozen=True)
class CancelOutcome:
    http_status: int
    success: bool
    previous_status: str | None
    message: str
    send_patch: bool = False


def refusal(job: Job | None) -> CancelOutcome | None:
    """The answer every change of a job starts with: unknown (404) or finished (409)."""
    if job is None:
        return CancelOutcome(404, False, None, "Job not found")
    phase = job.phase or Phase.QUEUED
    if phase.terminal:
        return CancelOutcome(409, False, phase.value, f"Job already finished with status: {phase}")
    return None


def decide_cancel(job: Job | None) -> CancelOutcome:
    refused = refusal(job)
    if refused is not None or job is None:
        return refused or CancelOutcome(404, False, None, "Job not found")
    phase = job.phase or Phase.QUEUED
    if job.spec.cancelled or phase is Phase.CANCELLING:
        return CancelOutcome(409, False, Phase.CANCELLING.value, "Job is already being cancelled")
    if phase is Phase.QUEUED:
        return CancelOutcome(
            200, True, phase.value, "Job removed from queue and cancelled", send_patch=True
        )
    return CancelOutcome(200, True, phase.value, f"Job cancelled (was {phase})", send_patch=True)
