"""The preemption-policy bench (bench/preemption_trace.py) on a tiny trace, so it
cannot rot: the operator's decisions run to the end of the trace under every policy,
and the bench's books balance (what the oracle says a stop loses is what the
simulated trainers redo)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from bench.preemption_trace import (
    POLICIES,
    TRACE,
    Spec,
    StopOutcome,
    Trainer,
    make_trace,
    simulate,
    summarize,
)

# One node, 30 jobs of 20 to 60 min arriving every 6 min: seed 4 preempts under every policy.
TINY = replace(TRACE, jobs=30, nodes=1, initial=4, mean_gap=6 * 60.0,
               work=(20 * 60.0, 60 * 60.0), interval=(5 * 60.0, 10 * 60.0))  # fmt: skip
SEED = 4


def test_the_trace_is_fixed_by_its_seed_and_has_every_kind_in_equal_shares() -> None:
    trace = make_trace(7, TINY)
    assert trace == make_trace(7, TINY)
    assert sorted(s.kind for s in trace) == sorted("abc" * 10)
    assert all(s.priority == 0 for s in trace[: TINY.initial])
    assert all(s.stop_write is not None and s.stop_write > 30 for s in trace if s.kind == "b")


@pytest.mark.parametrize("policy", list(POLICIES))
def test_every_job_completes_and_the_losses_add_up(policy: str) -> None:
    stats = simulate(SEED, policy, TINY)
    assert stats.completed == TINY.jobs
    assert stats.preemptions > 0
    assert stats.refused_reports == []  # the report channel's rules accept every report
    # A trainer that checkpoints on SIGTERM within the grace loses nothing.
    assert stats.redone["a"] == 0
    # Every stop was a preemption: its true loss, priced when it was chosen, is redone.
    assert math.isclose(sum(stats.redone.values()), stats.chosen_lost, abs_tol=1e-6)
    assert stats.least_cost <= stats.chosen_cost + 1e-6
    if policy == "oracle":
        assert math.isclose(stats.least_cost, stats.chosen_cost)
    row = summarize(stats)
    assert row["preemptors"] > 0
    assert row["preemptor_wait_p50_s"] > 0


def test_what_each_kind_of_trainer_does_when_its_pod_is_deleted() -> None:
    a, b, c = (Spec(f"j-{k}", 0.0, 2, 0, k, 3600.0, 600.0, 120.0, w)
               for k, w in (("a", 5.0), ("b", 120.0), ("c", None)))  # fmt: skip
    trainers = [Trainer(s, started=0.0) for s in (a, b, c)]
    for trainer in trainers:  # 20 min in: the 10-min checkpoint is complete, the
        trainer.saved = 600.0  # 20-min one is being written (done at 1,320 s)
        trainer.pending = [(600.0, 600.0, 720.0), (1200.0, 1200.0, 1320.0)]
    quick, slow, plain = trainers
    assert quick.stop_outcome(1200.0, 30) == StopOutcome(1205.0, 75, 1200.0, True, 1200.0)
    # Its write (120 s) does not fit today's 30 s: killed, back to the 10-min checkpoint.
    killed = slow.stop_outcome(1200.0, 30)
    assert (killed.end, killed.exit_code, killed.lost) == (1230.0, 137, 600.0)
    assert slow.stop_outcome(1200.0, 185).lost == 0  # a sized grace: 1.5 x 120 + 5
    # The periodic write in flight is complete (1,320 s) before the kill (1,330 s): it counts.
    assert slow.stop_outcome(1230.0, 100).resume_at == 1200.0
    gone = plain.stop_outcome(1200.0, 600)
    assert (gone.end, gone.exit_code, gone.lost) == (1200.0, 143, 600.0)
