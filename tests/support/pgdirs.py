"""Where the tests' embedded PostgreSQL servers keep their files.

Not under pytest's temporary root: every pytest session that starts makes
/tmp/pytest-of-USER mode 0700 again, and the server runs as a user of its own that
must traverse every folder above its data. A `make test-unit` started beside a running
`make test` would otherwise lock that suite out of its own servers (pg_ctl: could not
access directory ... Permission denied).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def postgres_root(tag: str) -> Iterator[Path]:
    """A fresh directory for one server (LocalPostgres(root)), removed afterwards."""
    parent = Path(tempfile.mkdtemp(prefix=f"shunter-{tag}-"))
    try:
        yield parent / "server"
    finally:
        shutil.rmtree(parent, ignore_errors=True)
