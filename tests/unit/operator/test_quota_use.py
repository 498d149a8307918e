"""QuotaUse keeps each cohort's held GPUs as jobs come and go: its idle quota is what
the sum over the cohort's members gives, after any sequence of adds, removes and
copies (the pass asks it for every queue head it looks at)."""

from __future__ import annotations

import random

import pytest

from shunter.domain.queues import QueueView, QuotaUse
from tests.support.builders import a_training_job


def _summed_idle(use: QuotaUse, queue: QueueView) -> int:
    members = [q for q in use.queues.values() if queue.cohort and q.cohort == queue.cohort]
    members = members or [queue]
    nominal = sum(m.gpu_quota or 0 for m in members)
    return max(0, nominal - sum(use.gpus.get(m.name, 0) for m in members))


@pytest.mark.parametrize("seed", range(20))
def test_cohort_idle_is_the_sum_over_its_members_after_any_changes(seed: int):
    rng = random.Random(seed)
    queues = {f"q{i}": QueueView(f"q{i}", gpu_quota=rng.choice([None, 0, 4, 8, 20]),
                                 cohort=rng.choice([None, "a", "b"]))
              for i in range(8)}  # fmt: skip
    jobs = [a_training_job(f"j{i}").with_gpus(rng.choice([1, 2, 5, 8]))
            .with_spec(queue=rng.choice([*queues, "default", "absent"])).job()
            for i in range(30)]  # fmt: skip
    # Several uses, copies of each other, each changed on its own.
    uses = [(QuotaUse.of(queues, jobs[:10]), list(jobs[:10]))]
    for step in range(60):
        if rng.random() < 0.2:
            use, held = rng.choice(uses)
            uses.append((use.copy(), list(held)))
        use, held = rng.choice(uses)
        if held and rng.random() < 0.4:
            use.remove(held.pop(rng.randrange(len(held))))
        else:
            job = rng.choice(jobs)
            use.add(job)
            held.append(job)
        for use, _ in uses:
            for queue in [*queues.values(), QueueView("absent", gpu_quota=6, cohort="a")]:
                assert use.cohort_idle(queue) == _summed_idle(use, queue), (seed, step, queue)
