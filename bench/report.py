"""Markdown tables, Shunter / Kueue / batch/v1 side by side, from the result files the
latency and throughput benches wrote (bench/results/*.json), for bench/RESULTS.md.

    python -m bench.report [bench/results/latency.json bench/results/throughput-*.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench.harness import RESULTS

LATENCY = [
    ("submit_to_pod_idle", "submit -> Pod created, low load (one at a time)"),
    ("submit_to_pod_burst", "submit -> Pod created, burst (8 threads)"),
    ("cancel_to_pod_gone_graceful", "cancel -> Pod gone, graceful (POST /cancel)"),
    ("delete_job_to_pod_gone", "delete Job -> Pod gone"),
    ("cancel_to_pod_gone_forced_minus_grace_and_margin", "forced cancel -> gone, - grace - margin"),
    ("slot_freed_to_next_pod", "slot freed -> next Pod created (limit / quota of 1 job)"),
]  # fmt: skip


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _header(names: list[str], first: str) -> list[str]:
    return [_row([first, *names]), _row(["---"] * (len(names) + 1))]


def latency(result: dict[str, Any]) -> list[str]:
    peers = list(result["peers"].values())
    lines = _header([p["name"] for p in peers], "p50 / p99 (s)")
    for key, label in LATENCY:
        cells = [f"{p[key]['p50']:.3f} / {p[key]['p99']:.3f}" if key in p else "" for p in peers]
        if any(cells):
            lines.append(_row([label, *cells]))
    lines.append(_row(["controller CPU, share of a core"] + [_cpu(p) for p in peers]))
    lines.append(_row(["other processes on the machine (cores)"] + [_other(p) for p in peers]))
    return lines


def _controllers(peer: dict[str, Any]) -> list[str]:
    names = ("operator", "api", "kueue", "kube-controller-manager")
    return [n for n in names if n in peer["processes"]]


def _cpu(peer: dict[str, Any]) -> str:
    usage = peer["processes"]
    return ", ".join(f"{n} {usage[n]['core_share']:.0%}" for n in _controllers(peer))


def _other(peer: dict[str, Any]) -> str:
    return f"{peer['processes']['other processes']['core_share']:.2f}"


def throughput(result: dict[str, Any]) -> list[str]:
    peers = list(result["peers"].values())
    lines = _header([p["name"] for p in peers], f"{result['jobs']:,} jobs of {result['run_for']}")
    rows = [
        ("jobs/s admitted / completed", _rates),
        ("steady completed/s (10-90 %)", lambda p: f"{p['steady_completed_per_s']:.1f}"),
        ("makespan (ideal)", lambda p: f"{p['makespan_s']:.1f} s ({p['ideal_makespan_s']:.0f} s)"),
        ("makespan / ideal", lambda p: f"{p['vs_ideal']:.2f}"),
        ("every job's status says complete", lambda p: _seconds(p["all_done_in_status_s"])),
        ("controller CPU, share of a core", _cpu),
        ("controller peak RSS", lambda p: ", ".join(
            f"{n} {p['processes'][n]['peak_rss_mib']:.0f} MiB" for n in _controllers(p))),
        ("other processes on the machine (cores)", _other),
        ("time to create the jobs", lambda p: f"{p['submit_s']:.1f} s"),
    ]  # fmt: skip
    for label, cell in rows:
        lines.append(_row([label] + [cell(p) for p in peers]))
    return lines


def _rates(peer: dict[str, Any]) -> str:
    return f"{peer['admitted_per_s']:.1f} / {peer['completed_per_s']:.1f}"


def _seconds(value: float | None) -> str:
    return "not within 900 s" if value is None else f"{value:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path)
    args = parser.parse_args()
    files = args.files or sorted(RESULTS.glob("latency*.json")) + sorted(
        RESULTS.glob("throughput-*.json")
    )
    for path in files:
        result = json.loads(path.read_text())
        if "peers" not in result:
            continue  # written before the three-peer benches
        print(f"\n{path.name} (Kueue {result['kueue']['version']}, kube-controller-manager "
              f"QPS {result.get('kube_controller_manager_qps')})\n")  # fmt: skip
        render = latency if result["bench"].startswith("latency") else throughput
        print("\n".join(render(result)))


if __name__ == "__main__":
    main()
