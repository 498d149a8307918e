"""The background thread: repeats until stopped, and its failure is the test's."""

from __future__ import annotations

import threading

import pytest

from tests.support.background import Background, BackgroundFailed


def test_every_repeats_until_stopped():
    done = threading.Event()
    steps: list[int] = []

    def step() -> None:
        steps.append(len(steps))
        if len(steps) == 3:
            done.set()

    with Background.every(0.001, step, name="counter") as thread:
        assert done.wait(10)
    assert not thread.running()  # joined: no step after stop()
    assert steps[:3] == [0, 1, 2]


def test_a_failure_in_the_thread_is_raised_by_stop():
    def step() -> None:
        raise ValueError("boom")

    thread = Background.every(0.001, step, name="failing").start()
    with pytest.raises(BackgroundFailed, match="failing failed") as caught:
        thread.wait(timeout=10)  # the failure ends the loop by itself
    assert isinstance(caught.value.__cause__, ValueError)
    with pytest.raises(BackgroundFailed, match="failing failed"):
        thread.stop()


def test_a_thread_that_will_not_end_is_named():
    release = threading.Event()
    thread = Background(lambda _: release.wait(10), name="stuck").start()
    with pytest.raises(BackgroundFailed, match=r"stuck did not end within 0\.05s"):
        thread.stop(timeout=0.05)
    release.set()
    thread.wait(timeout=10)
    assert not thread.running()


def test_stop_without_join_only_asks():
    release = threading.Event()
    thread = Background(lambda stop: stop.wait(10) and release.wait(10), name="watch").start()
    thread.stop(join=False)
    assert thread.stopping.is_set()
    release.set()
    thread.wait(timeout=10)
