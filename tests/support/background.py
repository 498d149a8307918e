"""One background thread for the tests and the benches: a chaos monkey, a load loop, a
watch that records, a sampler.

The thread is given the stop event it must watch (and wait on: `stop.wait(pause)` is a
pause that ends at once on stop, never a sleep the test has to sit out). Whatever it
raises is kept, and `stop()` raises it again in the test's thread: a background thread
that died is the test's failure, not a silence the assertions afterwards misread as
"nothing happened".
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Self


class BackgroundFailed(Exception):
    """The background thread raised; the cause is its exception."""


class Background:
    def __init__(self, run: Callable[[threading.Event], object], *, name: str) -> None:
        self.name = name
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self._run = run
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)

    @classmethod
    def every(
        cls, pause: Callable[[], float] | float, step: Callable[[], object], *, name: str
    ) -> Background:
        """step() again and again, `pause` seconds apart (a callable draws each pause),
        until stopped."""
        wait = pause if callable(pause) else (lambda: pause)

        def repeat(stop: threading.Event) -> None:
            while not stop.wait(wait()):
                step()

        return cls(repeat, name=name)

    def start(self) -> Self:
        self._thread.start()
        return self

    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, *, timeout: float = 120, join: bool = True) -> None:
        """Stop and join; raise what the thread raised, or that it would not end.
        join=False only asks it to stop: a watch blocked in a read ends at its next
        event or timeout, which nobody needs to wait for."""
        self.stopping.set()
        if join:
            self.wait(timeout=timeout)

    def wait(self, *, timeout: float | None = None) -> None:
        """Join a thread that ends on its own; raise what it raised, or that it ran on."""
        self._thread.join(timeout)
        if self.failure is not None:
            raise BackgroundFailed(f"{self.name} failed") from self.failure
        if self._thread.is_alive():
            raise BackgroundFailed(f"{self.name} did not end within {timeout}s")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _main(self) -> None:
        try:
            self._run(self.stopping)
        except BaseException as exc:  # kept for stop(), in the test's thread
            self.failure = exc
