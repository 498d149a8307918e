"""Stopping a job's Pods: SIGTERM with a grace period, then force. One path for all.

Cancel, deadline, start timeout, suspend, preemption and a failed gang member all
stop Pods the same way; only the phase the job ends in differs (the `cause`). The
steps, each recorded in `status.termination` before its API calls so that an
operator restart resumes where it stopped:

1. `graceful`: phase `cancelling` (a cancel) or `stopping`; every Pod is deleted with
   the job's grace period (the kubelet sends SIGTERM and the trainer checkpoints).
2. `forced`: Pods still there `grace + margin` seconds later (a trainer or a node
   hangs) are deleted with gracePeriodSeconds=0.
3. `done`: every Pod object is gone: the job takes its final phase by cause.

The slot is released at step 3, when the Pod objects are gone from the API server,
whether they went gracefully or were force-deleted. Holding it longer after a force
delete protects nothing: the scheduler already stops counting a Pod's GPUs once the
object is gone and would place another Pod there anyway (Kueue faces the same choice
with stuck-terminating Pods and also frees quota when the Pod is gone).

A force delete removes the API object only. When a Pod's node is not Ready (its
kubelet is down or unreachable), the container goes on running until the node comes
back and its kubelet kills the orphan (without a grace period, so no checkpoint):
the log line and the Events then say so instead of implying that the process was
stopped. Node readiness is passed in; this module stays pure.

The exit code of the trainer, once a Pod shows one (75 after a checkpoint on
SIGTERM, 137 when the kubelet killed it at the end of its grace period), is kept.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from shunter.domain.model import (
    CANCELLED_BY_USER,
    Attempt,
    Job,
    JobStatus,
    Phase,
    PodView,
    StopCause,
    Termination,
    TerminationStep,
)
from shunter.domain.podspec import pod_names
from shunter.domain.workloss import attempt_began, grace_for
from shunter.operator.decisions import Decision, DeletePod, Event
from shunter.operator.rules import Rules

# A force delete is repeated at most this often while a Pod still shows up.
FORCE_RETRY = timedelta(seconds=5)
HISTORY = 20
# What a force delete leaves behind on a node that is not Ready.
LEFT_RUNNING = "its process keeps running until the node returns and its kubelet stops it"

_REASON = {StopCause.CANCEL: "Cancelled", StopCause.DEADLINE: "DeadlineExceeded",
            StopCause.START_TIMEOUT: "StartTimeout", StopCause.SUSPEND: "Suspended",
            StopCause.PREEMPT: "Preempted", StopCause.TIME_SLICE: "TimeSliced",
            StopCause.FAILURE: "Failed"}  # fmt: skip
STOP_WHY = {
    StopCause.CANCEL: "Cancelled by user",
    StopCause.DEADLINE: "Deadline exceeded",
    StopCause.START_TIMEOUT: "Start timeout",
    StopCause.SUSPEND: "Suspended",
    StopCause.PREEMPT: "Preempted",
    StopCause.TIME_SLICE: "Time slice used",
    StopCause.FAILURE: "A Pod failed",
}


@dataclass(frozen=True)
class StopView:
    """What the stop of one job needs to know besides the job."""

    pods: Mapping[int, PodView]  # the job's current Pods by index
    unobserved: Collection[int] = ()  # created, not seen yet: present
    not_ready: Collection[str] = ()  # nodes whose Ready condition is not True
    # Stop only these indexes (None: every Pod); a failed gang keeps its failed Pod.
    targets: Collection[int] | None = None
    detail: str = ""  # e.g. who preempted the job, for messages and Events
    # The job's queue bounds how long a stopped job keeps its GPUs (TrainingQueue
    # maxGracePeriodSeconds), whatever the job asked for.
    max_grace: int | None = None
    # The grace a preemption chose for this victim (None: the sized grace).
    grace: int | None = None


def grace_of(job: Job, view: StopView, rules: Rules) -> int:
    """The grace period the job's Pods get: the one its stop recorded when it began;
    else the one its preemption chose; else its own, sized to its observed checkpoint
    writes, within its queue's bound (shunter.domain.workloss.grace_for)."""
    t = job.status.termination
    if t is not None and t.step is not TerminationStep.DONE and t.grace is not None:
        return t.grace
    if view.grace is not None:
        return view.grace
    cap = int(rules.max_sized_grace.total_seconds()) if rules.size_grace else None
    return grace_for(job, queue_max=view.max_grace, cap=cap)


