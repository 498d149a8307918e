"""Which actions a job offers, decided here and only here.

`JobPublic.actions` lists them; the web UI draws one button per entry and never
looks at phases itself, so the rule has one source (the server), like the queue order.

- `cancel`: while POST /cancel would start a cancellation (shunter.api.cancelling's
  table: queued, starting or running, and not already cancelled).

The suspend feature adds `suspend` (a job that may be suspended) and `resume` (a
suspended job) to `allowed_actions` below, next to the POST routes that carry them
out; nothing else needs to change for the UI to offer them.
"""

from __future__ import annotations

from enum import StrEnum

from shunter.api.cancelling import decide_cancel
from shunter.operator.model import Job


class Action(StrEnum):
    CANCEL = "cancel"


def allowed_actions(job: Job) -> list[Action]:
    """The actions a user may take on the job now, in the order the UI shows them."""
    actions = []
    if decide_cancel(job).send_patch:
        actions.append(Action.CANCEL)
    return actions
