"""Stop requests: the first SIGTERM (or SIGINT) asks for a clean stop, the second exits.

The signals are read by a watcher thread from `signal.set_wakeup_fd`, not by a Python
handler in the main thread: the main thread of a rank may sit for a long time inside
a C++ collective (a gloo or NCCL all_reduce waiting for a peer that hangs), where
Python handlers cannot run, but the C signal handler still writes the signal number
to the wakeup pipe and the watcher gets the GIL the collective released. So a second
signal ends a rank at once even when it is blocked on its peers.

The second signal exits with `exit_code`: 143 (stopped without a checkpoint) until the
trainer calls `finishing(code)` once its last checkpoint is durable and every rank has
passed the final barrier; from then on an impatient second signal exits with the code
the run earned (75), since nothing is lost any more.

A preemption notice in the answer to a report (`report`) asks for the same stop
through `request(...)`, from the reporter's thread. It is not a signal: a SIGTERM that
follows it (the operator deleting the Pod while the checkpoint is being written) is
still the first signal, and only a second one exits at once.

Only one `StopRequest` may exist in a process (it owns the signal handlers and the
wakeup fd); `StopRequest.installed()` returns it, so a library user's loop and the
framework callbacks share one.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar

from shunter_trainer import EXIT_INTERRUPTED

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """A Python-level handler must exist for the C handler to write to the wakeup fd;
    the watcher thread does the work."""


class StopRequest:
    _installed: ClassVar[StopRequest | None] = None

    @classmethod
    def installed(cls, *, log: Callable[..., None]) -> StopRequest:
        """The process's StopRequest, created (with `log`) on first use."""
        if cls._installed is None:
            cls._installed = cls(log=log)
        return cls._installed

    def __init__(
        self,
        *,
        log: Callable[..., None],
        on_exit: Callable[[int], None] = lambda _code: None,
    ) -> None:
        if StopRequest._installed is not None:
            raise RuntimeError("a StopRequest already owns this process's signals")
        StopRequest._installed = self
        self.requested_at: float | None = None
        self.signals = 0
        self.exit_code = EXIT_INTERRUPTED
        self._log = log
        self._on_exit = on_exit
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        self.reclaim()
        threading.Thread(target=self._watch, args=(read_fd,), name="signals", daemon=True).start()

    def reclaim(self) -> None:
        """(Re)install the handlers, after a framework put its own in place (Lightning
        does at the start of fit: its handler would end the run before a checkpoint)."""
        for sig in STOP_SIGNALS:
            signal.signal(sig, _ignore)

    def _watch(self, read_fd: int) -> None:
        while True:
            for signum in os.read(read_fd, 64):
                if signum in STOP_SIGNALS:
                    self._received(signal.Signals(signum))

    def _received(self, sig: signal.Signals) -> None:
        self.signals += 1
        if self.signals == 1:
            if self.requested_at is None:
                self.requested_at = time.monotonic()
                self._log("stop_requested", signal=sig.name)
            return
        code = self.exit_code
        self._log("interrupted", signal=sig.name, exit_code=code)
        self._on_exit(code)
        os._exit(code)

    def request(self, **fields: Any) -> None:
        """A stop asked for without a signal (a preemption notice); logged once."""
        if self.requested_at is None:
            self.requested_at = time.monotonic()
            self._log("stop_requested", **fields)

    def finishing(self, code: int) -> None:
        """The run's outcome is safe: a second signal from now on exits with `code`."""
        self.exit_code = code

    def __call__(self) -> bool:
        return self.requested_at is not None