def stop(job: Job, view: StopView, *, cause: StopCause, now: datetime, rules: Rules) -> Decision:
    """Advance the stop of the job's Pods one step (or begin it)."""
    status = _with_exit_code(job.status, view.pods)
    job = replace(job, status=status)
    termination = status.termination
    names = pod_names(job)
    indexes = range(job.spec.nodes) if view.targets is None else sorted(view.targets)
    present = [i for i in indexes if i in view.pods or i in view.unobserved]
    grace = grace_of(job, view, rules)
    if termination is None or termination.step is TerminationStep.DONE:
        record = Termination(TerminationStep.GRACEFUL, now, now, cause=cause)
        return _begin(job, view, record, present=present, names=names, now=now, rules=rules)
    if termination.cause is not cause and cause is StopCause.CANCEL:
        # A cancel overtakes a stop in progress: same Pods, same clock, final phase
        # `cancelled`.
        termination = replace(termination, cause=cause)
        status = replace(status, phase=Phase.CANCELLING, reason="Cancelling",
                         termination=termination)  # fmt: skip
        job = replace(job, status=status)
    if not present:
        return _finish(job, view, termination, names=names, now=now, rules=rules)
    if termination.step is TerminationStep.GRACEFUL:
        started = termination.graceful_delete_at or termination.requested_at or now
        deadline = started + timedelta(seconds=grace) + rules.grace_margin
        if now < deadline:
            # Re-sent after a restart that fell between the status write and a delete.
            resend = [i for i in present if i in view.pods and not view.pods[i].deleting]
            return Decision(
                status=job.status,
                delete_pods=tuple(DeletePod(job.key.namespace, names[i], grace) for i in resend),
                wake_at=deadline,
            )
        return _force(job, view, termination, present=present, names=names, now=now, rules=rules)
    # Forced, a Pod still shows up: the watch lags, or the delete failed. Repeat it.
    last = termination.force_delete_at or now
    if now - last >= FORCE_RETRY:
        return Decision(
            status=replace(job.status, termination=replace(termination, force_delete_at=now)),
            delete_pods=tuple(DeletePod(job.key.namespace, names[i], 0) for i in present),
            wake_at=now + FORCE_RETRY,
        )
    return Decision(status=job.status, wake_at=last + FORCE_RETRY)


def _with_exit_code(status: JobStatus, pods: Mapping[int, PodView]) -> JobStatus:
    """The first failing code among the Pods, else any code (75 after a checkpoint)."""
    codes: list[int] = [p.exit_code for _, p in sorted(pods.items()) if p.exit_code is not None]
    failing = [c for c in codes if c != 0]
    code = (failing or codes)[0] if codes else status.exit_code
    return status if code == status.exit_code else replace(status, exit_code=code)


def _suffix(cause: StopCause) -> str:
    """The guide's lines are a cancel's; other causes name themselves."""
    return "" if cause is StopCause.CANCEL else f" ({STOP_WHY[cause].lower()})"


def _begin(
    job: Job, view: StopView, record: Termination, *, present: list[int], names: list[str],
    now: datetime, rules: Rules,
) -> Decision:  # fmt: skip
    cause = record.cause
    if cause is StopCause.FAILURE and view.detail:
        why = view.detail  # e.g. "Pod g-trainer-1 failed with exit code 1 (Error)"
    else:
        why = STOP_WHY[cause] + (f" {view.detail}" if view.detail else "")
    if not present:
        return _finish(job, view, record, names=names, now=now, rules=rules)
    grace = grace_of(job, view, rules)
    record = replace(record, pods=tuple(names[i] for i in present), grace=grace,
                     checkpoint_by=now + timedelta(seconds=grace))  # fmt: skip
    ns = job.key.namespace
    stopping = ", ".join(names[i] for i in present)
    plural = "s" if len(present) > 1 else ""
    return Decision(
        status=replace(
            job.status,
            phase=Phase.CANCELLING if cause is StopCause.CANCEL else Phase.STOPPING,
            reason="Cancelling" if cause is StopCause.CANCEL else STOP_WHY[cause].replace(" ", ""),
            message=f"{why}; stopping pod{plural} {stopping} (grace period {grace}s)",
            termination=record,
        ),
        delete_pods=tuple(DeletePod(ns, names[i], grace) for i in present),
        events=tuple(
            Event(
                "Normal",
                "Terminating",
                f"Deleting pod {names[i]} with grace {grace}s{_suffix(cause)}",
            )
            for i in present
        ),
        logs=tuple(
            f"[Terminate] Attempting graceful termination of pod {ns}/{names[i]}{_suffix(cause)}"
            for i in present
        ),
        wake_at=now + timedelta(seconds=grace) + rules.grace_margin,
    )


