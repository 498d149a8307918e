"""What `POST /suspend/{job_id}` and `POST /resume/{job_id}` answer (pure).

Bodies in the acceptance guide's style (`success`, `job_id`, `previous_status`,
`message`), decided from the job as read:

| the job | suspend | resume |
| --- | --- | --- |
| absent | 404 Job not found | 404 Job not found |
| queued, starting, running, stopping | 200, suspends it | 409 Job is not suspended |
| suspended (or being suspended) | 409 Job is already suspended | 200, back in its place |
| being cancelled | 409 Job is being cancelled | 409 Job is being cancelled |
| completed / failed / cancelled | 409 Job already finished with status: … | same |
"""

from __future__ import annotations

from shunter.api.cancelling import CancelOutcome, refusal
from shunter.domain.model import Job, Phase


def _common(job: Job | None) -> CancelOutcome | None:
    refused = refusal(job)
    if refused is not None or job is None:
        return refused
    phase = job.phase or Phase.QUEUED
    if job.spec.cancelled or phase is Phase.CANCELLING:
        return CancelOutcome(409, False, Phase.CANCELLING.value, "Job is being cancelled")
    return None


def decide_suspend(job: Job | None) -> CancelOutcome:
    refused = _common(job)
    if refused is not None or job is None:
        return refused or CancelOutcome(404, False, None, "Job not found")
    phase = job.phase or Phase.QUEUED
    if phase is Phase.SUSPENDED or job.spec.suspended:
        return CancelOutcome(409, False, Phase.SUSPENDED.value, "Job is already suspended")
    shown = "running" if phase in (Phase.STARTING, Phase.RUNNING) else phase.value
    return CancelOutcome(200, True, phase.value, f"Job suspended (was {shown})", send_patch=True)


def decide_resume(job: Job | None) -> CancelOutcome:
    refused = _common(job)
    if refused is not None or job is None:
        return refused or CancelOutcome(404, False, None, "Job not found")
    phase = job.phase or Phase.QUEUED
    if not job.spec.suspended and phase is not Phase.SUSPENDED:
        return CancelOutcome(409, False, phase.value, "Job is not suspended")
    return CancelOutcome(
        200, True, phase.value, "Job resumed: back in its place in the queue", send_patch=True
    )
