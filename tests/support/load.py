"""The one load loop of the fault tests: jobs submitted, some cancelled, some hanging on
delete, from the test's thread or in the background.

Each submission is a job of a random short run time; a share of them is cancelled
(sometimes after a short wait, so it may have been admitted first) and a share hangs on
delete with a one-second grace (the force-delete path). A cancel the API server refuses
with 422 means the job had already finished: recorded as a refusal, and a test asserts
that nothing else was refused. The random generator is the test's, seeded, so a run can
be repeated.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

from kubernetes.client.exceptions import ApiException

from tests.support.background import Background
from tests.support.builders import a_training_job
from tests.support.operator import Jobs


@dataclass
class Load:
    jobs: Jobs
    rng: random.Random
    prefix: str = "l"
    run_for: tuple[int, ...] = (1, 2, 3)  # seconds, one drawn per job
    cancel_share: float = 0.33
    hang_share: float = 0.0
    # Before a cancel, a wait drawn from [0, cancel_wait] half the time: sometimes the
    # job is admitted first, sometimes not.
    cancel_wait: float = 0.0
    count: int = 0
    cancelled: set[str] = field(default_factory=set)
    refusals: list[int | None] = field(default_factory=list)
    _naming: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def submit(self) -> str:
        with self._naming:  # a burst from the test's thread may meet the background's
            name = f"{self.prefix}{self.count:03d}"
            self.count += 1
        builder = a_training_job(name).running_for(f"{self.rng.choice(self.run_for)}s")
        if self.rng.random() < self.hang_share:
            builder = builder.hanging_on_delete().with_grace(1)
        self.jobs.create(builder)
        if self.rng.random() < self.cancel_share:
            if self.cancel_wait and self.rng.random() < 0.5:
                time.sleep(
                    self.rng.uniform(0, self.cancel_wait)
                )  # a jitter, not a wait for a state
            try:
                self.jobs.cancel(name)
                self.cancelled.add(name)
            except ApiException as exc:
                self.refusals.append(exc.status)
        return name

    def burst(self, n: int) -> None:
        for _ in range(n):
            self.submit()

    def cycles(self, n: int, *, pause: tuple[float, float] = (0.0, 0.0)) -> None:
        """n submissions from this thread, a pause drawn from `pause` after each."""
        for _ in range(n):
            self.submit()
            time.sleep(self.rng.uniform(*pause))

    def for_seconds(self, seconds: float, *, pause: float = 0.2) -> None:
        """Submissions from this thread for `seconds`, `pause` apart."""
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            self.submit()
            time.sleep(pause)

    def in_background(self, *, pause: tuple[float, float] = (0.1, 0.3)) -> Background:
        """Submissions from a thread until it is stopped (Background.stop)."""

        def run(stop: threading.Event) -> None:
            while not stop.wait(self.rng.uniform(*pause)):
                self.submit()

        return Background(run, name=f"load {self.prefix}")

    def assert_refusals_were_finished_jobs(self) -> None:
        assert set(self.refusals) <= {422}, self.refusals
