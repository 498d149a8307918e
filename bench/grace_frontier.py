"""Redone work against a preemptor's wait, by the bound on a victim's sized grace.

The checkpoint-aware policy of `bench.preemption_trace` on the same trace and seeds,
with only `Rules.max_sized_grace` (the chart's `preemption.maxSizedGraceSeconds`)
changed: how much work each bound saves, and what it costs the preemptors' wait.

    python -m bench.grace_frontier 30 60 120 240
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import timedelta

from bench import preemption_trace as trace
from shunter.operator.rules import Rules

SHOWN = ("redone_gpu_h", "preemptor_wait_mean_s", "preemptor_wait_p50_s", "preemptor_wait_p95_s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bounds", type=int, nargs="+", help="seconds")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    args = parser.parse_args()
    for bound in args.bounds:
        rules = replace(Rules(max_sized_grace=timedelta(seconds=bound)), limits=trace.LIMITS)
        runs = [
            trace.summarize(trace.Simulation(trace.make_trace(seed), rules, seed=seed).run())
            for seed in args.seeds
        ]
        figures = trace.aggregate(runs)
        print(bound, {k: round(figures[k]["mean"], 1) for k in SHOWN}, flush=True)


if __name__ == "__main__":
    main()
