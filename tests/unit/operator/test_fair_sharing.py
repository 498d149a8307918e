"""Fair sharing (shunter.domain.fairshare), driven through the operator's real passes in
virtual time (bench.fair_share.World): between the queues of a cohort by weight, and
inside a queue by decayed usage; the usage kept in the queue's status survives a
restart."""

from __future__ import annotations

from datetime import timedelta

import pytest
from bench.fair_share import T0, World, cohort_world, error, job, node, queue_world
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shunter.domain.admission import Limits
from shunter.domain.fairshare import Ledger, accrued, decay, usage_patch
from shunter.domain.model import JobKey, format_time
from shunter.domain.queues import QueueView
from shunter.operator.book import JobBook
from shunter.operator.rules import Rules

STEP = timedelta(seconds=10)
RULES = Rules(limits=Limits(max_running=10_000))


# -- the decayed usage and its status ------------------------------------------------


def test_usage_halves_every_half_life_and_held_gpus_accrue():
    assert decay(100.0, 3600, 3600) == pytest.approx(50.0)
    # 2 GPUs for a whole half-life: 2 * H / ln 2 * (1 - 1/2) GPU-seconds, a bit under 2H.
    assert accrued(2, 3600, 3600) == pytest.approx(2 * 3600 / 0.6931471805599453 / 2)
    ledger = Ledger(T0, {"a": 100.0}, {("a", "alice"): 100.0})
    later = ledger.advance(T0 + timedelta(hours=1), {("b", ""): 1}, 3600)
    assert later.namespaces["a"] == pytest.approx(50.0)
    assert later.users[("a", "alice")] == pytest.approx(50.0)
    assert later.namespaces["b"] == pytest.approx(accrued(1, 3600, 3600))
    # Forgotten once negligible.
    assert "a" not in later.advance(T0 + timedelta(days=30), {}, 3600).namespaces


def test_the_usage_status_round_trips_and_its_patch_clears_what_is_gone():
    ledger = Ledger(T0, {"a": 12.25, "b": 3.0}, {("a", "alice"): 12.25, ("b", ""): 3.0})
    raw = ledger.to_raw()
    assert raw == {"decayedAt": format_time(T0), "namespaces": {
        "a": {"gpuSeconds": 12.2, "users": {"alice": 12.2}},
        "b": {"gpuSeconds": 3.0, "users": {"": 3.0}}}}  # fmt: skip
    back = Ledger.parse(raw)
    assert back is not None
    assert back.decayed_at == T0
    assert back.namespaces == {"a": 12.2, "b": 3.0}
    assert back.users == {("a", "alice"): 12.2, ("b", ""): 3.0}
    assert Ledger.parse(None) is None
    smaller = Ledger(T0, {"a": 1.0}, {("a", "bob"): 1.0}).to_raw()
    patch = usage_patch((raw, None), smaller)
    assert patch["namespaces"]["b"] is None
    assert patch["namespaces"]["a"]["users"] == {"bob": 1.0, "alice": None}


def test_a_queue_parses_its_fair_sharing_fields_and_without_them_is_as_before():
    plain = QueueView.parse({"metadata": {"name": "q"}, "spec": {"gpuQuota": 4, "cohort": "c"}})
    assert (plain.weight, plain.half_life, plain.usage) == (None, None, None)
    assert plain == QueueView("q", gpu_quota=4, cohort="c")
    body = {"metadata": {"name": "q"},
            "spec": {"gpuQuota": 0, "cohort": "c", "admissionFairSharing": {"halfLifeSeconds": 600},
                     "fairSharing": {"preemption": "aboveFairShare"}},
            "status": {"usage": Ledger(T0, {"a": 5.0}, {("a", ""): 5.0}).to_raw()}}  # fmt: skip
    queue = QueueView.parse(body)
    assert queue.weight == 1.0
    assert queue.preempts_above_fair_share
    assert queue.half_life == 600
    assert queue.usage is not None
    assert queue.usage.namespaces == {"a": 5.0}


