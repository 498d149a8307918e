"""Credentials: exec plugins (a real process), files re-read, one load at a time.

Without a cluster: what is loaded and when. Against the real API server (rotated and
revoked tokens, an exec plugin's token expiring, a rotated client certificate): see
test_credentials_cluster.py."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from shunter.kube.credentials import Credentials, ExecPlugin, Source
from shunter.kube.errors import Unauthorized
from tests.support.kubeconfigs import EXEC_V1, exec_plugin, plugin_runs

V1 = EXEC_V1


def plugin(tmp_path: Path, **env: str) -> tuple[ExecPlugin, Path]:
    log = tmp_path / "runs.log"
    settings = {"PLUGIN_LOG": str(log), **env}
    return ExecPlugin(str(exec_plugin(tmp_path)), V1, env=tuple(settings.items())), log


def test_an_exec_plugin_is_run_with_the_request_and_its_answer_parsed(tmp_path: Path):
    (tmp_path / "token").write_text("abc\n")
    (tmp_path / "tls.crt").write_text("CERT")
    (tmp_path / "tls.key").write_text("KEY")
    run, log = plugin(tmp_path, PLUGIN_TOKEN_FILE=str(tmp_path / "token"),
                      PLUGIN_CERT=str(tmp_path / "tls.crt"), PLUGIN_KEY=str(tmp_path / "tls.key"),
                      PLUGIN_EXPIRES_IN="60")  # fmt: skip
    credential = run.run()
    assert credential.authorization == "Bearer abc"
    assert credential.certificate == (b"CERT", b"KEY")
    assert credential.expires is not None
    assert timedelta(0) < credential.expires - datetime.now(UTC) <= timedelta(seconds=61)
    request = json.loads(log.read_text())
    assert request == {"apiVersion": V1, "kind": "ExecCredential", "spec": {"interactive": False}}


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        ({"apiVersion": "client.authentication.k8s.io/v1beta1", "kind": "ExecCredential",
          "status": {"token": "t"}}, "not an ExecCredential of"),
        ({"apiVersion": V1, "kind": "ExecCredential", "status": {}}, "neither a token"),
        ({"apiVersion": V1, "kind": "ExecCredential", "status": {"clientCertificateData": "C"}},
         "go together"),
        ({"apiVersion": V1, "kind": "ExecCredential"}, "status"),
        ({"apiVersion": V1, "kind": "ExecCredential",
          "status": {"token": "t", "expirationTimestamp": "tomorrow"}}, "unusable"),
    ],
)  # fmt: skip
def test_an_unusable_answer_is_refused_saying_why(answer: dict[str, object], message: str):
    with pytest.raises(Unauthorized, match=message):
        ExecPlugin("p", V1).parse(json.dumps(answer).encode())


def test_a_failing_plugin_reports_its_stderr(tmp_path: Path):
    script = tmp_path / "fail"
    script.write_text("#!/bin/sh\necho 'log in first: run cloud-login' >&2\nexit 3\n")
    script.chmod(0o755)
    with pytest.raises(Unauthorized, match="exit status 3: log in first"):
        ExecPlugin(str(script), V1).run()
    with pytest.raises(Unauthorized, match="needs a terminal"):
        ExecPlugin(str(script), V1, interactive_mode="Always").run()
    with pytest.raises(Unauthorized, match="No such file"):
        ExecPlugin(str(tmp_path / "absent"), V1).run()


async def test_files_are_kept_between_rechecks_and_reloaded_after_a_refusal(tmp_path: Path):
    token = tmp_path / "token"
    token.write_text("one")
    credentials = Credentials(Source(token_file=token), recheck_seconds=3600)
    first = await credentials.current()
    token.write_text("two")
    assert await credentials.current() is first  # fresh: not read again
    refused = await credentials.reload(first)
    assert refused.authorization == "Bearer two"
    # A caller refused with the old one later finds the reload done: no second read.
    token.write_text("three")
    assert await credentials.reload(first) is refused
    credentials.recheck_seconds = 0
    assert (await credentials.current()).authorization == "Bearer three"


async def test_an_exec_credential_is_kept_until_it_expires_and_run_once_at_a_time(
    tmp_path: Path,
):
    (tmp_path / "token").write_text("t")
    run, log = plugin(tmp_path, PLUGIN_TOKEN_FILE=str(tmp_path / "token"),
                      PLUGIN_EXPIRES_IN="3600")  # fmt: skip
    credentials = Credentials(Source(exec_plugin=run))
    results = await asyncio.gather(*(credentials.current() for _ in range(5)))
    assert plugin_runs(log) == 1
    assert len({id(r) for r in results}) == 1
    await credentials.current()
    assert plugin_runs(log) == 1
    (tmp_path / "expiring").mkdir()
    expiring, log = plugin(tmp_path / "expiring", PLUGIN_TOKEN_FILE=str(tmp_path / "token"),
                           PLUGIN_EXPIRES_IN="-1")  # fmt: skip
    credentials = Credentials(Source(exec_plugin=expiring))
    await credentials.current()
    await credentials.current()
    assert plugin_runs(log) == 2  # expired at once: run again for each use


async def test_a_slow_plugin_does_not_hold_up_the_event_loop(tmp_path: Path):
    script = tmp_path / "slow"
    answer = json.dumps({"apiVersion": V1, "kind": "ExecCredential", "status": {"token": "t"}})
    script.write_text(f"#!/bin/sh\nsleep 1\necho '{answer}'\n")
    script.chmod(0o755)
    credentials = Credentials(Source(exec_plugin=ExecPlugin(str(script), V1)))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    try:
        assert (await credentials.current()).authorization == "Bearer t"
    finally:
        ticker.cancel()
    assert ticks >= 10  # the loop went on for the second the plugin took
