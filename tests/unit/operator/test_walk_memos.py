"""A pass takes a queue's kept walk again only where walking it would decide the same.

Two books are fed the same random history (jobs arriving in queues with cohorts,
quotas, borrowing, preemption and time slices, completions, failures, cancels, Nodes
going NotReady, time passing), and after every change one plans with kept walks and the
other walks every queue: the passes must be equal, decision for decision, timer for
timer. The history is the same for both because the decisions of the first are carried
out on both.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shunter.domain.admission import AdmissionState, Limits, Verdict
from shunter.domain.model import Job, JobKey, PodView
from shunter.domain.queues import BEST_EFFORT_FIFO, LOWER_PRIORITY, STRICT_FIFO, QueueView
from shunter.operator.book import JobBook
from shunter.operator.planning import Pass, plan_pass
from shunter.operator.rules import Rules
from tests.support.builders import a_node, a_training_job

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _queues(rng: random.Random) -> list[QueueView]:
    queues = []
    for c in range(3):
        for q in range(4):
            queues.append(QueueView(
                f"c{c}-q{q}", gpu_quota=rng.choice([2, 4, 8]),
                borrowing_limit=rng.choice([None, 2, 4, 8]), cohort=f"c{c}",
                preemption=rng.choice([LOWER_PRIORITY, "never"]),
                strategy=rng.choice([BEST_EFFORT_FIFO, BEST_EFFORT_FIFO, STRICT_FIFO]),
                max_running=rng.choice([None, None, 3]),
                time_slice=rng.choice([None, None, None, 60]),
                weight=1.0 if c == 1 and rng.random() < 0.5 else None,
            ))  # fmt: skip
    queues.append(QueueView("solo", gpu_quota=8, preemption=LOWER_PRIORITY,
                            strategy=BEST_EFFORT_FIFO))  # fmt: skip
    return queues


def _job(rng: random.Random, i: int, at: datetime, names: list[str]) -> Job:
    builder = (
        a_training_job(f"j{i}", namespace=rng.choice(["team-a", "team-b"]))
        .with_gpus(rng.choice([1, 1, 2, 2, 4, 4, 8, 16, 64]))
        .with_priority(rng.choice([0, 100, 200]))
        .with_spec(queue=rng.choice([*names, "missing"]))
        .created_at(at)
    )  # fmt: skip
    if rng.random() < 0.05 and i:
        builder = builder.with_spec(dependsOn=[{"name": f"j{rng.randrange(i)}",
                                                "condition": "Completed"}])  # fmt: skip
    return builder.job()


def _carry_out(books: tuple[JobBook, JobBook], result: Pass) -> None:
    """The decisions written, and the cluster's answer: Pods of admitted jobs run on
    their placement, deleted Pods are gone."""
    for book in books:
        for key, at in result.wake_at.items():
            book.wake_at(key, at)
        for key, decision in result.decisions.items():
            job = book.jobs.get(key)
            if job is None:
                continue
            job = replace(job, status=decision.status)
            book.put_job(job)
            deleted = {d.name for d in decision.delete_pods}
            for pod in list(book.pods.get(key, {}).values()):
                if pod.name in deleted:
                    book.remove_pod(pod)
            for index, node in enumerate(decision.status.placement if decision.create else ()):
                book.put_pod(PodView(
                    namespace=key.namespace, name=f"{key.name}-{job.status.attempts}-{index}",
                    uid=f"pod-{key.name}-{job.status.attempts}-{index}", job_name=key.name,
                    job_uid=job.uid, phase="Running", deleting=False, node_name=node,
                    ready=True, index=index, attempt=job.status.attempts,
                ))  # fmt: skip


def _event(rng: random.Random, books: tuple[JobBook, JobBook], i: int, now: datetime,
           names: list[str]) -> None:  # fmt: skip
    book = books[0]
    running = [p for pods in book.pods.values() for p in pods.values() if p.phase == "Running"]
    roll = rng.random()
    if roll >= 0.93:
        return  # time passes only
    if roll < 0.3 or not running:
        job = _job(rng, i, now, names)
        for b in books:
            b.put_job(job)
    elif roll < 0.8:
        pod = rng.choice(running)
        phase = rng.choice(["Succeeded", "Succeeded", "Failed"])
        for b in books:
            b.put_pod(replace(pod, phase=phase, ready=False,
                              exit_code=0 if phase == "Succeeded" else 1))  # fmt: skip
    elif roll < 0.88:
        waiting = [j for j in book.jobs.values() if j.queued and not j.spec.cancelled]
        if waiting:
            job = rng.choice(waiting)
            cancelled = replace(job, spec=replace(job.spec, cancelled=True))
            for b in books:
                b.put_job(cancelled)
    elif roll < 0.9:
        node = rng.choice(list(book.nodes.values()))
        for b in books:
            b.put_node(replace(node, ready=not node.ready))


def _counting(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the verdicts passes make (how many jobs they judged)."""
    verdicts = {"count": 0}
    real = AdmissionState.verdict

    def counted(self: AdmissionState, job: Job, *, now: datetime) -> Verdict:
        verdicts["count"] += 1
        return real(self, job, now=now)

    monkeypatch.setattr(AdmissionState, "verdict", counted)
    return verdicts


