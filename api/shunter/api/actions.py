"""Which actions a job offers, decided here and only here.

`JobPublic.actions` lists them; the web UI draws one button per entry and posts to
`/api/training/<action>/<job_id>`, and never looks at phases itself, so each rule has
one source (the server), like the queue order. An action is offered exactly when its
route would carry it out (the same decision functions answer both):

- `cancel`: shunter.api.cancelling's table (queued, starting, running, stopping,
  suspended; not already cancelled);
- `suspend`, `resume`: shunter.api.suspending's table.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from shunter.api.cancelling import CancelOutcome, decide_cancel
from shunter.api.suspending import decide_resume, decide_suspend
from shunter.domain.model import Job


class Action(StrEnum):
    SUSPEND = "suspend"
    RESUME = "resume"
    CANCEL = "cancel"


# In the order the UI shows them.
_DECIDE: tuple[tuple[Action, Callable[[Job | None], CancelOutcome]], ...] = (
    (Action.SUSPEND, decide_suspend),
    (Action.RESUME, decide_resume),
    (Action.CANCEL, decide_cancel),
)


def allowed_actions(job: Job) -> list[Action]:
    """The actions a user may take on the job now."""
    return [action for action, decide in _DECIDE if decide(job).send_patch]
