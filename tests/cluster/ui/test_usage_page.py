"""The Usage page in headless Chromium, at 1400 and 800 px, under the server's CSP.

Three teams (namespaces) ran jobs in two queues of one cohort over the last week: the
jobs ran on kwok and finished, then their status.history was written as a week of runs
(preempted, failed and completed, with waits), as the operator writes it; the
operator's mirror put them in a PostgreSQL of the test's own. The page must show:
GPU-hours per team per day stacked, every team named beside its part with its total;
the waits per queue as a row of bars each; each queue's share against its weight.
Labels must not overlap one another nor leave the chart, the page must not scroll
sideways, and the console must stay clean. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client
from playwright.sync_api import Browser, expect

from shunter.devcluster.postgres import LocalPostgres
from shunter.domain.model import GROUP, VERSION, Attempt
from tests.cluster.ui.test_browser import ARTIFACTS, Watched, browser  # noqa: F401
from tests.support.api import ApiProcess
from tests.support.builders import a_training_job
from tests.support.kube import temporary_namespace
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for

# Per team: (queue, GPUs, runs a day, hours each run holds its GPUs, minutes it waits).
TEAMS = {"vision": ("research", 4, 3, 3.0, 20), "nlp": ("research", 8, 2, 2.5, 45),
         "speech": ("batch", 2, 4, 1.5, 3)}  # fmt: skip
DAYS = 6
# Runs ended this way in turn; the last one completes.
OUTCOMES = ("Preempted", "Completed", "Failed", "Preempted", "TimeSliced")

# The text boxes of each chart (labels, values, ticks): overlapping pairs, and text
# outside its chart.
LABELS = """() => {
  const problems = [];
  for (const chart of document.querySelectorAll("svg.chart")) {
    const frame = chart.getBoundingClientRect();
    const boxes = [...chart.querySelectorAll("text")]
      .map((t) => [t.textContent, t.getBoundingClientRect()]);
    for (const [text, r] of boxes) {
      if (r.left < frame.left - 1 || r.right > frame.right + 1)
        problems.push(`${text} leaves its chart`);
    }
    for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
      const [a, p] = boxes[i], [b, q] = boxes[j];
      if (p.left < q.right && q.left < p.right && p.top < q.bottom - 1 && q.top < p.bottom - 1)
        problems.push(`${a} overlaps ${b}`);
    }
  }
  return { problems, overflow: document.documentElement.scrollWidth - window.innerWidth };
}"""


def week_of_runs(
    queue_gpus_runs: tuple[str, int, int, float, int], now: datetime
) -> list[dict[str, Any]]:
    _, _, per_day, hours, wait = queue_gpus_runs
    start = (now - timedelta(days=DAYS)).replace(minute=0, second=0, microsecond=0)
    runs, number = [], 0
    for day in range(DAYS):
        for k in range(per_day):
            number += 1
            queued = start + timedelta(days=day, hours=k * 24 / per_day)
            admitted = queued + timedelta(minutes=wait * (1 + k % 3))
            finished = admitted + timedelta(hours=hours)
            reason = OUTCOMES[number % len(OUTCOMES)]
            runs.append(Attempt(number, 0 if reason == "Completed" else 143, reason,
                                started_at=admitted, finished_at=finished, queued_at=queued,
                                admitted_at=admitted, running_at=admitted + timedelta(minutes=2),
                                lost_seconds=0.0 if reason == "Completed" else 900.0))  # fmt: skip
    runs[-1] = replace(runs[-1], reason="Completed", exit_code=0, lost_seconds=0.0)
    return [r.to_raw() for r in runs]


@pytest.fixture
def teams(kube_api: client.ApiClient, namespace: str) -> Iterator[dict[str, str]]:
    with ExitStack() as stack:
        names = {"vision": namespace}
        for team in ("nlp", "speech"):
            names[team] = stack.enter_context(
                temporary_namespace(kube_api, f"{namespace}-{team}"[:63]))  # fmt: skip
        yield names


@pytest.fixture
def queues(kube_api: client.ApiClient, namespace: str) -> Iterator[dict[str, str]]:
    custom = client.CustomObjectsApi(kube_api)
    names = {q: f"{namespace}-{q}"[:63] for q in ("research", "batch")}
    weights = {"research": 2, "batch": 1}
    for queue, name in names.items():
        custom.create_cluster_custom_object(GROUP, VERSION, "trainingqueues", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "TrainingQueue", "metadata": {"name": name},
            "spec": {"gpuQuota": 16, "cohort": f"{namespace}-lab"[:63],
                     "fairSharing": {"weight": weights[queue]}}})  # fmt: skip
    try:
        yield names
    finally:
        for name in names.values():
            custom.delete_cluster_custom_object(GROUP, VERSION, "trainingqueues", name)


def run_a_week(kube_api: client.ApiClient, teams: dict[str, str], queues: dict[str, str]) -> None:
    """Each team's jobs run for real, then get their week of runs as their history. A
    history holds 20 runs: a team's week is split over jobs of at most 20 runs each."""
    now = datetime.now(UTC)
    for team, namespace in teams.items():
        queue, gpus = TEAMS[team][0], TEAMS[team][1]
        jobs = Jobs(kube_api, namespace)
        runs = week_of_runs(TEAMS[team], now)
        for part in range(0, len(runs), 20):
            name = f"{team}-{part // 20}"
            quick = {"annotations": {"sim.shunter.dev/run-for": "1s"}}
            jobs.create(a_training_job(name).with_gpus(gpus)
                        .with_spec(queue=queues[queue], podMetadata=quick))  # fmt: skip
            jobs.wait_phase(name, "completed")
            mine = [{**r, "attempt": i + 1} for i, r in enumerate(runs[part : part + 20])]
            jobs.patch_status(name, {"attempts": len(mine), "history": mine})


