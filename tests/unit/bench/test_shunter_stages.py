"""The stages of bench.shunter_stages read from the API server's audit log
(shunter.devcluster.audit): which write is which stage."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from bench.shunter_stages import SERVER_LAGS, lags, server_stages

from shunter.devcluster.audit import parse

OPERATOR = "shunter-operator/bench"


def line(verb: str, resource: str, name: str, agent: str, at: float, *, code: int = 200,
         took: float = 0.01, namespace: str = "bench",
         stage: str = "ResponseComplete") -> str:  # fmt: skip
    kind, _, sub = resource.partition("/")

    def stamp(t: float) -> str:
        return datetime.fromtimestamp(1_800_000_000 + t, UTC).isoformat().replace("+00:00", "Z")

    return json.dumps({
        "kind": "Event", "stage": stage, "verb": verb, "userAgent": agent,
        "objectRef": {"resource": kind, "subresource": sub, "namespace": namespace, "name": name},
        "responseStatus": {"code": code},
        "requestReceivedTimestamp": stamp(at - took), "stageTimestamp": stamp(at),
    })  # fmt: skip


def history() -> list[str]:
    """One job's life as the server finished its writes, with writes that are no stage."""
    return [
        line("create", "trainingjobs", "j1", "Python/3.11 aiohttp/3.14.5", 0.5, code=201),
        line("patch", "trainingjobs/status", "j1", OPERATOR, 1.0),  # numbered
        line("patch", "trainingjobs/status", "j1", OPERATOR, 1.1),  # starting
        line("patch", "trainingjobs/status", "j1", OPERATOR, 1.15, code=409),  # refused
        line("create", "pods", "j1-trainer", OPERATOR, 1.25, code=201),
        line("create", "pods/binding", "j1-trainer", "kube-scheduler/v1.36.3", 1.4, code=201),
        line("patch", "pods/status", "j1-trainer", "kwok/v0.8.0", 1.6),  # Running
        line("patch", "trainingjobs/status", "j1", OPERATOR, 1.7),  # running
        line("patch", "pods/status", "j1-trainer", "kwok/v0.8.0", 2.6),  # Succeeded
        line("patch", "trainingjobs/status", "j1", OPERATOR, 2.9),  # completed
        line("patch", "trainingjobs/status", "j1", OPERATOR, 2.95, stage="ResponseStarted"),
        line("patch", "trainingjobs/status", "j2", OPERATOR, 3.0, namespace="other"),
        '{"kind": "Event", "verb": "pat',  # cut by a reading's offset
    ]


def test_each_stage_is_the_write_that_made_it_by_the_servers_clock() -> None:
    found = parse(history(), namespace="bench")
    assert [w.completed for w in found] == sorted(w.completed for w in found)
    assert {w.who for w in found} == {"api", "operator", "kube-scheduler", "kwok"}
    stages = server_stages(found)
    assert list(stages) == ["j1"]
    at = {k: round(v - 1_800_000_000, 3) for k, v in stages["j1"].items()}
    assert at == {"job_starting": 1.1, "pod_created_sent": 1.24, "pod_created": 1.25,
                  "bound": 1.4, "running": 1.6, "succeeded": 2.6, "job_completed_sent": 2.89,
                  "job_completed": 2.9}  # fmt: skip
    got = lags(stages, SERVER_LAGS)
    assert got["succeeded -> job_completed"]["p50"] == pytest.approx(0.3)
    assert got["succeeded -> job_completed_sent"]["p50"] == pytest.approx(0.29)
    assert got["job_starting -> pod_created"]["p50"] == pytest.approx(0.15)


def test_a_pod_not_yet_finished_has_no_completion() -> None:
    stages = server_stages(parse(history()[:8]))
    assert "succeeded" not in stages["j1"]
    assert "job_completed" not in stages["j1"]
    assert stages["j1"]["running"] - 1_800_000_000 == pytest.approx(1.6)
