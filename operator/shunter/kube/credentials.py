"""Who we are to the API server, kept current without blocking the event loop.

A kubeconfig user (or a Pod's ServiceAccount) proves who it is with some of:
- a bearer token: written in the kubeconfig, or in a file (`tokenFile`; in a Pod the
  projected ServiceAccount token, which the kubelet rewrites before it expires);
- a client certificate and key: inline (`-data`) or in files that cert-manager or a
  node's rotation may replace on disk;
- an exec plugin (`exec`): a command printing an ExecCredential (a token and/or a
  certificate, and when they expire), as cloud providers' kubeconfigs use;
- a user name and password (basic auth, for old clusters).

`Credentials` loads them in a worker thread (`asyncio.to_thread`: files are read and
plugins run there, never on the loop) and keeps the result: files are read again
every `recheck_seconds` (60 s, as client-go does for token files), a plugin's answer
is kept until its expirationTimestamp (or, with none, until refused). After a 401 the
client asks for a reload once (`reload`), so a token rotated or revoked sooner than
that is picked up at the first refusal. One load runs at a time; callers that find
one under way wait for its result.

The ExecCredential protocol follows client-go (client.authentication.k8s.io v1 and
v1beta1): KUBERNETES_EXEC_INFO carries the request, stdin is not a terminal (a
service cannot answer prompts, so a plugin that requires one is refused), and the
answer must name the same apiVersion.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shunter.kube.errors import Unauthorized

RECHECK_SECONDS = 60.0
EXEC_TIMEOUT = 60.0
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")


@dataclass(frozen=True)
class Credential:
    """What one request carries: an Authorization header and/or a client certificate."""

    authorization: str | None = None
    certificate: tuple[bytes, bytes] | None = None  # PEM chain and key
    expires: datetime | None = None


@dataclass(frozen=True)
class ExecPlugin:
    """A kubeconfig user's `exec` section."""

    command: str
    api_version: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    interactive_mode: str = "IfAvailable"
    cluster: dict[str, Any] | None = None  # spec.cluster, when provideClusterInfo

    def run(self) -> Credential:
        """Run the command (blocking) and parse its ExecCredential."""
        what = f"exec plugin {self.command}"
        if self.api_version not in EXEC_API_VERSIONS:
            raise Unauthorized(f"{what}: apiVersion {self.api_version!r} is not supported")
        if self.interactive_mode == "Always":
            raise Unauthorized(
                f"{what}: interactiveMode Always needs a terminal; a service has none"
            )
        spec: dict[str, Any] = {"interactive": False}
        if self.cluster is not None:
            spec["cluster"] = self.cluster
        request = {"apiVersion": self.api_version, "kind": "ExecCredential", "spec": spec}
        env = {**os.environ, **dict(self.env), "KUBERNETES_EXEC_INFO": json.dumps(request)}
        try:
            done = subprocess.run(
                [self.command, *self.args], env=env, stdin=subprocess.DEVNULL,
                capture_output=True, timeout=EXEC_TIMEOUT, check=False,
            )  # fmt: skip
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise Unauthorized(f"{what}: {exc}") from exc
        if done.returncode:
            stderr = done.stderr.decode(errors="replace").strip()[-500:]
            raise Unauthorized(f"{what}: exit status {done.returncode}: {stderr}")
        return self.parse(done.stdout)

    def parse(self, output: bytes) -> Credential:
        what = f"exec plugin {self.command}"
        try:
            answer = json.loads(output)
            status = answer["status"]
            if (
                answer.get("apiVersion") != self.api_version
                or answer.get("kind") != "ExecCredential"
            ):
                raise ValueError(f"not an ExecCredential of {self.api_version}")
            token = status.get("token") or None
            cert, key = status.get("clientCertificateData"), status.get("clientKeyData")
            if bool(cert) != bool(key):
                raise ValueError("clientCertificateData and clientKeyData go together")
            if not token and not cert:
                raise ValueError("neither a token nor a client certificate")
            stamp = status.get("expirationTimestamp")
            expires = datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise Unauthorized(f"{what}: unusable answer: {exc}") from exc
        return Credential(
            authorization=f"Bearer {token}" if token else None,
            certificate=(cert.encode(), key.encode()) if cert else None,
            expires=expires,
        )


@dataclass(frozen=True)
class Source:
    """Where a user's credentials come from (paths already absolute)."""

    token: str | None = None
    token_file: Path | None = None
    basic: tuple[str, str] | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    exec_plugin: ExecPlugin | None = None

    @property
    def files(self) -> bool:
        """Whether anything is read from files (which may be replaced on disk)."""
        return bool(self.token_file or self.cert_file or self.key_file)

    def load(self) -> Credential:
        """Read the files and run the plugin (blocking: in a worker thread)."""
        authorization = None
        if self.token_file is not None:
            authorization = f"Bearer {_read(self.token_file).decode().strip()}"
        elif self.token:
            authorization = f"Bearer {self.token}"
        elif self.basic:
            pair = base64.b64encode(":".join(self.basic).encode()).decode()
            authorization = f"Basic {pair}"
        cert = self.cert_data or (_read(self.cert_file) if self.cert_file else None)
        key = self.key_data or (_read(self.key_file) if self.key_file else None)
        found = Credential(authorization, (cert, key) if cert and key else None)
        if self.exec_plugin is None:
            return found
        # What the plugin gives replaces what the kubeconfig names, as in client-go.
        given = self.exec_plugin.run()
        return Credential(
            given.authorization or found.authorization,
            given.certificate or found.certificate,
            given.expires,
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise Unauthorized(f"credentials: cannot read {path}: {exc}") from exc


@dataclass
class Credentials:
    """One user's credentials as last loaded, and when to load them again."""

    source: Source
    recheck_seconds: float = RECHECK_SECONDS
    _current: Credential | None = field(default=None, init=False)
    _loaded_at: float = field(default=0.0, init=False)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock, init=False)

    async def current(self) -> Credential:
        """The credential to send now: the kept one while fresh, else loaded again."""
        current = self._current
        if current is not None and self._fresh(current):
            return current
        return await self._load(current)

    async def reload(self, refused: Credential) -> Credential:
        """After a 401 with `refused`: load again (unless another caller already has)."""
        return await self._load(refused)

    def _fresh(self, credential: Credential) -> bool:
        if credential.expires is not None and datetime.now(UTC) >= credential.expires:
            return False
        if not self.source.files:
            return True  # nothing to re-read: kept until it expires or is refused
        return time.monotonic() - self._loaded_at < self.recheck_seconds

    async def _load(self, stale: Credential | None) -> Credential:
        async with self._lock:
            if self._current is not None and self._current is not stale:
                return self._current  # loaded while we waited
            self._current = await asyncio.to_thread(self.source.load)
            self._loaded_at = time.monotonic()
            return self._current
