"""The trainer's log: one JSON object per line on stdout.

Each line is written with a single write(2) on the file descriptor, so the lines of
several ranks sharing torchrun's stdout (and the signal watcher thread of one rank)
never interleave inside a line. Fields given to `Log(...)` (the rank, under torchrun)
are added to every line.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any


class Log:
    def __init__(self, **fixed: Any) -> None:
        self.fixed = fixed
        self._lock = threading.Lock()

    def __call__(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "time": round(time.time(), 3), **self.fixed, **fields})
        data = (line + "\n").encode()
        with self._lock:
            fd = sys.stdout.fileno()
            while data:
                data = data[os.write(fd, data) :]
