"""What the book keeps of the active jobs equals what counting them again gives.

The book keeps what the admitted jobs hold as they change (shunter.domain.holdings), so
that a pass need not count 2,000 running jobs again. Fed random histories (the walk
memos' histories, plus foreign Pods coming and going, jobs moved to another queue
while they run, jobs admitted without a placement whose bound Pods say where they run,
queues and Nodes changing), after every change it must equal the count a pass made
before it was kept: Usage, QuotaUse, Capacity and Grouped of the book's active jobs in
the book's order, with a pass's decisions laid over them.
"""

from __future__ import annotations

import random
from dataclasses import replace
from datetime import timedelta

import pytest

from shunter.domain.admission import AdmissionState, Limits, Usage
from shunter.domain.capacity import Capacity
from shunter.domain.model import (
    Job,
    JobKey,
    JobStatus,
    Phase,
    StopCause,
    Termination,
    TerminationStep,
)
from shunter.domain.nodes import PodUsage, Resources
from shunter.domain.queues import QuotaUse
from shunter.domain.victims import Grouped
from shunter.operator.book import JobBook
from shunter.operator.planning import admission_state, plan_pass
from shunter.operator.rules import Rules
from tests.support.builders import a_node
from tests.unit.operator.test_walk_memos import T0, _carry_out, _event, _job, _queues

LIMITS = Limits(max_running=1000)


def _counted(book: JobBook) -> AdmissionState:
    """How a pass counted them before they were kept (every pass, from scratch)."""
    active = list(book.active.values())
    bound = {(str(key), pod.index): pod.node_name for key in book.active
             for pod in book.pods.get(key, {}).values() if pod.node_name}  # fmt: skip
    return AdmissionState(LIMITS, Usage.of(active), QuotaUse.of(book.queues, active),
                          Capacity.build(book.node_index(), book.foreign.values(), active, bound),
                          book.queues)  # fmt: skip


def _same_state(kept: AdmissionState, counted: AdmissionState) -> None:
    assert kept.usage == counted.usage
    assert kept.quota.running == counted.quota.running
    assert kept.quota.gpus == counted.quota.gpus
    for queue in kept.queues.values():
        if queue.cohort:
            assert kept.quota.cohort_idle(queue) == counted.quota.cohort_idle(queue)
    assert kept.capacity.free == counted.capacity.free
    assert kept.capacity.touched == counted.capacity.touched


def _same_groups(book: JobBook, overlay: dict[JobKey, Job | None]) -> None:
    active = [j for key, job in book.active.items()
              if (j := overlay.get(key, job)) is not None]  # fmt: skip
    counted = Grouped.of(active, book.queues)
    kept = book.holdings().grouped(overlay)
    assert kept.stopping == counted.stopping
    for group, jobs in counted.groups.items():
        assert list(kept.groups[group]) == jobs, group
    for group in kept.groups:  # a group a decision emptied may stay, empty
        assert group in counted.groups or not kept.groups[group]


def _stopping(job: Job) -> Job:
    termination = Termination(TerminationStep.GRACEFUL, requested_at=T0, cause=StopCause.PREEMPT)
    return replace(job, status=replace(job.status, phase=Phase.STOPPING, termination=termination))


def _shuffle(rng: random.Random, book: JobBook, queues: list[str], i: int) -> None:
    """What the walk memos' histories do not: foreign Pods, a running job moved to
    another queue, a job admitted by an earlier version (no placement) whose Pods say
    where they are bound, a queue or a Node changed."""
    roll = rng.random()
    nodes = list(book.nodes)
    if roll < 0.3 and nodes:
        book.put_foreign(PodUsage(f"f{rng.randrange(6)}", rng.choice(nodes),
                                  Resources(gpus=rng.choice([0, 1, 2]), cpu=500)))  # fmt: skip
    elif roll < 0.4 and book.foreign:
        book.remove_foreign(book.foreign[rng.choice(list(book.foreign))])
    elif roll < 0.5 and book.active:
        job = book.active[rng.choice(list(book.active))]
        book.put_job(replace(job, spec=replace(job.spec, queue=rng.choice(queues))))
    elif roll < 0.6 and book.active:
        job = book.active[rng.choice(list(book.active))]
        book.put_job(replace(job, status=replace(job.status, placement=())))
    elif roll < 0.65 and book.active:
        book.put_job(_stopping(book.active[rng.choice(list(book.active))]))
    elif roll < 0.68:
        queue = rng.choice(list(book.queues.values()))
        book.put_queue(replace(queue, gpu_quota=(queue.gpu_quota or 0) + 1))
    elif roll < 0.7:
        book.put_node(a_node(f"extra{i}", gpus=8))
    elif roll < 0.85:
        # A Pod of a job without a placement bound elsewhere, or gone.
        unplaced = [key for key, job in book.active.items() if not job.status.placement]
        pods = [pod for key in unplaced for pod in book.pods.get(key, {}).values()]
        if pods and nodes:
            pod = rng.choice(pods)
            if rng.random() < 0.5:
                book.put_pod(replace(pod, node_name=rng.choice(nodes)))
            else:
                book.remove_pod(pod)


@pytest.mark.parametrize("seed", range(10))
def test_the_kept_holdings_equal_a_count_from_scratch(seed: int) -> None:
    rng = random.Random(seed)
    queues = _queues(rng)
    names = [q.name for q in queues]
    nodes = [a_node(f"n{i}", gpus=rng.choice([8, 8, 16])) for i in range(rng.randint(3, 8))]
    jobs = [_job(rng, i, T0 + timedelta(seconds=i), names) for i in range(60)]
    book = JobBook.of(jobs, nodes=nodes, queues=queues)
    twin = JobBook.of(jobs, nodes=nodes, queues=queues)  # what _event wants beside it
    rules = Rules(limits=LIMITS)
    now = T0 + timedelta(minutes=5)
    for step in range(150):
        if step:
            _event(rng, (book, twin), 60 + step, now, names)
            _shuffle(rng, book, names, step)
            now += timedelta(seconds=rng.choice([0, 1, 5, 30, 90]))
        _same_state(admission_state(book, rules), _counted(book))
        # A pass's decisions laid over the groups: some stop holding, some are stopped.
        overlay: dict[JobKey, Job | None] = {}
        for key in rng.sample(list(book.active), min(3, len(book.active))):
            overlay[key] = None if rng.random() < 0.5 else _stopping(book.active[key])
        _same_groups(book, overlay)
        result = plan_pass(book, changed=book.take_due(now), now=now, rules=rules)
        _carry_out((book, twin), result)
        _same_state(admission_state(book, rules), _counted(book))


def test_a_pass_consumes_a_copy_not_what_the_book_keeps() -> None:
    queue_jobs = [_job(random.Random(1), i, T0, ["default"]) for i in range(4)]
    book = JobBook.of(queue_jobs, nodes=[a_node("n0", gpus=64)])
    admitted = replace(queue_jobs[0], status=JobStatus(phase=Phase.RUNNING, placement=("n0",)))
    book.put_job(admitted)
    state = admission_state(book, Rules(limits=LIMITS))
    state.give(admitted)
    state.take(queue_jobs[1], ("n0",))
    _same_state(admission_state(book, Rules(limits=LIMITS)), _counted(book))
