"""Progress and checkpoint reports to Shunter, and the preemption notice in the answer.

The channel (the server side is Shunter's API; trainer-image/README.md, "Reports to
Shunter", is the reference). The operator sets, on the Pods of a job:

| variable | meaning |
| --- | --- |
| SHUNTER_REPORT_URL | the API's `/api/trainer/v1/report` (http or https); unset: no reports |
| SHUNTER_REPORT_TOKEN_FILE | a projected ServiceAccount token (audience `shunter`) |
| SHUNTER_JOB_UID | the TrainingJob's uid |
| SHUNTER_ATTEMPT | optional: the attempt (an integer) |
| SHUNTER_REPORT_CA_FILE | optional: the CA bundle for an https URL |
| SHUNTER_REPORT_INTERVAL_SECONDS | optional: at most one progress report this often (10) |

Each report is `POST {"job_uid", "attempt", "rank", "step", "total_steps", "loss"?,
"throughput"?, "checkpoint"?: {"step", "time", "size_bytes", "write_seconds"},
"checkpoint_on_stop": true, "resumed_from_step"?}` with
`Authorization: Bearer <token>`; the token file is read again for every report, since
the kubelet rotates it. The answer is `{"accepted", "next_report_seconds"?, "notice":
null | {"reason": "preempt" | "time-slice", "checkpoint_by"}}`; a notice is handed to
`on_notice` (the loop then stops after its current step, with a checkpoint).

Why it is built this way:
- One background thread sends; `progress()` and `checkpoint()` only hand over what
  to send, so a slow or absent server never slows a training step.
- Progress is rate-limited here, not by the server: only the newest step waits, and
  it goes out once the interval (or the server's `next_report_seconds`, when longer)
  has passed since the last report. A checkpoint report goes out at once: it is what
  the operator waits for during a stop.
- Failures (no server, a refused token, a 4xx) are logged once per run of failures
  and are never fatal: the stop-and-resume contract works without reports.
- Only the standard library (urllib): the image needs nothing more than torch.
- `throughput` is steps per second between two reports, measured here.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

DEFAULT_INTERVAL_SECONDS = 10.0
# One request's bound; with FLUSH_SECONDS it bounds what reporting can add to a stop.
REQUEST_TIMEOUT_SECONDS = 5.0
FLUSH_SECONDS = 10.0
NOTICE_REASONS = ("preempt", "time-slice")


class ReportSettingsError(ValueError):
    """SHUNTER_REPORT_URL is set, but the rest of the environment is not usable."""


@dataclass(frozen=True)
class Settings:
    url: str
    token_file: Path
    job_uid: str
    attempt: int | None = None
    ca_file: Path | None = None
    interval: float = DEFAULT_INTERVAL_SECONDS

    @classmethod
    def from_environment(cls, env: Mapping[str, str]) -> Settings | None:
        """None when reporting is off (no SHUNTER_REPORT_URL)."""
        url = env.get("SHUNTER_REPORT_URL")
        if not url:
            return None
        if not url.startswith(("http://", "https://")):
            raise ReportSettingsError(f"SHUNTER_REPORT_URL={url!r} is not an http(s) URL")
        missing = [n for n in ("SHUNTER_REPORT_TOKEN_FILE", "SHUNTER_JOB_UID") if not env.get(n)]
        if missing:
            raise ReportSettingsError(f"SHUNTER_REPORT_URL is set but {', '.join(missing)} not")
        ca = env.get("SHUNTER_REPORT_CA_FILE")
        try:
            attempt = int(env["SHUNTER_ATTEMPT"]) if env.get("SHUNTER_ATTEMPT") else None
            interval = float(env.get("SHUNTER_REPORT_INTERVAL_SECONDS") or DEFAULT_INTERVAL_SECONDS)
        except ValueError as exc:
            raise ReportSettingsError(f"SHUNTER_ATTEMPT or the interval: {exc}") from exc
        return cls(
            url=url,
            token_file=Path(env["SHUNTER_REPORT_TOKEN_FILE"]),
            job_uid=env["SHUNTER_JOB_UID"],
            attempt=attempt,
            ca_file=Path(ca) if ca else None,
            interval=max(interval, 0.0),
        )


@dataclass(frozen=True)
class Notice:
    reason: str  # "preempt" or "time-slice"
    checkpoint_by: str  # RFC 3339


@dataclass(frozen=True)
class CheckpointReport:
    step: int
    time: float  # seconds since the epoch
    size_bytes: int
    write_seconds: float


@dataclass(frozen=True)
class _Item:
    step: int
    total_steps: int | None
    loss: float | None
    at: float  # monotonic
    checkpoint: CheckpointReport | None = None


def rfc3339(epoch: float) -> str:
    stamp = datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
    return stamp.replace("+00:00", "Z")


class Reporter:
    def __init__(
        self,
        settings: Settings,
        *,
        rank: int,
        log: Callable[..., None],
        on_notice: Callable[[Notice], None],
    ) -> None:
        self.settings = settings
        self.rank = rank
        self._log = log
        self._on_notice = on_notice
        self._context = (
            ssl.create_default_context(cafile=str(settings.ca_file)) if settings.ca_file else None
        )
        self._cond = threading.Condition()
        self._progress: _Item | None = None
        self._checkpoints: list[_Item] = []
        self._closing = False
        self._next_at = 0.0  # monotonic: when the next progress report may go
        self._last: _Item | None = None  # the last one sent, for the throughput
        self._failing = False
        # The step of the checkpoint this run resumed from (Run.resume sets it).
        self.resumed_from_step: int | None = None
        self._thread = threading.Thread(target=self._loop, name="shunter-report", daemon=True)
        self._thread.start()

    def progress(self, step: int, *, total_steps: int | None, loss: float | None) -> None:
        with self._cond:
            self._progress = _Item(step, total_steps, loss, time.monotonic())
            self._cond.notify()

    def checkpoint(
        self, report: CheckpointReport, *, total_steps: int | None, loss: float | None
    ) -> None:
        with self._cond:
            self._checkpoints.append(
                _Item(report.step, total_steps, loss, time.monotonic(), checkpoint=report)
            )
            self._cond.notify()

    def close(self, timeout: float = FLUSH_SECONDS) -> None:
        """Send what is pending (checkpoints, then the newest step), then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            item = self._next()
            if item is None:
                return
            self._send(item)

    def _next(self) -> _Item | None:
        with self._cond:
            while True:
                if self._checkpoints:
                    item = self._checkpoints.pop(0)
                    if self._progress is not None and self._progress.step <= item.step:
                        self._progress = None  # the checkpoint report says as much
                    return item
                if self._progress is not None:
                    wait = self._next_at - time.monotonic()
                    if wait <= 0 or self._closing:
                        item, self._progress = self._progress, None
                        return item
                    self._cond.wait(wait)
                elif self._closing:
                    return None
                else:
                    self._cond.wait()

    def _body(self, item: _Item) -> dict[str, Any]:
        body: dict[str, Any] = {
            "job_uid": self.settings.job_uid,
            "attempt": self.settings.attempt,
            "rank": self.rank,
            "step": item.step,
            "total_steps": item.total_steps,
            # The library checkpoints when stopped (SIGTERM or a notice) and exits 75.
            "checkpoint_on_stop": True,
        }
        if self.resumed_from_step is not None:
            body["resumed_from_step"] = self.resumed_from_step
        if item.loss is not None:
            body["loss"] = item.loss
        last = self._last
        if last is not None and item.at > last.at and item.step > last.step:
            body["throughput"] = round((item.step - last.step) / (item.at - last.at), 3)
        if item.checkpoint is not None:
            c = item.checkpoint
            body["checkpoint"] = {
                "step": c.step,
                "time": rfc3339(c.time),
                "size_bytes": c.size_bytes,
                "write_seconds": c.write_seconds,
            }
        return body

    def _send(self, item: _Item) -> None:
        body = self._body(item)
        try:
            answer = self._post(body)
        except (OSError, ValueError) as exc:  # URLError, HTTPError, timeouts, bad JSON
            self._failed(exc)
            answer = {}
        finally:
            self._last = item
            self._next_at = time.monotonic() + self.settings.interval
        if not answer:
            return
        if answer.get("accepted") is False:
            self._failed(RuntimeError("the report was not accepted"))
        else:
            self._failing = False
        next_seconds = answer.get("next_report_seconds")
        if isinstance(next_seconds, int | float) and next_seconds > self.settings.interval:
            self._next_at = time.monotonic() + float(next_seconds)
        notice = answer.get("notice")
        if isinstance(notice, dict) and notice.get("reason") in NOTICE_REASONS:
            self._on_notice(Notice(str(notice["reason"]), str(notice.get("checkpoint_by", ""))))

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        token = self.settings.token_file.read_text().strip()  # rotated by the kubelet
        request = urllib.request.Request(
            self.settings.url,
            data=json.dumps(body).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        )
        try:
            with urllib.request.urlopen(
                request, timeout=REQUEST_TIMEOUT_SECONDS, context=self._context
            ) as response:
                answer = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode(errors="replace")
            raise OSError(f"HTTP {exc.code} {detail}") from exc
        if not isinstance(answer, dict):
            raise ValueError(f"the answer is not a JSON object: {answer!r}"[:300])
        return answer

    def _failed(self, exc: Exception) -> None:
        if not self._failing:
            self._failing = True
            self._log(
                "warning",
                message=f"report to Shunter failed ({exc}); further failures are not logged"
                " until a report succeeds; training goes on",
            )


def from_environment(
    env: Mapping[str, str] | os._Environ[str],
    *,
    rank: int,
    log: Callable[..., None],
    on_notice: Callable[[Notice], None],
) -> Reporter | None:
    """A Reporter when the operator asked for reports, else None (a bad setting is
    logged, not fatal)."""
    try:
        settings = Settings.from_environment(env)
    except ReportSettingsError as exc:
        log("warning", message=f"reports to Shunter are off: {exc}")
        return None
    if settings is None:
        return None
    return Reporter(settings, rank=rank, log=log, on_notice=on_notice)
