"""A pass does not wait for its writes, on the real control plane.

The operator's own Controller and Actions talk to the real API server; the one thing
injected is a status write held back (a slow API server), which a real server cannot
be made to do on demand. While a write is out, the next pass sees it as done; a write
refused meanwhile (a user's change won) puts the job back to be decided again; a
renumbering not yet sent is replaced by the newer decision and written with it; an
admission decided while a renumbering is being written follows it at once, without
another pass, unless the renumbering was refused.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from shunter.domain.admission import Limits
from shunter.domain.model import Job, JobKey
from shunter.domain.scope import Scope
from shunter.kube import Body, Kube, connect
from shunter.operator.actions import Actions
from shunter.operator.book import JobBook
from shunter.operator.controller import Controller
from shunter.operator.gate import Gate
from shunter.operator.rules import Rules
from shunter.operator.settings import Settings
from tests.support.builders import a_node, a_training_job, gpu_nodes
from tests.support.operator import Jobs
from tests.support.polling import eventually


class HeldActions(Actions):
    """Actions whose status writes for the `held` jobs wait until released; every
    status write is recorded (job name, fields written)."""

    def __init__(self, kube: Kube) -> None:
        super().__init__(kube)
        self.held: dict[str, asyncio.Event] = {}
        self.writes: list[tuple[str, set[str]]] = []

    async def patch_job_status(self, key: JobKey, patch: dict[str, Any], *, version: str) -> Body:
        gate = self.held.get(key.name)
        if gate is not None:
            await gate.wait()
        self.writes.append((key.name, set(patch)))
        return await super().patch_job_status(key, patch, version=version)


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[Kube]:
    client = Kube(connect(kubeconfig))
    yield client
    await client.close()


def a_controller(
    kube: Kube, jobs: list[Job], *, max_running: int
) -> tuple[Controller, HeldActions]:
    """The operator's Controller over a book holding `jobs` (what the informers would
    have listed), writing through HeldActions."""
    rules = Rules(limits=Limits(max_running=max_running))
    settings = Settings(rules=rules, scope=Scope(watched=(jobs[0].key.namespace,)),
                        lease_namespace="default", lease_name="unused", identity="pytest",
                        database_url=None, resync=timedelta(seconds=30),
                        estimates=False)  # fmt: skip
    actions = HeldActions(kube)
    return Controller(actions, JobBook.of(jobs, nodes=gpu_nodes()), settings), actions


def seen(controller: Controller, jobs: Jobs, *names: str) -> None:
    """What the informer would deliver: the jobs as the API server has them now."""
    for name in names:
        controller.book.put_job(Job.parse(jobs.get(name)))


async def until(what: str, check: Callable[[], bool]) -> None:
    async def probe() -> bool:
        return check()

    await eventually(probe, within=20, what=what, interval=0.05)


async def test_the_next_pass_sees_a_write_still_out_as_done(kube: Kube, jobs: Jobs):
    first = Job.parse(jobs.create(a_training_job("first")))
    controller, actions = a_controller(kube, [first], max_running=1)
    actions.held["first"] = asyncio.Event()
    await controller.reconcile_once()  # numbers and admits "first"; that write is held
    assert jobs.status("first") == {}

    second = Job.parse(jobs.create(a_training_job("second")))
    controller.book.put_job(second)
    await controller.reconcile_once()  # returned without the held write
    await until("second numbered", lambda: jobs.status("second").get("sequence") == 2)
    # The held admission counted: the one slot is taken, "second" waits.
    status = jobs.status("second")
    assert (status["phase"], status["queuePosition"]) == ("queued", 1)
    assert jobs.status("first") == {}
    assert jobs.pod_names() == []

    actions.held["first"].set()
    await controller.settled()
    assert jobs.status("first")["phase"] == "starting"
    assert jobs.pod_names() == ["first-trainer"]


async def test_a_write_refused_meanwhile_puts_the_job_back_to_be_decided_again(
    kube: Kube, jobs: Jobs
):
    a = Job.parse(jobs.create(a_training_job("a")))
    b = Job.parse(jobs.create(a_training_job("b")))
    controller, actions = a_controller(kube, [a, b], max_running=1)
    actions.held["a"] = asyncio.Event()
    await controller.reconcile_once()  # admits "a" (held); "b" waits behind it
    assert JobKey(a.key.namespace, "a") in controller.book.active

    jobs.cancel("a")  # the user's cancel reaches the API server first
    seen(controller, jobs, "a")
    actions.held["a"].set()
    await controller.settled()  # the admission meets a 409: "a" is queued again
    assert a.key not in controller.book.active
    assert controller.conflicts == 1

    seen(controller, jobs, "a")  # the watch's view of the cancel, decided again
    await controller.reconcile_once()
    await controller.settled()
    assert jobs.status("a")["phase"] == "cancelled"
    # The slot the refused admission had taken is free again: "b" starts.
    await controller.reconcile_once()
    await controller.settled()
    assert jobs.status("b")["phase"] == "starting"
    assert jobs.pod_names() == ["b-trainer"]


async def test_a_renumbering_not_yet_sent_is_written_with_the_newer_decision(
    kube: Kube, jobs: Jobs
):
    blocker = Job.parse(jobs.create(a_training_job("blocker").cancelled()))
    controller, actions = a_controller(kube, [blocker], max_running=1)
    controller._gate = Gate(1)  # one write at a time
    actions.held["blocker"] = asyncio.Event()
    await controller.reconcile_once()  # the cancel's write holds the only slot

    # "new" needs a node of a pool that has none yet: numbered, not admitted, and
    # that write waits behind the cancel's.
    new = Job.parse(jobs.create(a_training_job("new").with_spec(
        nodeSelector={"shunter.dev/node-pool": "later"})))  # fmt: skip
    controller.book.put_job(new)
    await controller.reconcile_once()
    assert controller.book.jobs[new.key].status.sequence is not None

    # A node of that pool appears (what the node informer delivers): the next
    # pass admits "new" before its number was even sent.
    controller.book.put_node(a_node("later-0", labels={"shunter.dev/node-pool": "later"}))
    controller.wake()
    await controller.reconcile_once()
    assert new.key in controller.book.active
    actions.held["blocker"].set()
    await controller.settled()

    assert jobs.status("blocker")["phase"] == "cancelled"
    status = jobs.status("new")
    assert status["phase"] == "starting"
    assert status["placement"] == ["later-0"]
    new_writes = [fields for name, fields in actions.writes if name == "new"]
    assert len(new_writes) == 1, new_writes  # numbered and admitted in one write
    assert {"sequence", "phase"} <= new_writes[0]
    assert jobs.pod_names() == ["new-trainer"]


async def _numbered_then_admitted(kube: Kube, jobs: Jobs) -> tuple[Controller, HeldActions, Job]:
    """A job waiting for a pool with no node: its number is being written (held) when
    a node of that pool appears and the next pass admits it."""
    new = Job.parse(jobs.create(a_training_job("new").with_spec(
        nodeSelector={"shunter.dev/node-pool": "later"})))  # fmt: skip
    controller, actions = a_controller(kube, [new], max_running=1)
    actions.held["new"] = asyncio.Event()
    await controller.reconcile_once()  # numbers "new"; that write is held
    await until("the number sent", lambda: controller._flights[new.key].sent)
    controller.book.put_node(a_node("later-0", labels={"shunter.dev/node-pool": "later"}))
    controller.wake()
    await controller.reconcile_once()
    assert new.key in controller.book.active  # the admission counts at once
    return controller, actions, new


async def test_an_admission_follows_a_renumbering_being_written_without_another_pass(
    kube: Kube, jobs: Jobs
):
    controller, actions, _ = await _numbered_then_admitted(kube, jobs)
    passes = controller.passes
    actions.held["new"].set()
    await controller.settled()  # the number lands, and the admission goes right after

    assert controller.passes == passes
    status = jobs.status("new")
    assert (status["phase"], status["placement"]) == ("starting", ["later-0"])
    assert jobs.pod_names() == ["new-trainer"]
    written = [fields for name, fields in actions.writes if name == "new"]
    assert len(written) == 2, written  # the number, then the admission on its version
    assert "sequence" in written[0]
    assert "placement" not in written[0]
    assert "placement" in written[1]
    assert controller.conflicts == 0


async def test_an_admission_waiting_on_a_refused_renumbering_is_decided_again(
    kube: Kube, jobs: Jobs
):
    controller, actions, new = await _numbered_then_admitted(kube, jobs)
    jobs.cancel("new")  # the user's cancel reaches the API server first
    seen(controller, jobs, "new")
    actions.held["new"].set()
    await controller.settled()  # the number meets a 409; the admission is not sent
    assert controller.conflicts == 1
    assert jobs.pod_names() == []
    assert new.key not in controller.book.active

    await controller.reconcile_once()  # decided again, from the cancelled version
    await controller.settled()
    assert jobs.status("new")["phase"] == "cancelled"
    assert jobs.pod_names() == []
