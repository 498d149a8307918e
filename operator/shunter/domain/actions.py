"""What a user may do to a job, and what each action promises (pure).

The one owner of these rules: `POST /cancel|suspend|resume/{job_id}` answers with
these decisions, `JobPublic.actions` (the web UI's buttons) lists exactly the actions
whose decision would send the change, and a property test
(tests/unit/operator/test_action_promises.py) drives random job states through the
operator's reconcile to check that each promise is what then happens.

Bodies are in the acceptance guide's style (`success`, `job_id`, `previous_status`,
`message`); 409 says "the job's state conflicts with the request": nothing was
changed, and the body says why.

| the job | cancel | suspend | resume |
| --- | --- | --- | --- |
| absent | 404 Job not found | 404 | 404 |
| queued | 200 removed from queue and cancelled | 200 suspended at once | 409 not suspended |
| starting, running | 200 cancelled (was running) | 200 stopped gracefully, then suspended | 409 |
| stopping: preempted, or a failure to retry | 200 | 200: it comes back, then is suspended | 409 |
| stopping: deadline exceeded, or a failure with no retry left | 200 | 409: it ends failed | 409 |
| stopping: start timeout | 200 | 409: ask again once it is back in the queue | 409 |
| suspended (or being suspended) | 200 | 409 already suspended | 200 back in its place |
| being cancelled | 409 already being cancelled | 409 being cancelled | 409 |
| completed / failed / cancelled | 409 Job already finished with status: … | same | same |

A stop in progress keeps its cause (shunter.operator.stopping): a suspend that arrives
meanwhile is carried out only if the stop leads back (to the queue, or to a retry),
where the operator then suspends the job. Whether a start-timeout stop is the last one
depends on the operator's `SHUNTER_START_ATTEMPTS`, which the job does not carry: a
suspend during any start-timeout stop is refused rather than promised and then broken.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from shunter.domain.model import Job, Phase, StopCause, TerminationStep


@dataclass(frozen=True)
class Answer:
    """The decision on one request: the HTTP answer and whether to send the change."""

    http_status: int
    success: bool
    previous_status: str | None
    message: str
    send_patch: bool = False


NOT_FOUND = Answer(404, False, None, "Job not found")


def refusal(job: Job | None) -> Answer | None:
    """The answer every change of a job starts with: unknown (404) or finished (409)."""
    if job is None:
        return NOT_FOUND
    phase = job.phase or Phase.QUEUED
    if phase.terminal:
        return Answer(409, False, phase.value, f"Job already finished with status: {phase}")
    return None


def decide_cancel(job: Job | None) -> Answer:
    if (refused := refusal(job)) is not None or job is None:
        return refused or NOT_FOUND
    phase = job.phase or Phase.QUEUED
    if job.spec.cancelled or phase is Phase.CANCELLING:
        return Answer(409, False, Phase.CANCELLING.value, "Job is already being cancelled")
    if phase is Phase.QUEUED:
        return Answer(
            200, True, phase.value, "Job removed from queue and cancelled", send_patch=True
        )
    return Answer(200, True, phase.value, f"Job cancelled (was {phase})", send_patch=True)


def guarded_patch(
    job: Job, spec: Mapping[str, Any], annotations: Mapping[str, str]
) -> list[dict[str, Any]] | None:
    """The cancel's write as a JSON Patch that applies only while what its answer was
    decided on still holds: the same job (uid), the same spec (generation) and the same
    phase. Anything else may have moved since the read, such as the position the
    operator writes on every admission ahead of the job, which a resourceVersion
    precondition would refuse (a retry: a live read and a second write). A job read
    without annotations gets them whole, if it still has none (a test for null: the API
    server's JSON Patch takes a missing member as null, which the tests on the real
    server hold it to). None when the job has no phase yet: then only the
    resourceVersion says that nothing changed."""
    if job.phase is None or not job.generation:
        return None
    ops: list[dict[str, Any]] = [
        {"op": "test", "path": "/metadata/uid", "value": job.uid},
        {"op": "test", "path": "/metadata/generation", "value": job.generation},
        {"op": "test", "path": "/status/phase", "value": job.phase.value},
    ]
    ops += [{"op": "add", "path": f"/spec/{_pointer(k)}", "value": v} for k, v in spec.items()]
    if annotations and not job.annotated:
        ops += [
            {"op": "test", "path": "/metadata/annotations", "value": None},
            {"op": "add", "path": "/metadata/annotations", "value": dict(annotations)},
        ]
    else:
        ops += [{"op": "add", "path": f"/metadata/annotations/{_pointer(k)}", "value": v}
                for k, v in annotations.items()]  # fmt: skip
    return ops


def _pointer(key: str) -> str:
    """A key as one JSON Pointer token (RFC 6901)."""
    return key.replace("~", "~0").replace("/", "~1")


def _not_changeable(job: Job | None) -> Answer | None:
    """What a suspend and a resume answer first: unknown, finished, being cancelled."""
    if (refused := refusal(job)) is not None or job is None:
        return refused or NOT_FOUND
    if job.spec.cancelled or job.phase is Phase.CANCELLING:
        return Answer(409, False, Phase.CANCELLING.value, "Job is being cancelled")
    return None


def stop_refusal(job: Job) -> str | None:
    """Why a stop in progress leaves no room for a suspend or a resume (None: it leads
    back to the queue or to a retry, or there is no stop): the words for the 409."""
    termination = job.status.termination
    if termination is None or termination.step is TerminationStep.DONE:
        return None
    cause = termination.cause
    if cause is StopCause.DEADLINE:
        return "it ran past its maxRuntimeSeconds and ends failed"
    if cause is StopCause.FAILURE and job.status.failures + 1 > job.spec.backoff_limit:
        return "a Pod failed with no retry left and it ends failed"
    if cause is StopCause.START_TIMEOUT:
        return "it did not start in time; ask again once it is back in the queue"
    return None


def decide_suspend(job: Job | None) -> Answer:
    if (refused := _not_changeable(job)) is not None or job is None:
        return refused or NOT_FOUND
    phase = job.phase or Phase.QUEUED
    if phase is Phase.SUSPENDED or job.spec.suspended:
        return Answer(409, False, Phase.SUSPENDED.value, "Job is already suspended")
    if (why := stop_refusal(job)) is not None:
        return Answer(409, False, phase.value, f"Job is stopping: {why}")
    shown = "running" if phase in (Phase.STARTING, Phase.RUNNING) else phase.value
    return Answer(200, True, phase.value, f"Job suspended (was {shown})", send_patch=True)


def decide_resume(job: Job | None) -> Answer:
    if (refused := _not_changeable(job)) is not None or job is None:
        return refused or NOT_FOUND
    phase = job.phase or Phase.QUEUED
    if not job.spec.suspended and phase is not Phase.SUSPENDED:
        return Answer(409, False, phase.value, "Job is not suspended")
    if (why := stop_refusal(job)) is not None:  # suspended by kubectl while stopping
        return Answer(409, False, phase.value, f"Job is stopping: {why}")
    return Answer(
        200, True, phase.value, "Job resumed: back in its place in the queue", send_patch=True
    )


class Action(StrEnum):
    SUSPEND = "suspend"
    RESUME = "resume"
    CANCEL = "cancel"


# In the order the UI shows them.
DECIDE: dict[Action, Callable[[Job | None], Answer]] = {
    Action.SUSPEND: decide_suspend,
    Action.RESUME: decide_resume,
    Action.CANCEL: decide_cancel,
}


def allowed_actions(job: Job) -> list[Action]:
    """The actions a user may take on the job now: those whose route would act."""
    return [action for action, decide in DECIDE.items() if decide(job).send_patch]