def _node_of(job: Job, view: StopView, index: int) -> str | None:
    pod = view.pods.get(index)
    if pod is not None and pod.node_name:
        return pod.node_name
    placement = job.status.placement
    return placement[index] if index < len(placement) else job.status.node_name


def _force(
    job: Job, view: StopView, termination: Termination, *, present: list[int], names: list[str],
    now: datetime, rules: Rules,
) -> Decision:  # fmt: skip
    grace = grace_of(job, view, rules)
    ns = job.key.namespace
    why = STOP_WHY[termination.cause]
    logs, events = [], []
    for i in present:
        node = _node_of(job, view, i)
        line = f"[Terminate] Pod {ns}/{names[i]} did not terminate gracefully, forcing deletion"
        text = (f"Pod {names[i]} did not stop within {grace}s + margin; deleting it with"
                " gracePeriodSeconds=0")  # fmt: skip
        if node in view.not_ready:
            line += f"; node {node} is not Ready: {LEFT_RUNNING}"
            text = (f"Pod {names[i]} did not stop within {grace}s + margin and node {node} is"
                    f" not Ready: force-deleting the Pod object; {LEFT_RUNNING} (its GPUs stay"
                    " in use there)")  # fmt: skip
        logs.append(line + _suffix(termination.cause))
        events.append(Event("Warning", "ForceDeleting", text))
    forced = tuple(names[i] for i in present)
    return Decision(
        status=replace(
            job.status,
            message=f"{why}; pod{'s' if len(present) > 1 else ''} {', '.join(forced)} did not"
            " stop in time, force-deleting",
            termination=replace(
                termination, step=TerminationStep.FORCED, force_delete_at=now, forced_pods=forced
            ),
        ),
        delete_pods=tuple(DeletePod(ns, names[i], 0) for i in present),
        events=tuple(events),
        logs=tuple(logs),
        wake_at=now + FORCE_RETRY,
    )


def _finish(
    job: Job, view: StopView, termination: Termination, *, names: list[str], now: datetime,
    rules: Rules,
) -> Decision:  # fmt: skip
    """Every Pod is gone: log how each went, then the final phase by cause."""
    ns = job.key.namespace
    cause = termination.cause
    logs = []
    for name in termination.pods:
        forced = name in termination.forced_pods
        node = _node_of(job, view, names.index(name)) if name in names else None
        if forced and node in view.not_ready:
            logs.append(f"[Terminate] Pod {ns}/{name} force deleted; node {node} is not"
                        f" Ready: {LEFT_RUNNING}{_suffix(cause)}")  # fmt: skip
        elif forced:
            logs.append(f"[Terminate] Pod {ns}/{name} force deleted{_suffix(cause)}")
        else:
            logs.append(f"[Terminate] Pod {ns}/{name} terminated gracefully{_suffix(cause)}")
    outcome = "forced" if termination.forced_pods else "graceful"
    done = replace(termination, step=TerminationStep.DONE, outcome=outcome)
    status, event = final_status(job, done, now=now, rules=rules, detail=view.detail)
    if any(n in view.not_ready for n in (_node_of(job, view, i) for i in range(len(names)))) and (
        termination.forced_pods
    ):
        event = replace(event, type="Warning", message=f"{event.message}; {LEFT_RUNNING}")
    return Decision(status=status, events=(event,), logs=tuple(logs), released=True)


