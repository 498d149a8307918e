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
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from standalone_trainer import EXIT_INTERRUPTED

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _ignore(_signum: int, _frame: FrameType | None) -> None:
    """A Python-level handler must exist for the C handler to write to the wakeup fd;
    the watcher thread does the work."""


class StopRequest:
    def __init__(
        self,
        *,
        log: Callable[..., None],
        on_exit: Callable[[int], None] = lambda _code: None,
    ) -> None:
        self.requested_at: float | None = None
        self.exit_code = EXIT_INTERRUPTED
        self._log = log
        self._on_exit = on_exit
        read_fd, write_fd = os.pipe()
        os.set_blocking(write_fd, False)
        signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        for sig in STOP_SIGNALS:
            signal.signal(sig, _ignore)
        threading.Thread(target=self._watch, args=(read_fd,), name="signals", daemon=True).start()

    def _watch(self, read_fd: int) -> None:
        while True:
            for signum in os.read(read_fd, 64):
                if signum in STOP_SIGNALS:
                    self._received(signal.Signals(signum))

    def _received(self, sig: signal.Signals) -> None:
        if self.requested_at is None:
            self.requested_at = time.monotonic()
            self._log("stop_requested", signal=sig.name)
            return
        code = self.exit_code
        self._log("interrupted", signal=sig.name, exit_code=code)
        self._on_exit(code)
        os._exit(code)

    def finishing(self, code: int) -> None:
        """The run's outcome is safe: a second signal from now on exits with `code`."""
        self.exit_code = code

    def __call__(self) -> bool:
        return self.requested_at is not None