# -- inside a queue --------------------------------------------------------------------


def flood(*, half_life: int | None) -> World:
    """Team A submits 500 one-GPU jobs of ten minutes; team B submits 5 a minute later."""
    queue = QueueView("shared", half_life=half_life)
    flooded = [
        job(f"a-{i:03d}", namespace="team-a", queue="shared", created=T0) for i in range(500)
    ]
    few = [job(f"b-{i}", namespace="team-b", queue="shared", created=T0 + timedelta(minutes=1))
           for i in range(5)]  # fmt: skip
    work = {j.key: 600.0 + 7 * (i % 8) for i, j in enumerate([*flooded, *few])}  # staggered ends
    return World([*flooded, *few], queues=[queue], nodes=[node("n0")], rules=RULES, work=work)


def test_a_team_flooding_its_queue_cannot_hold_back_a_team_that_submits_five():
    world = flood(half_life=3600)
    world.run(T0 + timedelta(hours=1), STEP)
    few = [JobKey("team-b", f"b-{i}") for i in range(5)]
    # Each of B's jobs starts as soon as one of A's eight running jobs ends (they end
    # staggered within the first ~11 minutes), and all finish within the hour.
    for key in few:
        assert world.started[key] - T0 <= timedelta(minutes=15), key
        assert key in world.finished
    # Plain FIFO (no admissionFairSharing) holds them behind all 500 of A's jobs.
    plain = flood(half_life=None)
    plain.run(T0 + timedelta(hours=1), STEP)
    assert not any(key in plain.started for key in few)


def test_priority_comes_before_usage():
    queue = QueueView("shared", half_life=3600, usage=Ledger(T0, {"rich": 1e6}, {}))
    rich = job("urgent", namespace="rich", queue="shared", priority=5, gpus=8,
               created=T0 + timedelta(seconds=5))  # fmt: skip
    poor = job("cheap", namespace="poor", queue="shared", gpus=8, created=T0)
    world = World([rich, poor], queues=[queue], nodes=[node("n0")], rules=RULES)
    world.run(T0 + timedelta(seconds=30), STEP)
    assert JobKey("rich", "urgent") in world.started
    assert JobKey("poor", "cheap") not in world.started


def test_users_of_a_namespace_share_it_by_their_usage():
    queue = QueueView("shared", half_life=3600)
    jobs = [job(f"alice-{i}", namespace="lab", queue="shared", user="alice", created=T0)
            for i in range(40)]  # fmt: skip
    jobs += [job(f"bob-{i}", namespace="lab", queue="shared", user="bob",
                 created=T0 + timedelta(seconds=1)) for i in range(40)]  # fmt: skip
    world = World(jobs, queues=[queue], nodes=[node("n0")], rules=RULES,
                  work={j.key: 120.0 for j in jobs})  # fmt: skip
    world.run(T0 + timedelta(minutes=30), STEP)
    ledger = world.book.usage["shared"]
    alice, bob = ledger.users[("lab", "alice")], ledger.users[("lab", "bob")]
    assert abs(alice - bob) / (alice + bob) < 0.1


def busy_teams(teams: int, sizes: list[int], works: list[int], head_start: int,
               horizon: timedelta) -> World:  # fmt: skip
    """Teams that each keep far more queued than fits (enough to keep every GPU busy
    alone until the horizon); the first submits `head_start` jobs before the others
    submit anything."""
    queue = QueueView("shared", half_life=1800)
    jobs, work = [], {}
    for t in range(teams):
        count = int(16 * horizon.total_seconds() / (sizes[t] * works[t])) + 10
        for i in range(count):
            created = T0 + timedelta(seconds=i + (0 if t == 0 else head_start))
            j = job(f"t{t}-{i:04d}", namespace=f"team-{t}", queue="shared", gpus=sizes[t],
                    created=created)  # fmt: skip
            jobs.append(j)
            work[j.key] = float(works[t])
    return World(jobs, queues=[queue], nodes=[node("n0"), node("n1")], rules=RULES, work=work)


