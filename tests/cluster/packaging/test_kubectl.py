"""kubectl UX: the examples apply, `kubectl get tj` shows useful columns, and
`kubectl patch ... cancelled=true` cancels."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

from shunter.devcluster.controlplane import default_bin_dir
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
# The examples this test applies together (the others: test_examples.py).
KUBECTL_EXAMPLES = ("hung-trainingjob.yaml", "trainingjob.yaml", "urgent-trainingjob.yaml")


def kubectl(kubeconfig: Path, namespace: str, *args: str) -> str:
    result = subprocess.run(
        [
            str(default_bin_dir() / "kubectl"),
            "--kubeconfig",
            str(kubeconfig),
            "-n",
            namespace,
            *args,
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def table(kubeconfig: Path, namespace: str) -> list[list[str]]:
    """The default `kubectl get tj` table, cut at the header's column starts (kubectl
    pads columns with 3 spaces; a header may hold one: CKPT AGE, WAITING FOR)."""
    lines = kubectl(kubeconfig, namespace, "get", "tj").splitlines()
    header = lines[0]
    starts = [
        i for i, c in enumerate(header) if c != " " and header[max(0, i - 2) : i] in ("", "  ")
    ]
    bounds = list(zip(starts, [*starts[1:], None], strict=True))
    return [[line[a:b].strip() for a, b in bounds] for line in lines]


def columns(kubeconfig: Path, namespace: str, *names: str) -> dict[str, list[str]]:
    """Each job's cells under the columns `names` of the default table."""
    header, *rows = table(kubeconfig, namespace)
    return {r[0]: [r[header.index(n)] for n in names] for r in rows}


def test_examples_get_and_patch(
    kubeconfig: Path, namespace: str, jobs: Jobs, start_operator: Callable[..., OperatorProcess]
):
    for example in KUBECTL_EXAMPLES:
        assert "created" in kubectl(kubeconfig, namespace, "apply", "-f", str(EXAMPLES / example))
    start_operator()  # all three wait in the queue when admission first looks

    assert table(kubeconfig, namespace)[0] == [
        "NAME", "PHASE", "POSITION", "EST. START", "WAITING FOR", "GPUS", "NODES", "READY",
        "PROGRESS", "CKPT AGE", "RUNS", "AGE",
    ]  # fmt: skip

    # The urgent job (priority 100) runs first; the others wait with positions.
    wait_for(
        lambda: columns(kubeconfig, namespace, "PHASE").get("urgent-finetune") == ["running"],
        timeout=30,
        what="urgent-finetune to run",
    )
    wait_for(
        lambda: (
            columns(kubeconfig, namespace, "PHASE", "POSITION", "GPUS")
            == {
                "urgent-finetune": ["running", "", "1"],
                "hangs-on-cancel": ["queued", "1", "1"],
                "resnet-small": ["queued", "2", "2"],
            }
        ),
        timeout=30,
        what="the others queued in submission order",
    )
    wide = kubectl(kubeconfig, namespace, "get", "tj", "-o", "wide").splitlines()[0].split("   ")
    assert [c.strip() for c in wide if c.strip()][:15] == [
        "NAME", "PHASE", "POSITION", "EST. START", "WAITING FOR", "GPUS", "NODES", "READY",
        "PROGRESS", "CKPT AGE", "PRIORITY", "QUEUE", "POD", "REASON", "MESSAGE",
    ]  # fmt: skip

    out = kubectl(
        kubeconfig,
        namespace,
        "patch",
        "tj",
        "urgent-finetune",
        "--type",
        "merge",
        "-p",
        '{"spec":{"cancelled":true}}',
    )
    assert "patched" in out
    jobs.wait_phase("urgent-finetune", "cancelled")
    described = kubectl(kubeconfig, namespace, "describe", "tj", "urgent-finetune")
    assert "Cancelled by user" in described
