"""Red team: the API under abuse, on the real control plane with real tokens.

The attacker is a ServiceAccount with only the chart's editor role in the test's
namespace (or no token at all). Each attempt is refused with a clear JSON message,
nothing is created or changed, and the legitimate path still works afterwards.

A followed log cannot be held open here (kwok's nodes run no process: the follow
answers its one line and ends), so "revoked during a followed log" is shown on GET
/stream, which is held open the same way and supervised by the same code
(shunter.api.quotas.supervised; the follow's own bounds are unit-tested in
tests/unit/api/test_quotas.py).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable

import pytest
from kubernetes import client

from shunter.devcluster.accounts import account_with_role
from shunter.domain.model import GROUP, PLURAL, VERSION
from tests.cluster.api.test_stream import events_of
from tests.support.api import ApiProcess
from tests.support.builders import a_training_job
from tests.support.kube import EDITOR
from tests.support.operator import Jobs
from tests.support.polling import wait_for

SUBMIT = {"pod_annotations": {"sim.shunter.dev/run-for": "600s"}}
FIFTY_MB = 50 * 1024 * 1024


def job_names(kube_api: client.ApiClient, namespace: str) -> list[str]:
    listing = client.CustomObjectsApi(kube_api).list_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL
    )
    return sorted(item["metadata"]["name"] for item in listing["items"])


def raw_request(api: ApiProcess, head: str, first_bytes: bytes) -> tuple[int, dict[str, object]]:
    """Send a request's head and only the first bytes of its body, then read the
    answer: an answer at all proves the server did not wait for (or read) the rest."""
    with socket.create_connection(("127.0.0.1", api.port), timeout=10) as conn:
        conn.sendall(head.replace("\n", "\r\n").encode() + b"\r\n" + first_bytes)
        received = b""
        while b"\r\n\r\n" not in received:
            received += conn.recv(65536)
        header, _, body = received.partition(b"\r\n\r\n")
        length = int(next(line.split(b":")[1] for line in header.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))  # fmt: skip
        while len(body) < length:
            body += conn.recv(65536)
    status = int(header.split(b" ")[1])
    return status, json.loads(body)


@pytest.fixture
def secured(start_api: Callable[..., ApiProcess], user_roles: list[str]) -> ApiProcess:
    return start_api(
        SHUNTER_API_AUTH="kubernetes",
        SHUNTER_API_STREAMS_PER_USER="2",
        SHUNTER_API_REAUTHORIZE_SECONDS="1",
    )


@pytest.fixture
def editor(kube_api: client.ApiClient, namespace: str, user_roles: list[str]) -> str:
    return account_with_role(kube_api, namespace, "attacker", EDITOR)


def test_a_50_mb_body_is_refused_unread_with_or_without_a_token(
    secured: ApiProcess, editor: str, kube_api: client.ApiClient, namespace: str
):
    head = (
        "POST /api/training/submit HTTP/1.1\nHost: 127.0.0.1\n"
        f"Content-Type: application/json\nContent-Length: {FIFTY_MB}\n"
    )
    for authorization in ("", f"Authorization: Bearer {editor}\n"):
        status, body = raw_request(secured, head + authorization, b'{"name": "huge", ')
        assert (status, body) == (
            413, {"success": False, "message": "Request body too large: at most 262144 bytes"}
        )  # fmt: skip

    chunked = (
        "POST /api/training/submit HTTP/1.1\nHost: 127.0.0.1\n"
        "Content-Type: application/json\nTransfer-Encoding: chunked\n"
    )
    status, body = raw_request(secured, chunked, b'100000\r\n{"name": "huge", ')
    assert status == 401  # no token: refused before a byte of the body is read
    assert str(body["message"]).startswith("Missing bearer token")

    with secured.client() as anonymous:
        invalid = anonymous.post(
            "/api/training/submit", content=b"{not json",
            headers={"Content-Type": "application/json"},
        )  # fmt: skip
        assert invalid.status_code == 401  # not 422: nothing parsed for a stranger
    assert job_names(kube_api, namespace) == []

    with secured.client(editor) as legit:
        created = legit.post("/api/training/submit", json={"name": "fine", **SUBMIT})
        assert created.status_code == 201, created.text
    assert job_names(kube_api, namespace) == ["fine"]


def test_more_streams_than_the_cap_are_refused(
    secured: ApiProcess, editor: str, kube_api: client.ApiClient, namespace: str
):
    other = account_with_role(kube_api, namespace, "colleague", EDITOR)
    with secured.client(editor) as attacker, secured.client(other) as colleague:
        with (
            attacker.stream("GET", "/api/training/stream") as one,
            attacker.stream("GET", "/api/training/stream") as two,
        ):
            assert (one.status_code, two.status_code) == (200, 200)
            refused = attacker.get("/api/training/stream")
            assert refused.status_code == 429
            assert refused.json() == {
                "success": False,
                "message": f"User 'system:serviceaccount:{namespace}:attacker' already has 2"
                " open streams, the most allowed: close one first",
            }
            with colleague.stream("GET", "/api/training/stream") as theirs:
                assert theirs.status_code == 200  # the cap is per user
            assert attacker.get("/api/training/queue").status_code == 200

        def reopened() -> bool:
            with attacker.stream("GET", "/api/training/stream") as again:
                return again.status_code == 200

        wait_for(reopened, timeout=30, what="the closed streams' places to be given back")


def test_a_revoked_rolebinding_ends_an_open_stream(
    secured: ApiProcess, editor: str, kube_api: client.ApiClient, namespace: str
):
    rbac = client.RbacAuthorizationV1Api(kube_api)
    with secured.client(editor) as attacker:
        with attacker.stream("GET", "/api/training/stream") as response:
            assert response.status_code == 200
            stream = events_of(response.iter_lines())
            assert next(stream)[0] == "live"
            rbac.delete_namespaced_role_binding("attacker", namespace)
            # The permission's cached answer (10 s) expires, the next check refuses.
            last = next(event for event in stream if event[0] != "live")
        assert last == (
            "end",
            {
                "message": "No longer allowed: User"
                f" 'system:serviceaccount:{namespace}:attacker' may not list trainingjobs"
                f" in namespace {namespace!r}"
            },
        )
        denied = attacker.get("/api/training/stream")
        assert denied.status_code == 403
        assert "may not list trainingjobs" in denied.json()["message"]
        assert attacker.post("/api/training/submit", json=SUBMIT).status_code == 403
    assert job_names(kube_api, namespace) == []


def test_with_auth_off_a_cross_site_form_post_cannot_cancel(
    start_api: Callable[..., ApiProcess], jobs: Jobs
):
    api = start_api(SHUNTER_API_CANCEL_WAIT_SECONDS="0")  # auth off; no operator to wait for
    jobs.create(a_training_job("victim"))
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    with api.client() as browser:
        for foreign in ({"Origin": "https://evil.example"}, {"Host": "evil.example"}):
            refused = browser.post("/api/training/cancel/victim", content=b"a=1",
                                   headers={**form, **foreign})  # fmt: skip
            assert refused.status_code == 403
            assert refused.json()["message"].startswith("Auth is off on this server: only")
        assert not jobs.get("victim")["spec"].get("cancelled")
        same_origin = browser.post("/api/training/cancel/victim", headers={"Origin": api.base_url})
        assert same_origin.status_code == 200, same_origin.text
    assert jobs.get("victim")["spec"]["cancelled"] is True