def first_starts(world: World, teams: int) -> list[timedelta | None]:
    return [min((at - T0 for k, at in world.started.items() if k.namespace == f"team-{t}"),
                default=None) for t in range(teams)]  # fmt: skip


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(teams=st.integers(2, 4), size=st.sampled_from([1, 2, 4]),
       work=st.sampled_from([60, 180, 420]), head_start=st.integers(0, 200))  # fmt: skip
def test_no_namespace_starves_and_usage_shares_converge(teams, size, work, head_start):
    horizon = timedelta(minutes=80)
    world = busy_teams(teams, [size] * teams, [work] * teams, head_start, horizon)
    world.run(T0 + timedelta(minutes=20), STEP)
    for t, first in enumerate(first_starts(world, teams)):  # nobody waits long to start
        assert first is not None, t
        assert first <= timedelta(seconds=work + 60), t
    before = dict(world.ns_seconds)
    world.run(T0 + horizon, STEP)
    window = {f"team-{t}": world.ns_seconds[f"team-{t}"] - before.get(f"team-{t}", 0.0)
              for t in range(teams)}  # fmt: skip
    # Within 5 %, plus one job's GPU-seconds (a team cannot hold a fraction of a job).
    fair = sum(window.values()) / teams
    assert error(window, dict.fromkeys(window, 1.0)) < 0.05 + size * work / fair, window


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    teams=st.integers(2, 4),
    sizes=st.lists(st.sampled_from([1, 2, 4]), min_size=4, max_size=4),
    works=st.lists(st.sampled_from([60, 180, 420]), min_size=4, max_size=4),
    head_start=st.integers(0, 200),
)
def test_teams_of_different_jobs_neither_starve_nor_fall_far_behind(teams, sizes, works,
                                                                   head_start):  # fmt: skip
    # Usage-based order charges a job as it runs: a team of long jobs is ahead for
    # the length of a job before its usage shows it (measured: up to ~15 % more than
    # an equal share in an hour); nobody starves or falls far behind.
    horizon = timedelta(minutes=80)
    world = busy_teams(teams, sizes, works, head_start, horizon)
    world.run(T0 + timedelta(minutes=20), STEP)
    for t, first in enumerate(first_starts(world, teams)):
        assert first is not None, t
        assert first <= timedelta(seconds=max(works) + 60), t
    before = dict(world.ns_seconds)
    world.run(T0 + horizon, STEP)
    window = {f"team-{t}": world.ns_seconds[f"team-{t}"] - before.get(f"team-{t}", 0.0)
              for t in range(teams)}  # fmt: skip
    assert error(window, dict.fromkeys(window, 1.0)) < 0.3, window


# -- the usage survives a restart -------------------------------------------------------


def test_the_usage_survives_a_restart_from_the_queue_status():
    world = queue_world(gpus=16, backlog=100)
    world.run(T0 + timedelta(minutes=10), STEP)
    ledger = world.book.usage["shared"]
    # What the operator wrote to status.usage, as a new replica's watch brings it.
    body = {"metadata": {"name": "shared"},
            "spec": {"admissionFairSharing": {"halfLifeSeconds": 3600}},
            "status": {"usage": ledger.to_raw()}}  # fmt: skip
    restarted = JobBook()
    restarted.put_queue(QueueView.parse(body))
    kept = restarted.usage["shared"]
    assert kept.decayed_at == ledger.decayed_at
    for ns, value in ledger.namespaces.items():
        assert kept.namespaces[ns] == pytest.approx(value, abs=0.1)
    # An older status (this replica's own earlier write) does not replace newer usage.
    older = Ledger(T0, {"team-a": 1.0}, {})
    restarted.put_queue(QueueView("shared", half_life=3600, usage=older))
    assert restarted.usage["shared"] is kept


