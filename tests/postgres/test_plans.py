"""The kept plan through PostgreSQL: the operator publishes it in two parts (queue_plan),
the API reads the estimates of each new version and the timeline only when a what-if
asks (shunter.api.plans)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg

from shunter.api.history import History
from shunter.api.plans import Plans
from shunter.devcluster.postgres import LocalPostgres
from shunter.domain.admission import Limits
from shunter.domain.estimates import Learned, Plan, World, plan, replan
from shunter.domain.model import Job, format_time
from shunter.operator.mirror import Mirror
from shunter.operator.planner import Publisher
from tests.support.builders import a_node, a_training_job
from tests.support.polling import wait_for

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def queued(name: str, sequence: int) -> Job:
    builder = a_training_job(name).with_gpus(8).created_at(T0 + timedelta(seconds=sequence))
    return builder.with_spec(maxRuntimeSeconds=600).in_phase("queued", sequence=sequence).job()


def published(url: str, scope: str = "*") -> datetime | None:
    with psycopg.connect(url, autocommit=True) as conn:
        try:
            row = conn.execute("SELECT computed_at FROM queue_plan WHERE scope = %s",
                               (scope,)).fetchone()  # fmt: skip
        except psycopg.errors.UndefinedTable:  # the mirror has not migrated yet
            return None
    return row[0] if row else None


async def publish(publisher: Publisher, url: str, kept: Plan) -> None:
    """As the planner publishes (its own connection, tried again with the next plan
    while the mirror has not created the table yet)."""

    def written() -> bool:
        publisher.publish(kept)
        return published(url, publisher.scope) == kept.version

    await asyncio.to_thread(wait_for, written, timeout=20, what="the plan in queue_plan")


async def test_the_api_reads_each_version_and_the_timeline_only_for_a_what_if(
    own_postgres: LocalPostgres,
) -> None:
    url = own_postgres.url
    holder = (a_training_job("holder").with_gpus(8).created_at(T0)
              .with_spec(maxRuntimeSeconds=3600)
              .in_phase("running", admittedAt=format_time(T0), runningSince=format_time(T0),
                        placement=["n0"]).job())  # fmt: skip
    world = World(now=T0, limits=Limits(max_running=10), queues={},
                  nodes=[a_node("n0", gpus=8)], foreign=[], active=[holder],
                  waiting=[queued("a", 1), queued("b", 2)])  # fmt: skip
    learned = Learned()
    first = plan(world, learned=learned)
    grown = replace(world, now=T0 + timedelta(seconds=5),
                    waiting=[*world.waiting, queued("c", 3)])  # fmt: skip
    second, how = replan(first, grown, learned=learned)
    assert how == "appended"
    mirror = Mirror(url)  # creates the tables
    task = asyncio.create_task(mirror.run())
    publisher = Publisher(url, "*")
    history = History(url)
    try:
        await publish(publisher, url, first)
        plans = Plans(history)
        light = await plans.refresh()
        assert light is not None
        assert light.estimates == first.estimates
        assert light.jobs == {}  # the timeline is not read for the views
        whole = await plans.whole()
        assert whole is not None
        assert (whole.slots, whole.nodes) == (first.slots, first.nodes)
        assert whole.index is not None  # indexed off the loop, once

        await publish(publisher, url, second)  # the new job placed: a new version
        again = await plans.refresh()
        assert again is not None
        assert again.estimates == second.estimates
        assert again.estimates[queued("c", 3).key].start == T0 + timedelta(seconds=3600 + 1200)
        assert (await plans.whole()).slots == second.slots  # type: ignore[union-attr]

        assert await asyncio.to_thread(publisher.publish, first)  # written, yet older:
        assert published(url) == second.version  # it never replaces the newer one
    finally:
        task.cancel()
        await mirror.close()
        await history.close()
        publisher.close()


async def test_installs_sharing_a_database_each_read_their_own_operators_plan(
    own_postgres: LocalPostgres,
) -> None:
    # Two installs scoped to different namespaces, one database: each API answers
    # from its own operator's plan, whichever was written last.
    url = own_postgres.url
    worlds = {
        scope: World(now=T0 + timedelta(seconds=i), limits=Limits(max_running=10), queues={},
                     nodes=[a_node("n0", gpus=8)], foreign=[], active=[],
                     waiting=[queued(f"{scope}-{n}", n) for n in range(1, 2 + i)])
        for i, scope in enumerate(("team-a", "team-b"))
    }  # fmt: skip
    plans = {scope: plan(world, learned=Learned()) for scope, world in worlds.items()}
    mirror = Mirror(url)  # creates the tables
    tasks = [asyncio.create_task(mirror.run())]
    publishers = {scope: Publisher(url, scope) for scope in plans}
    histories = {scope: History(url, scope=scope) for scope in (*plans, "*")}
    try:
        for scope, kept in plans.items():
            await publish(publishers[scope], url, kept)
        for scope, kept in plans.items():
            read = Plans(histories[scope])
            light = await read.refresh()
            assert light is not None
            assert light.estimates == kept.estimates, scope
            whole = await read.whole()
            assert whole is not None
            assert whole.slots == kept.slots, scope
        assert await histories["*"].plan(after=None) is None  # a third install: none yet
    finally:
        for task in tasks:
            task.cancel()
        await mirror.close()
        for publisher in publishers.values():
            publisher.close()
        for history in histories.values():
            await history.close()