def _by_whom(job: Job) -> str:
    """'Cancelled by user alice' for the Event; the job's status and the mirror keep the
    guide's plain 'Cancelled by user'. No name when none was recorded (kubectl)."""
    user = job.audit.cancelled_by
    return f"{CANCELLED_BY_USER} {user}" if user else CANCELLED_BY_USER


def final_status(
    job: Job, termination: Termination, *, now: datetime, rules: Rules, detail: str = ""
) -> tuple[JobStatus, Event]:
    """Where a job whose Pods are gone ends up, by the cause of the stop."""
    status, cause = job.status, termination.cause
    run = record_attempt(job, reason=_REASON[cause], now=now)
    code = f" (exit code {status.exit_code})" if status.exit_code is not None else ""
    how = "force deleted" if termination.forced_pods else "stopped gracefully"
    if status.exit_code == 137 and not termination.forced_pods:
        # The kubelet's SIGKILL at the end of the grace period: no checkpoint was written.
        how = "stopped: its trainer ignored SIGTERM and was killed when the grace period ran out"
    pods = ", ".join(termination.pods) or "none"
    base = replace(status, termination=termination, history=run, queue_position=None,
                   pods_ready=0)  # fmt: skip
    if cause is StopCause.CANCEL:
        final = replace(base, phase=Phase.CANCELLED, reason="Cancelled",
                        message=CANCELLED_BY_USER, completed_at=now)  # fmt: skip
        if termination.outcome == "never-started":
            return final, Event("Normal", "Cancelled", f"{_by_whom(job)} before it started")
        return final, Event("Normal", "Cancelled", f"{_by_whom(job)}: pod {pods} {how}{code}")
    if cause is StopCause.DEADLINE:
        limit = job.spec.max_runtime_seconds
        message = f"Ran longer than maxRuntimeSeconds ({limit}s); its Pods were {how}{code}"
        final = replace(base, phase=Phase.FAILED, reason="DeadlineExceeded", message=message,
                        completed_at=now)  # fmt: skip
        return final, Event("Warning", "DeadlineExceeded", message)
    if cause is StopCause.SUSPEND:
        final = replace(base, phase=Phase.SUSPENDED, reason="Suspended", placement=(),
                        message=f"Suspended; Pods {how}{code}; resume to continue from the"
                        " last checkpoint", suspensions=status.suspensions + 1)  # fmt: skip
        return final, Event("Normal", "Suspended", f"Pod {pods} {how}{code}; job suspended")
    if cause is StopCause.PREEMPT:
        message = (
            f"Preempted{(' ' + detail) if detail else ''}; Pods {how}{code}; waiting to run again"
        )
        final = replace(base, phase=Phase.QUEUED, reason="Preempted", placement=(),
                        message=message, preemptions=status.preemptions + 1)  # fmt: skip
        return final, Event("Normal", "Preempted", message)
    if cause is StopCause.TIME_SLICE:
        message = (f"Time slice used{(' ' + detail) if detail else ''}; Pods {how}{code};"
                   " back in the queue behind the jobs that waited")  # fmt: skip
        final = replace(base, phase=Phase.QUEUED, reason="TimeSliced", placement=(),
                        message=message, requeued_at=now)  # fmt: skip
        return final, Event("Normal", "TimeSliced", message)
    if cause is StopCause.START_TIMEOUT:
        return _start_timed_out(job, base, now=now, rules=rules)
    return _failed_run(job, base, now=now, rules=rules, detail=detail)


def _start_timed_out(
    job: Job, base: JobStatus, *, now: datetime, rules: Rules
) -> tuple[JobStatus, Event]:
    count = base.start_timeouts + 1
    limit = int(rules.start_timeout.total_seconds())
    why = base.message or ""
    if count >= rules.start_attempts:
        message = f"Did not start within {limit}s in {count} attempts; giving up"
        final = replace(base, phase=Phase.FAILED, reason="StartTimeout", message=message,
                        start_timeouts=count, completed_at=now, placement=())  # fmt: skip
        return final, Event("Warning", "StartTimeout", message)
    wait = rules.backoff(count)
    message = (f"Did not start within {limit}s (attempt {count} of {rules.start_attempts});"
               f" back in the queue, may start again in {int(wait.total_seconds())}s")  # fmt: skip
    final = replace(base, phase=Phase.QUEUED, reason="StartTimeout", message=message,
                    start_timeouts=count, not_before=now + wait, placement=())  # fmt: skip
    return final, Event("Warning", "StartTimeout", f"{message}. Last state: {why}")


