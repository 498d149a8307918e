"""What each action promises is what the operator then does (property-based, pure).

For random job states (any phase, a stop in progress for any cause, retries used or
left, cancel and suspend already requested or not), each of cancel, suspend and resume
is decided by shunter.domain.actions (what the API answers and the UI offers). When
the decision sends the change, the change is applied to the spec and the job is driven
through the operator's own reconcile (shunter.operator.lifecycle) in a small world:
Pods that are created run, Pods that are deleted go, time moves on, and a queued job
is admitted once its backoff is over. Then:
- cancel ends `cancelled`; suspend ends `suspended`; resume goes back to the queue
  and runs again (this world admits it);
- a suspend refused because the stop "ends failed" does end `failed`;
- a job refused as finished is finished, and stays as it was.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from shunter.domain.actions import DECIDE, Action, Answer, allowed_actions
from shunter.domain.model import POD_INDEX_LABEL, Job, Phase, PodView, StopCause, format_time
from shunter.operator.lifecycle import Context, reconcile_job
from shunter.operator.rules import Rules
from tests.support.builders import a_pod_of, a_training_job

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = Rules()
STEP = timedelta(minutes=11)  # past any grace period, margin and backoff
STEPS = 40


class World:
    """One job, its Pods and the clock, moved on by the operator's reconcile."""

    def __init__(self, job: Job, pods: dict[int, PodView]) -> None:
        self.job, self.pods, self.now = job, pods, NOW
        self.phases: list[Phase | None] = [job.phase]

    def run(self) -> World:
        for _ in range(STEPS):
            job = self.job
            due = job.status.not_before is None or job.status.not_before <= self.now
            admit = tuple(f"node-{i}" for i in range(job.spec.nodes))
            ctx = Context(now=self.now, rules=RULES, pods=dict(self.pods),
                          admit=admit if job.queued and due else None)  # fmt: skip
            decision = reconcile_job(job, ctx)
            self.job = replace(job, status=decision.status)
            gone = {d.name for d in decision.delete_pods}
            self.pods = {i: p for i, p in self.pods.items() if p.name not in gone}
            for manifest in decision.create_pods:
                meta = manifest["metadata"]
                index = int(meta["labels"][POD_INDEX_LABEL])
                pod = a_pod_of(self.job, index=index, started_at=self.now, ready=True)
                self.pods[index] = replace(pod, name=meta["name"])
            self.phases.append(self.job.phase)
            self.now += STEP
        return self

    @property
    def phase(self) -> Phase | None:
        return self.job.phase


LIVE = ("starting", "running", "stopping", "cancelling")


@st.composite
def job_states(draw: st.DrawFn) -> tuple[Job, dict[int, PodView]]:
    phase = draw(st.sampled_from([None, *(p.value for p in Phase)]))
    cancelled = draw(st.booleans()) or phase in ("cancelling", "cancelled")
    suspended = draw(st.booleans())
    backoff, failures = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    builder = a_training_job("j").with_spec(backoffLimit=backoff, suspended=suspended)
    if cancelled:
        builder = builder.cancelled()
    status: dict[str, object] = {"failures": failures, "sequence": 1}
    if phase in ("stopping", "cancelling"):
        # A cancel's stop is `cancelling`; every other cause's is `stopping`.
        others = [c for c in StopCause if c is not StopCause.CANCEL]
        cause = StopCause.CANCEL if phase == "cancelling" else draw(st.sampled_from(others))
        at = format_time(NOW - timedelta(seconds=5))
        status["termination"] = {"step": "graceful", "cause": cause.value, "requestedAt": at,
                                 "gracefulDeleteAt": at, "pods": ["j-trainer"]}  # fmt: skip
    if phase in LIVE:
        status.update(admittedAt=format_time(NOW), placement=["node-0"])
    job = (builder.in_phase(phase, **status) if phase else builder).job()
    pods = {}
    if phase in LIVE:
        pods[0] = a_pod_of(job, phase="Running", deleting=phase in ("stopping", "cancelling"),
                           started_at=NOW, ready=True)  # fmt: skip
    return job, pods


PATCH = {Action.CANCEL: {"cancelled": True}, Action.SUSPEND: {"suspended": True},
         Action.RESUME: {"suspended": False}}  # fmt: skip


def _patched(job: Job, action: Action) -> Job:
    return replace(job, spec=replace(job.spec, **PATCH[action]))


@settings(max_examples=400, deadline=None)
@given(job_states(), st.sampled_from(list(Action)))
def test_each_action_does_what_it_promised(state: tuple[Job, dict[int, PodView]], action: Action):
    job, pods = state
    answer: Answer = DECIDE[action](job)
    assert (action in allowed_actions(job)) == answer.send_patch
    if answer.send_patch:
        world = World(_patched(job, action), pods).run()
        if action is Action.CANCEL:
            assert world.phase is Phase.CANCELLED, world.phases
        elif action is Action.SUSPEND:
            assert world.phase is Phase.SUSPENDED, world.phases
        else:
            assert world.phase is Phase.RUNNING, world.phases  # back in the queue, admitted
        return
    assert answer.http_status in (404, 409)
    world = World(job, pods).run()
    if answer.message.startswith("Job already finished"):
        assert job.phase is not None
        assert job.phase.terminal
        assert world.job.status == job.status
    elif "ends failed" in answer.message:
        assert world.phase is Phase.FAILED, world.phases