def _both(books: tuple[JobBook, JobBook], now: datetime, rules: Rules,
          verdicts: dict[str, int]) -> tuple[Pass, list[int]]:  # fmt: skip
    """One pass on each book, the first with its kept walks; the verdicts each made."""
    results, counts = [], []
    for book, kept in zip(books, (True, False), strict=True):
        before = verdicts["count"]
        results.append(plan_pass(book, changed=book.take_due(now), now=now, rules=rules,
                                 kept_walks=kept))  # fmt: skip
        counts.append(verdicts["count"] - before)
    assert results[0] == results[1]
    return results[0], counts


@pytest.mark.parametrize("seed", range(12))
def test_a_kept_walk_decides_what_walking_the_queue_decides(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    queues = _queues(rng)
    names = [q.name for q in queues]
    nodes = [a_node(f"n{i}", gpus=rng.choice([8, 8, 16])) for i in range(rng.randint(3, 8))]
    jobs = [_job(rng, i, T0 + timedelta(seconds=i), names) for i in range(60)]
    books = (JobBook.of(jobs, nodes=nodes, queues=queues),
             JobBook.of(jobs, nodes=nodes, queues=queues))  # fmt: skip
    rules = Rules(limits=Limits(max_running=rng.choice([6, 1000, 1000]),
                                gpu_budget=rng.choice([0, 96, 400])))  # fmt: skip
    verdicts = _counting(monkeypatch)
    now = T0 + timedelta(minutes=5)
    for step in range(150):
        if step:
            _event(rng, books, 60 + step, now, names)
            now += timedelta(seconds=rng.choice([0, 1, 5, 30, 90]))
        result, _ = _both(books, now, rules, verdicts)  # equal, or it fails here
        _carry_out(books, result)


def _kueue_like(rng: random.Random) -> tuple[list[QueueView], list[Job]]:
    """Kueue's shape in small: full cohorts of BestEffortFIFO queues with quota and
    borrowing, jobs of three sizes and priorities."""
    queues = [
        QueueView(f"c{c}-q{q}", gpu_quota=4, borrowing_limit=rng.choice([4, 8]), cohort=f"c{c}",
                  strategy=BEST_EFFORT_FIFO, preemption=rng.choice(["never", LOWER_PRIORITY]))
        for c in range(4) for q in range(3)
    ]  # fmt: skip
    sizes = {1: 0, 2: 100, 4: 200}
    jobs = []
    for i in range(120):
        gpus = rng.choice([1, 1, 2, 4])
        jobs.append(_a(f"j{i}", rng.choice(queues).name, gpus, sizes[gpus], i))
    return queues, jobs


@pytest.mark.parametrize("seed", range(6))
def test_kept_walks_of_quiet_cohorts_decide_what_walking_them_decides(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same in Kueue's shape, where whole cohorts go untouched for many passes
    (their walks are taken again without looking at their queues), one cohort's
    completion at a time, new jobs now and then, and sometimes a budget of GPUs."""
    rng = random.Random(seed)
    queues, jobs = _kueue_like(rng)
    nodes = [a_node(f"n{i}", gpus=8) for i in range(8)]
    books = (JobBook.of(jobs, nodes=nodes, queues=queues),
             JobBook.of(jobs, nodes=nodes, queues=queues))  # fmt: skip
    rules = Rules(limits=Limits(max_running=rng.choice([40, 1000]),
                                gpu_budget=rng.choice([0, 60, 1000])))  # fmt: skip
    verdicts = _counting(monkeypatch)
    now = T0 + timedelta(minutes=5)
    counts = [0, 0]
    for step in range(150):
        roll = rng.random()
        running = [p for pods in books[0].pods.values() for p in pods.values()
                   if p.phase == "Running"]  # fmt: skip
        if step and roll < 0.5 and running:
            pod = rng.choice(running)
            for book in books:
                book.put_pod(replace(pod, phase="Succeeded", exit_code=0, ready=False))
        elif step and roll < 0.7:
            gpus = rng.choice([1, 2, 4])
            job = _a(f"new{step}", rng.choice(queues).name, gpus, {1: 0, 2: 100, 4: 200}[gpus],
                     1000 + step)  # fmt: skip
            for book in books:
                book.put_job(job)
        now += timedelta(seconds=1)
        result, made = _both(books, now, rules, verdicts)
        counts = [counts[0] + made[0], counts[1] + made[1]]
        _carry_out(books, result)
    assert counts[0] < counts[1], counts


def test_a_quiet_cohort_is_not_looked_at() -> None:
    """Two full cohorts: once both are quiet, a completion in one walks its queues and
    does not judge a single job of the other."""
    twins = Twins([
        *[QueueView(f"a{i}", gpu_quota=4, borrowing_limit=4, cohort="a",
                    strategy=BEST_EFFORT_FIFO) for i in range(3)],
        *[QueueView(f"b{i}", gpu_quota=4, borrowing_limit=4, cohort="b",
                    strategy=BEST_EFFORT_FIFO) for i in range(3)],
    ], [
        _a(f"{c}{i}-{n}", f"{c}{i}", 4, 0, 10 * n + i + (5 if c == "b" else 0))
        for c in "ab" for i in range(3) for n in range(5)
    ])  # fmt: skip
    for _ in range(4):
        twins.step()
    assert set(twins.books[0].group_walks) == {("cohort", "a"), ("cohort", "b")}
    twins.complete("a0-0")
    judged: list[str] = []
    real = AdmissionState.verdict

    def noted(self: AdmissionState, job: Job, *, now: datetime) -> Verdict:
        judged.append(job.spec.queue)
        return real(self, job, now=now)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(AdmissionState, "verdict", noted)
        result = twins.step(between=lambda: judged.append("|"))
    started = {k.name for k, d in result.decisions.items() if d.create}
    assert started == {"a0-1"}
    kept, walked = judged[: judged.index("|")], judged[judged.index("|") + 1 :]
    assert {queue[0] for queue in kept} == {"a"}
    assert {queue[0] for queue in walked} == {"a", "b", "|"}


def test_a_quiet_cohort_is_looked_at_when_the_pass_may_fill_the_running_limit() -> None:
    """Cohort b waits for quota while 4 of 5 slots run. A completion in queue a0 lets
    it start two jobs, the slots are full before b's heads come, and b's heads say so."""
    twins = Twins([
        QueueView("a0", gpu_quota=4, strategy=BEST_EFFORT_FIFO),
        *[QueueView(f"b{i}", gpu_quota=4, borrowing_limit=4, cohort="b",
                    strategy=BEST_EFFORT_FIFO) for i in range(3)],
    ], [
        _a("a0-0", "a0", 4, 100, 0), *[_a(f"a0-{n}", "a0", 1, 100, n) for n in range(1, 4)],
        *[_a(f"b{i}-{n}", f"b{i}", 4, 0, 10 + 3 * n + i) for i in range(3) for n in range(3)],
    ])  # fmt: skip
    twins.rules = Rules(limits=Limits(max_running=5))
    for _ in range(4):
        twins.step()
    assert ("cohort", "b") in twins.books[0].group_walks
    twins.complete("a0-0")
    result = twins.step()
    assert {k.name for k, d in result.decisions.items() if d.create} == {"a0-1", "a0-2"}
    heads = [twins.status(f"b{i}-1").status.message for i in range(3)]
    assert all("no free slot (5 of 5 in use)" in message for message in heads), heads


def test_a_quiet_cohort_is_looked_at_when_the_pass_may_use_up_the_gpu_budget() -> None:
    """Cohort b waits for quota within a budget of 20 GPUs (12 held). Two new jobs of
    another queue take the 8 left before b's heads come, and b's heads say so."""
    twins = Twins([
        QueueView("x", gpu_quota=8, strategy=BEST_EFFORT_FIFO),
        *[QueueView(f"b{i}", gpu_quota=4, borrowing_limit=4, cohort="b",
                    strategy=BEST_EFFORT_FIFO) for i in range(3)],
    ], [_a(f"b{i}-{n}", f"b{i}", 4, 0, 3 * n + i) for i in range(3) for n in range(3)])  # fmt: skip
    twins.rules = Rules(limits=Limits(max_running=100, gpu_budget=20))
    for _ in range(4):
        twins.step()
    assert ("cohort", "b") in twins.books[0].group_walks
    twins.put(_a("x-1", "x", 4, 100, 20))
    twins.put(_a("x-2", "x", 4, 100, 21))
    result = twins.step()
    assert {k.name for k, d in result.decisions.items() if d.create} == {"x-1", "x-2"}
    heads = [twins.status(f"b{i}-1").status.message for i in range(3)]
    assert all("the GPU budget has 0 of 20 free" in message for message in heads), heads


def test_a_walk_kept_while_a_write_was_out_is_not_taken_once_it_is_taken_back() -> None:
    """A job admitted and written as assumed, then taken back (its write failed):
    nothing marks it, but its cohort's kept walks are stale, and the next pass
    admits it again."""
    twins = Twins(_cohort(a={"borrowing_limit": 4}, b={"borrowing_limit": 4}), [
        _a("a1", "a", 4, 100, 0), _a("b1", "b", 4, 100, 1),
        _a("a2", "a", 4, 0, 2), _a("b2", "b", 4, 0, 3),
    ])  # fmt: skip
    for _ in range(4):
        twins.step()
    assert ("cohort", "c") in twins.books[0].group_walks
    twins.complete("a1")
    key = JobKey("default", "a2")
    twins.step(assumed=[key])  # a1 completed; a2 admitted, its write in flight
    assert not twins.status("a2").queued
    for _ in range(2):  # passes with the write out: a1's end seen, then nothing new
        twins.step()
    assert ("cohort", "c") in twins.books[0].group_walks
    for book in twins.books:
        book.settle(key)  # the write failed
    assert twins.status("a2").queued
    result = twins.step()
    assert result.decisions[key].create


def test_a_queue_whose_positions_were_taken_back_walks_again() -> None:
    """Positions written as assumed and then taken back (the writes failed): nothing
    marks those jobs, but the queue's kept walk is stale, and the next pass writes the
    positions again."""
    twins = Twins(_cohort(q={}), [
        _a("q-run", "q", 4, 100, 0), _a("q-1", "q", 4, 0, 1), _a("q-2", "q", 4, 0, 2),
    ])  # fmt: skip
    for _ in range(3):
        twins.step()
    assert twins.status("q-1").status.queue_position == 1
    twins.put(_a("q-urgent", "q", 4, 50, 3))
    moved = [JobKey("default", "q-1"), JobKey("default", "q-2")]
    twins.step(assumed=moved)
    for _ in range(2):
        twins.step()
    assert "q" in twins.books[0].walks
    assert twins.status("q-1").status.queue_position == 2
    for book in twins.books:
        for key in moved:
            book.settle(key)
    assert twins.status("q-1").status.queue_position == 1
    result = twins.step()
    assert [result.decisions[k].status.queue_position for k in moved] == [2, 3]


def test_after_a_completion_only_the_queues_it_concerns_walk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Kueue's shape in small: four queues of a full cohort, ten jobs waiting in each
    behind one running. A completion in one queue walks that queue (its next job
    starts); the other three take their kept walks."""
    queues = [QueueView(f"q{i}", gpu_quota=4, borrowing_limit=8, cohort="c",
                        strategy=BEST_EFFORT_FIFO) for i in range(4)]  # fmt: skip
    jobs = [
        a_training_job(f"q{q}-{n}").with_gpus(4).with_spec(queue=f"q{q}")
        .created_at(T0 + timedelta(seconds=10 * n + q)).job()
        for q in range(4) for n in range(11)
    ]  # fmt: skip
    nodes = [a_node(f"n{i}", gpus=8) for i in range(4)]
    books = (JobBook.of(jobs, nodes=nodes, queues=queues),
             JobBook.of(jobs, nodes=nodes, queues=queues))  # fmt: skip
    rules = Rules(limits=Limits(max_running=100))
    verdicts = _counting(monkeypatch)
    now = T0 + timedelta(minutes=5)
    for _ in range(3):  # numbered and admitted, then positions written, then quiet
        result, _ = _both(books, now, rules, verdicts)
        _carry_out(books, result)
    assert sum(1 for j in books[0].jobs.values() if j.holds_slot) == 4
    assert set(books[0].walks) == {"q0", "q1", "q2", "q3"}

    pod = next(iter(books[0].pods[JobKey("default", "q0-0")].values()))
    for book in books:
        book.put_pod(replace(pod, phase="Succeeded", exit_code=0, ready=False))
    result, counts = _both(books, now + timedelta(seconds=1), rules, verdicts)
    started = {k.name for k, d in result.decisions.items() if d.create}
    assert started == {"q0-1"}
    # Walking every queue judges each queue's ten waiting jobs; with the kept walks,
    # q0's ten and the head of each other queue once (its new head's victim search
    # needs no trial verdict: nothing is being stopped, and it finds no candidate).
    assert counts[1] >= 40
    assert counts[0] == 10 + 3, counts


class Twins:
    """Two books fed the same jobs: `step` plans on both (the first with kept walks),
    checks that they agree, and carries out the first one's decisions on both (a
    stopped Pod is only marked deleting with `pods_go=False`)."""

    def __init__(self, queues: list[QueueView], jobs: list[Job]) -> None:
        nodes = [a_node(f"n{i}", gpus=8) for i in range(8)]
        self.books = (JobBook.of(jobs, nodes=nodes, queues=queues),
                      JobBook.of(jobs, nodes=nodes, queues=queues))  # fmt: skip
        self.rules = Rules(limits=Limits(max_running=100))
        self.now = T0 + timedelta(minutes=5)

    def step(self, *, pods_go: bool = True, between: Callable[[], None] = lambda: None,
             assumed: Collection[JobKey] = ()) -> Pass:  # fmt: skip
        """(`between` is called after the first book's pass, before the second's; the
        decisions for `assumed` are laid over the books as writes in flight.)"""
        self.now += timedelta(seconds=1)
        results = []
        for book, kept in zip(self.books, (True, False), strict=True):
            results.append(plan_pass(book, changed=book.take_due(self.now), now=self.now,
                                     rules=self.rules, kept_walks=kept))  # fmt: skip
            between()
        assert results[0] == results[1]
        for book in self.books:
            for key in assumed:
                book.assume(book.jobs[key], results[0].decisions[key].status)
        results[0] = replace(results[0], decisions={
            k: d for k, d in results[0].decisions.items() if k not in assumed})  # fmt: skip
        if pods_go:
            _carry_out(self.books, results[0])
            return results[0]
        for book in self.books:
            for key, decision in results[0].decisions.items():
                book.put_job(replace(book.jobs[key], status=decision.status))
                deleted = {d.name for d in decision.delete_pods}
                for pod in list(book.pods.get(key, {}).values()):
                    if pod.name in deleted:
                        book.put_pod(replace(pod, deleting=True))
        return results[0]

    def put(self, job: Job) -> None:
        for book in self.books:
            book.put_job(job)

    def complete(self, name: str) -> None:
        for book in self.books:
            pod = next(iter(book.pods[JobKey("default", name)].values()))
            book.put_pod(replace(pod, phase="Succeeded", exit_code=0, ready=False))

    def status(self, name: str) -> Job:
        return self.books[0].jobs[JobKey("default", name)]


def _a(name: str, queue: str, gpus: int, priority: int, second: int) -> Job:
    return (a_training_job(name).with_gpus(gpus).with_priority(priority)
            .with_spec(queue=queue).created_at(T0 + timedelta(seconds=second)).job())  # fmt: skip


def _cohort(**queues: dict[str, object]) -> list[QueueView]:
    return [QueueView(name, gpu_quota=4, cohort="c", strategy=BEST_EFFORT_FIFO,
                      **fields) for name, fields in queues.items()]  # type: ignore[arg-type]  # fmt: skip


def _a_full_cohort(*, running: int, big: int) -> Twins:
    """Queues a, b and c of 4 GPUs each in one cohort, each running a job of 4 GPUs (of
    priority `running`); a also has a job of 8 waiting (over its borrowing limit of
    4; priority `big`) and one of 2 behind it; a's walk is kept."""
    twins = Twins(_cohort(a={"borrowing_limit": 4}, b={"borrowing_limit": 4}, c={}), [
        _a("a1", "a", 4, running, 0), _a("b1", "b", 4, running, 1),
        _a("c1", "c", 4, running, 2), _a("a-big", "a", 8, big, 3), _a("a-small", "a", 2, 0, 4),
    ])  # fmt: skip
    for _ in range(3):
        twins.step()
    assert "a" in twins.books[0].walks
    return twins


def test_a_kept_walk_is_not_taken_when_its_cohort_has_more_idle_gpus_for_a_later_job() -> None:
    """The head's verdict reads no idle GPUs (it is over its borrowing limit), the job
    behind it does: GPUs freed in another queue of the cohort start that job."""
    twins = _a_full_cohort(running=200, big=100)
    assert twins.status("a-small").status.queue_position == 2
    twins.complete("c1")
    started = {k.name for k, d in twins.step().decisions.items() if d.create}
    assert started == {"a-small"}


def test_a_walk_whose_cohort_changed_under_it_is_not_kept() -> None:
    """A queue's head saw 4 idle GPUs, the job behind it none (another queue's job was
    admitted between them): the walk is not kept, so the next pass, with 4 idle GPUs
    again, starts the job behind."""
    twins = _a_full_cohort(running=300, big=200)
    twins.complete("c1")  # 4 idle GPUs, taken by b2 between a-big and a-small
    twins.put(_a("b2", "b", 4, 100, 5))
    started = {k.name for k, d in twins.step().decisions.items() if d.create}
    assert started == {"b2"}
    assert "a" not in twins.books[0].walks
    twins.complete("b1")  # 4 idle GPUs again
    started = {k.name for k, d in twins.step().decisions.items() if d.create}
    assert started == {"a-small"}


def test_a_kept_walk_is_not_taken_while_a_victim_near_its_head_stops() -> None:
    """Jobs stopped for others count as gone in a head's victim search: while b's
    victim stops, a's head fits beside it and says it waits for it."""
    twins = Twins(_cohort(a={"borrowing_limit": 4},
                          b={"borrowing_limit": 0, "preemption": LOWER_PRIORITY}), [
        _a("a1", "a", 4, 200, 0), _a("b-low", "b", 4, 50, 1), _a("a2", "a", 4, 40, 2),
    ])  # fmt: skip
    for _ in range(3):
        twins.step()
    assert "a" in twins.books[0].walks
    twins.put(_a("b-high", "b", 4, 100, 3))
    result = twins.step(pods_go=False)
    assert twins.status("b-low").status.termination is not None
    assert JobKey("default", "a2") not in result.decisions
    result = twins.step(pods_go=False)
    assert (
        "Waiting for 1 preempted job to stop"
        in result.decisions[JobKey("default", "a2")].status.message
    )