def _failed_run(
    job: Job, base: JobStatus, *, now: datetime, rules: Rules, detail: str
) -> tuple[JobStatus, Event]:
    failures = base.failures + 1
    what = detail or f"Trainer exited with code {base.exit_code}"
    if failures <= job.spec.backoff_limit:
        wait = rules.backoff(failures)
        message = (f"{what}; retry {failures} of {job.spec.backoff_limit} in"
                   f" {int(wait.total_seconds())}s")  # fmt: skip
        final = replace(base, phase=Phase.STARTING, reason="Retrying", message=message,
                        failures=failures, not_before=now + wait, termination=None,
                        exit_code=None)  # fmt: skip
        return final, Event("Warning", "Retrying", message)
    message = what if not job.spec.backoff_limit else f"{what} (after {failures} attempts)"
    final = replace(base, phase=Phase.FAILED, reason="Failed", message=message,
                    failures=failures, completed_at=now)  # fmt: skip
    return final, Event("Warning", "Failed", message)


def record_attempt(job: Job, *, reason: str, now: datetime) -> tuple[Attempt, ...]:
    """The history with the run that just ended appended (once per run), with what its
    trainer reported: the checkpoint it resumed from, its last one, and the seconds of
    work it lost (since its last complete checkpoint, or since it started)."""
    status = job.status
    number = max(1, status.attempts)
    if any(a.number == number and a.finished_at for a in status.history):
        return status.history
    began = attempt_began(job)
    progress, checkpoint = status.progress, status.checkpoint
    mine = checkpoint if checkpoint is not None and checkpoint.attempt == number else None
    resumed = progress.resumed_from_step if progress and progress.attempt == number else None
    lost = None
    if began is not None:
        last = max(began, mine.time) if mine is not None else began
        lost = 0.0 if reason == "Completed" else round(max(0.0, (now - last).total_seconds()), 3)
    queued, admitted, running = attempt_times(job, number)
    run = Attempt(number, status.exit_code, reason, began, now, resumed_from_step=resumed,
                  checkpoint_step=mine.step if mine else None, lost_seconds=lost,
                  queued_at=queued, admitted_at=admitted, running_at=running)  # fmt: skip
    return (*[a for a in status.history if a.number != number], run)[-HISTORY:]


def attempt_times(
    job: Job, number: int
) -> tuple[datetime | None, datetime | None, datetime | None]:
    """When attempt `number` began to wait, got its GPUs and ran (for accounting).

    The first attempt waits from the job's creation. A later one waits from the end of
    the one before (a preempted, time-sliced or suspended job is back in the queue then;
    a suspension's time counts as waiting, as the status keeps no resume time), unless
    it is a retry: a failed run's job keeps its GPUs through the backoff (it stays
    Starting), so a retry's GPUs are held from the failure and it never waited. Unknown
    (None) when the attempt before it is no longer in the history."""
    status = job.status
    ends = [a.finished_at for a in status.history if a.number < number and a.finished_at]
    before = max(ends, default=None)
    admitted = status.admitted_at
    if before is not None and (admitted is None or before > admitted):
        admitted = before  # a retry
    queued = job.created_at if number == 1 else before
    since = status.running_since
    running = since if since is not None and admitted is not None and since >= admitted else None
    return queued, admitted, running


def cancel_unstarted(job: Job, *, now: datetime, rules: Rules) -> Decision:
    """A job with no Pod (queued, suspended) is cancelled at once."""
    never = Termination(TerminationStep.DONE, now, outcome="never-started")
    status, _ = final_status(job, never, now=now, rules=rules)
    status = replace(status, history=job.status.history)
    where = "queue" if job.queued else "suspended jobs"
    return Decision(
        status=status,
        events=(Event("Normal", "Cancelled", f"{_by_whom(job)}: removed from the {where}"),),
        logs=(f"[Cancel] Job {job.key} removed from queue and cancelled",),
    )
