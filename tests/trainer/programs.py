"""Library users as subprocesses of the trainer venv, and a Shunter report endpoint.

`Program` runs one of trainer-image/examples (a plain loop, a Transformers Trainer, a
Lightning fit: each adopted shunter_trainer in a few marked lines) as a Pod would, with
trainer-image on PYTHONPATH and the Hugging Face libraries offline, and reads back its
JSON log lines. `ReportServer` is Shunter's `/api/trainer/v1/report` as the protocol
says (trainer-image/README.md): a real HTTP server on localhost that records every
report and answers with what the test decides, so the client is tested against the
real wire format, not a stub of it.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.trainer.runs import TRAINER_DIR

EXAMPLES = TRAINER_DIR / "examples"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


class Program:
    def __init__(
        self, python: str, workdir: Path, script: str, *args: str, env: dict[str, str] | None = None
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.log_path = workdir / f"log-{time.monotonic_ns()}.jsonl"
        base = {k: v for k, v in os.environ.items() if not k.startswith("SHUNTER_")}
        full_env = {
            **base,
            **OFFLINE,
            "PYTHONPATH": str(TRAINER_DIR),
            "HF_HOME": str(workdir / "hf-home"),
            **(env or {}),
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [python, str(EXAMPLES / script), *args],
                cwd=workdir,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=full_env,
            )

    def output(self) -> str:
        return self.log_path.read_text()

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        lines = self.output().splitlines()
        parsed = [json.loads(line) for line in lines if line.startswith('{"event"')]
        return [e for e in parsed if kind is None or e["event"] == kind]

    def signal(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 180) -> int:
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Received:
    at: float  # monotonic
    token: str
    body: dict[str, Any]


@dataclass
class ReportServer:
    answer: Callable[[dict[str, Any]], dict[str, Any]] = lambda _body: {"accepted": True}
    received: list[Received] = field(default_factory=list)
    url: str = ""

    def env(self, token_file: Path, **extra: str) -> dict[str, str]:
        return {
            "SHUNTER_REPORT_URL": self.url,
            "SHUNTER_REPORT_TOKEN_FILE": str(token_file),
            "SHUNTER_JOB_UID": "uid-1",
            "SHUNTER_ATTEMPT": "2",
            **extra,
        }

    def bodies(self) -> list[dict[str, Any]]:
        return [r.body for r in self.received]


@contextlib.contextmanager
def report_server() -> Iterator[ReportServer]:
    server_state = ReportServer()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            if self.path != "/api/trainer/v1/report":
                self.send_error(404)
                return
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            token = self.headers.get("Authorization", "").removeprefix("Bearer ")
            server_state.received.append(Received(time.monotonic(), token, body))
            data = json.dumps(server_state.answer(body)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.url = f"http://127.0.0.1:{server.server_port}/api/trainer/v1/report"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        server.shutdown()
        server.server_close()
