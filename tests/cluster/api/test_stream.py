"""GET /stream: the job list pushed by server-sent events from the watch cache.

A client reads the stream while another submits and cancels: each change arrives as a
new `live` event (with the server's order and actions), the watched job's detail as
`job` events, and a closed stream is noticed by the server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from tests.support.api import ApiProcess
from tests.support.operator import OperatorProcess
from tests.support.polling import wait_for

LONG = {"pod_annotations": {"sim.shunter.dev/run-for": "600s"}}


def events_of(lines: Iterator[str]) -> Iterator[tuple[str, Any]]:
    """(event, parsed data) of a text/event-stream; comments (heartbeats) are skipped."""
    event, data = "message", []
    for line in lines:
        if line == "":
            if data:
                yield event, json.loads("\n".join(data))
            event, data = "message", []
        elif line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data.append(line[5:].strip())


def until(
    stream: Iterator[tuple[str, Any]], kind: str, predicate: Callable[[Any], bool], timeout: float
) -> Any:
    deadline = time.monotonic() + timeout
    for event, data in stream:
        if event == kind and predicate(data):
            return data
        if time.monotonic() > deadline:
            break
    raise AssertionError(f"no {kind} event as expected within {timeout}s")


def open_streams(http: httpx.Client) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("shunter_api_open_streams "):
            return float(line.split()[1])
    raise AssertionError("no shunter_api_open_streams metric")


def statuses(live: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    return {i["job_id"]: (i["status"], i["actions"]) for i in live["items"]}


def test_changes_are_pushed_in_the_servers_order_with_its_actions(
    start_operator: Callable[..., OperatorProcess], start_api: Callable[..., ApiProcess]
):
    start_operator()
    api = start_api()
    with api.client() as http, httpx.Client(base_url=api.base_url, timeout=30) as reader:
        with reader.stream("GET", "/api/training/stream", params={"job": "first"}) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = events_of(response.iter_lines())
            empty = until(stream, "live", lambda _: True, timeout=10)
            assert (empty["count"], empty["items"]) == (0, [])
            assert until(stream, "job", lambda _: True, timeout=10) == {"job": None, "events": []}
            assert open_streams(http) == 1

            submitted = time.monotonic()
            for name in ("first", "second"):
                body = {"name": name, **LONG}
                assert http.post("/api/training/submit", json=body).status_code == 201
            live = until(
                stream, "live",
                lambda d: [s for s, _ in statuses(d).values()] == ["running", "queued"]
                and d["items"][1]["queue_position"] == 1,  # numbered by the operator
                timeout=20,
            )  # fmt: skip
            print(f"first running, second queued: pushed {time.monotonic() - submitted:.2f}s after")
            assert [i["job_id"] for i in live["items"]] == ["first", "second"]  # server order
            assert statuses(live) == {"first": ("running", ["suspend", "cancel"]),
                                      "second": ("queued", ["suspend", "cancel"])}  # fmt: skip

            assert http.post("/api/training/cancel/first").status_code == 200
            live = until(
                stream, "live", lambda d: statuses(d)["first"][0] == "cancelled", timeout=20
            )
            assert statuses(live)["first"] == ("cancelled", [])  # nothing left to do
            detail = until(
                stream, "job",
                lambda d: any(e["reason"] == "Cancelled" for e in d["events"]), timeout=20,
            )  # fmt: skip
            assert detail["job"]["status"] == "cancelled"
            assert detail["job"]["cancelled_by"] == "demo (auth disabled)"
        # The reader hung up: the server notices and lets the stream go.
        wait_for(lambda: open_streams(http) == 0, timeout=20, what="the closed stream to end")
