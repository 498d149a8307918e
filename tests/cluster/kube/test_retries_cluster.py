"""The real API server answering 429: API priority and fairness rejecting a user.

A PriorityLevelConfiguration with no seats of its own and none to borrow, rejecting
what it cannot seat, and a FlowSchema sending one ServiceAccount's requests there;
while one request of that account is executing (`HeldSeat`), every other is refused
with 429 and Retry-After before it runs. No mock: the refusals are the API server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from kubernetes import client

from shunter.devcluster.accounts import account_with_role
from shunter.kube import Kube, NotFound, TooManyRequests, connect, retries
from shunter.kube.client import REQUEST_TIMEOUT
from shunter.kube.resources import Resource
from tests.support.kubeconfigs import kube_as
from tests.support.polling import eventually

CONFIG_MAPS = Resource("", "v1", "configmaps")
SERVICE_ACCOUNTS = Resource("", "v1", "serviceaccounts")
FLOW_SCHEMAS = Resource("flowcontrol.apiserver.k8s.io", "v1", "flowschemas", namespaced=False)
PRIORITY_LEVELS = Resource(
    "flowcontrol.apiserver.k8s.io", "v1", "prioritylevelconfigurations", namespaced=False
)


def no_seats(name: str) -> dict[str, object]:
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name},
        "spec": {"type": "Limited", "limited": {
            "nominalConcurrencyShares": 0, "lendablePercent": 0, "borrowingLimitPercent": 0,
            "limitResponse": {"type": "Reject"},
        }},
    }  # fmt: skip


def flow_schema(name: str, namespace: str, account: str) -> dict[str, object]:
    return {
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": {
            "priorityLevelConfiguration": {"name": name},
            "matchingPrecedence": 500,  # before every default schema but "exempt"
            "distinguisherMethod": {"type": "ByUser"},
            "rules": [{
                "subjects": [{"kind": "ServiceAccount",
                              "serviceAccount": {"name": account, "namespace": namespace}}],
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"],
                                   "namespaces": ["*"], "clusterScope": True}],
            }],
        },
    }  # fmt: skip


def ten_megabytes() -> list[dict[str, object]]:
    return [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"big-{n}"},
             "data": {"x": "a" * 1_000_000}} for n in range(10)]  # fmt: skip


class HeldSeat:
    """A request of the account that keeps executing: a list of ten megabytes asked for
    over a socket whose answer is never read. The server's write blocks once the
    buffers are full, so the request holds its priority level until the socket closes;
    with no seats, that level rejects every other request meanwhile (a level with no
    request executing lets one through however few seats it has)."""

    def __init__(self, server: str, ca: bytes, token: str, path: str) -> None:
        parts = urlsplit(server)
        raw = socket.create_connection((parts.hostname, parts.port))
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        context = ssl.create_default_context(cadata=ca.decode())
        self._socket = context.wrap_socket(raw, server_hostname=parts.hostname)
        self._socket.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nAccept: application/json\r\n"
            f"Authorization: Bearer {token}\r\n\r\n".encode()
        )

    def seated(self) -> bool:
        """Whether the request is executing: its answer began with 200. (A 429 means it
        came while another request of the account held the level, and holds nothing.)"""
        self._socket.settimeout(30)
        return self._socket.recv(64).startswith(b"HTTP/1.1 200")

    def release(self) -> None:
        self._socket.close()


@dataclass
class Throttled:
    kube: Kube  # as the ServiceAccount "busy"
    admin: Kube
    namespace: str
    hold: Callable[[], HeldSeat]

    async def refused_now(self) -> bool:
        """One attempt (its timeout leaves no room for a retry) refused with 429."""
        path = SERVICE_ACCOUNTS.path(namespace=self.namespace, name="busy")
        try:
            await self.kube.request("GET", path, what="probe", seconds=0.5)
        except TooManyRequests:
            return True
        return False


def cluster_ca(kubeconfig: Path) -> bytes:
    config = yaml.safe_load(kubeconfig.read_text())
    return Path(config["clusters"][0]["cluster"]["certificate-authority"]).read_bytes()


@pytest.fixture
async def throttled(
    kubeconfig: Path, kube_api: client.ApiClient, namespace: str, tmp_path: Path
) -> AsyncIterator[Throttled]:
    """The ServiceAccount "busy" (may edit the namespace) sent to a priority level of
    no seats that rejects what it cannot seat; ten megabytes of ConfigMaps to list."""
    token = account_with_role(kube_api, namespace, "busy", "edit")
    kube = kube_as(kubeconfig, tmp_path / "config", user={"token": token})
    admin = Kube(connect(kubeconfig))
    name = f"shunter-test-{namespace}"
    held: list[HeldSeat] = []

    ca = cluster_ca(kubeconfig)

    def hold() -> HeldSeat:
        """A seat held: tried again while the level was busy with another request of
        the account (a probe still executing, on a loaded machine)."""
        deadline = time.monotonic() + 30
        while True:
            seat = HeldSeat(kube.connection.server, ca, token,
                            CONFIG_MAPS.path(namespace=namespace))  # fmt: skip
            held.append(seat)
            if seat.seated():
                return seat
            seat.release()
            assert time.monotonic() < deadline, "no seat held in 30 s: every try refused"

    async def classified(uid: str) -> bool:
        """The API server's flow control has taken up the new FlowSchema: it names it
        in the answer to a request of the account (until then, such a request goes to
        a default level, and a seat held there would leave ours empty)."""
        context = ssl.create_default_context(cadata=ca.decode())
        async with httpx.AsyncClient(verify=context) as http:
            answer = await http.get(
                kube.connection.server + SERVICE_ACCOUNTS.path(namespace=namespace, name="busy"),
                headers={"Authorization": f"Bearer {token}"},
            )
        return answer.headers.get("X-Kubernetes-PF-FlowSchema-UID") == uid

    try:
        for body in ten_megabytes():
            await admin.create(CONFIG_MAPS, body, namespace=namespace)
        await admin.create(PRIORITY_LEVELS, no_seats(name))
        schema = await admin.create(FLOW_SCHEMAS, flow_schema(name, namespace, "busy"))
        uid = str(schema["metadata"]["uid"])
        await eventually(lambda: classified(uid), within=30, what="the new FlowSchema in use")
        yield Throttled(kube, admin, namespace, hold)
    finally:
        for seat in held:
            seat.release()
        for resource in (FLOW_SCHEMAS, PRIORITY_LEVELS):
            with contextlib.suppress(NotFound):
                await admin.delete(resource, name)
        await kube.close()
        await admin.close()


async def test_reads_are_retried_as_retry_after_says_then_the_429_stands(
    throttled: Throttled, caplog: pytest.LogCaptureFixture
):
    throttled.hold()
    await eventually(throttled.refused_now, within=30, what="429s")
    caplog.set_level(logging.INFO, logger="shunter.kube")
    started = time.monotonic()
    with pytest.raises(TooManyRequests) as refused:
        await throttled.kube.get(SERVICE_ACCOUNTS, "busy", namespace=throttled.namespace)
    spent = time.monotonic() - started
    found = re.search(r"\((\d+) attempts in", str(refused.value))
    assert found is not None, str(refused.value)
    assert int(found[1]) == retries.MAX_ATTEMPTS
    waits = [float(m[1]) for r in caplog.records
             if (m := re.search(r"again in ([\d.]+)s", r.getMessage()))]  # fmt: skip
    assert len(waits) == retries.MAX_ATTEMPTS - 1
    # Each wait was the server's Retry-After (whole seconds), not a backoff of our own.
    assert all(w >= 1 and w == round(w) for w in waits), waits
    assert sum(waits) <= spent < REQUEST_TIMEOUT


async def test_a_refused_write_is_sent_again_and_done_once(
    throttled: Throttled, caplog: pytest.LogCaptureFixture
):
    seat = throttled.hold()
    await eventually(throttled.refused_now, within=30, what="429s")
    caplog.set_level(logging.INFO, logger="shunter.kube")
    body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "once"}}
    writing = asyncio.create_task(
        throttled.kube.create(CONFIG_MAPS, body, namespace=throttled.namespace)
    )

    async def retried() -> bool:
        return any("again in" in r.getMessage() for r in caplog.records)

    await eventually(retried, within=20, what="a 429 answered and a retry planned")
    assert not writing.done()
    seat.release()
    created = await asyncio.wait_for(writing, 60)
    assert created["metadata"]["name"] == "once"
    found = await throttled.admin.get(CONFIG_MAPS, "once", namespace=throttled.namespace)
    assert found["metadata"]["uid"] == created["metadata"]["uid"]