@pytest.mark.parametrize("width", [1400, 800])
def test_the_usage_page_draws_each_chart_with_its_series_named(
    width: int,
    browser: Browser,  # noqa: F811
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    kube_api: client.ApiClient,
    own_postgres: LocalPostgres,
    teams: dict[str, str],
    queues: dict[str, str],
):
    watched_namespaces = ",".join(teams.values())
    start_operator(database=own_postgres.url, SHUNTER_NAMESPACE=watched_namespaces,
                   SHUNTER_MAX_RUNNING="8")  # fmt: skip
    api = start_api(database=own_postgres.url)
    run_a_week(kube_api, teams, queues)
    with api.client() as http:

        def mirrored() -> bool:
            body = http.get("/api/training/usage", params={"namespace": "*"}).json()
            counted = {g["key"]: g["total_attempts"] for g in body.get("groups", [])}
            want = {teams[t]: DAYS * TEAMS[t][2] for t in TEAMS}
            return all(counted.get(ns, 0) >= n - 1 for ns, n in want.items())

        wait_for(mirrored, timeout=60, what="a week of runs in the accounting")

    watched = Watched(browser, width=width)
    page = watched.page
    page.goto(f"{api.base_url}/ui/usage.html")
    page.fill("#namespace", "*")
    page.click("#settings button")
    stacked = page.locator("#gpu-hours-chart svg")
    expect(stacked).to_be_visible(timeout=15_000)
    for team, namespace in teams.items():
        label = stacked.locator(f'text.series-label[data-series="{namespace}"]')
        expect(label).to_be_visible()
        _, gpus, per_day, hours, _ = TEAMS[team]
        total = DAYS * per_day * gpus * hours
        # Named with its window total (the oldest runs may start before the window).
        shown = float((label.text_content() or "").rsplit(" ", 1)[1])
        assert 0.8 * total <= shown <= total, (team, shown, total)
    assert stacked.locator("rect").count() >= DAYS * len(teams)

    waits = page.locator("#waits-chart svg")
    for queue in queues.values():
        expect(waits.locator(f'text.series-label[data-series="{queue}"]')).to_be_visible()
    expect(waits.locator("text.stat").first).to_contain_text("p50")

    shares = page.locator("#shares-chart svg")
    for queue in queues.values():
        expect(shares.locator(f'text.series-label[data-series="{queue}"]')).to_be_visible()
    expect(shares.locator("text.stat").first).to_contain_text("weight")
    expect(page.locator("#gaps")).to_be_hidden()

    layout = page.evaluate(LABELS)
    assert layout == {"problems": [], "overflow": 0}
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"ui-usage-{width}.png"), full_page=True)
    assert watched.problems == []
    page.close()