def test_a_restarted_operator_orders_by_the_usage_it_read_back():
    # Team a used the queue heavily before the restart; both now submit at once.
    used = Ledger(T0, {"team-a": 50_000.0}, {("team-a", ""): 50_000.0})
    queue = QueueView.parse({"metadata": {"name": "shared"},
                             "spec": {"admissionFairSharing": {"halfLifeSeconds": 3600}},
                             "status": {"usage": used.to_raw()}})  # fmt: skip
    jobs = [job(f"{t}-{i}", namespace=f"team-{t}", queue="shared", gpus=2,
                created=T0 + timedelta(seconds=i)) for t in "ab" for i in range(8)]  # fmt: skip
    world = World(jobs, queues=[queue], nodes=[node("n0")], rules=RULES)
    world.step(T0 + timedelta(seconds=10))
    assert {k.namespace for k in world.started} == {"team-b"}


# -- between the queues of a cohort -------------------------------------------------------


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(weights=st.tuples(st.sampled_from([1.0, 2.0, 3.0]), st.sampled_from([1.0, 2.0, 3.0])),
       work=st.sampled_from([120.0, 300.0]))  # fmt: skip
def test_a_saturated_cohort_is_shared_by_weight(weights, work):
    world = cohort_world(weights, gpus=48, work=work, backlog=1000)
    world.run(T0 + timedelta(minutes=10), STEP)
    before = dict(world.gpu_seconds)
    world.run(T0 + timedelta(minutes=40), STEP)
    window = {q: world.gpu_seconds[q] - before.get(q, 0.0) for q in ("team-a", "team-b")}
    # 48 GPUs split by weight to the nearest GPU: within 1/48 of a share, plus 5 %.
    assert error(window, {"team-a": weights[0], "team-b": weights[1]}) < 0.08, window


def test_a_queue_of_large_jobs_is_not_starved_by_a_stream_of_small_ones():
    queues = [QueueView("pool", gpu_quota=16, cohort="lab"),
              QueueView("big", gpu_quota=0, cohort="lab", weight=1.0),
              QueueView("small", gpu_quota=0, cohort="lab", weight=1.0)]  # fmt: skip
    big = [job(f"big-{i}", namespace="b", queue="big", gpus=8, created=T0 + timedelta(seconds=30))
           for i in range(10)]  # fmt: skip
    small = [job(f"s-{i:03d}", namespace="s", queue="small", created=T0) for i in range(400)]
    work = {j.key: 60.0 + (i % 7) * 10 for i, j in enumerate(small)} | {j.key: 300.0 for j in big}
    world = World([*small, *big], queues=queues, nodes=[node("n0"), node("n1")], rules=RULES,
                  work=work)  # fmt: skip
    world.run(T0 + timedelta(minutes=40), STEP)
    started_big = [k for k in world.started if k.namespace == "b"]
    assert len(started_big) >= 3
    share = world.gpu_seconds["big"] / (world.gpu_seconds["big"] + world.gpu_seconds["small"])
    assert share > 0.3


def test_preemption_restores_the_fair_share_only_where_the_queue_allows_it():
    def late_team_b(preemption: str) -> World:
        world = cohort_world((2.0, 1.0), gpus=24, backlog=0, preemption=preemption)
        for i in range(200):  # team a alone fills the cohort; team b comes later
            world.add(job(f"a-{i:03d}", namespace="team-a", queue="team-a", created=T0))
        world.run(T0 + timedelta(minutes=2), STEP)
        for i in range(200):
            world.add(job(f"b-{i:03d}", namespace="team-b", queue="team-b",
                          created=T0 + timedelta(minutes=2)))  # fmt: skip
        world.run(T0 + timedelta(minutes=5), STEP)
        return world

    world = late_team_b("aboveFairShare")
    running = [j for j in world.book.active.values() if j.spec.queue == "team-b"]
    assert len(running) == 8  # a third of 24, taken back from team a
    assert world.preemptions == 8  # no more than needed: no back and forth
    held = late_team_b("never")
    assert not [j for j in held.book.active.values() if j.spec.queue == "team-b"]
    assert held.preemptions == 0
