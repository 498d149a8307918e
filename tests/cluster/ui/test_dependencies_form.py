"""The submit form's dependencies (POST /submit's depends_on and cancel_dependents):
rows of a job name, a condition and, with Checkpointed only, a step; sent in the
submit and in its what-if preview exactly as the REST API takes them; the API's
refusals (a cycle, 409; a missing step or an unknown job, 422) shown in the form."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from playwright.sync_api import Browser, Request, expect

from tests.cluster.ui.test_browser import ARTIFACTS, LONG, Watched, browser  # noqa: F401 (the fixture)
from tests.support.api import ApiProcess
from tests.support.builders import a_training_job
from tests.support.operator import Jobs, OperatorProcess


def names(jobs: Jobs) -> list[str]:
    listing = jobs.custom.list_namespaced_custom_object(
        "shunter.dev", "v1alpha1", jobs.namespace, "trainingjobs"
    )
    return sorted(j["metadata"]["name"] for j in listing["items"])


class Bodies:
    """The JSON bodies the page sends to POST /submit: the previews, then the submits."""

    def __init__(self, watched: Watched) -> None:
        self.previews: list[dict[str, Any]] = []
        self.submits: list[dict[str, Any]] = []
        watched.page.on("request", self._seen)

    def _seen(self, request: Request) -> None:
        if request.method == "POST" and "/api/training/submit" in request.url:
            mine = self.previews if "dry_run=true" in request.url else self.submits
            mine.append(request.post_data_json)


def test_the_form_sends_dependencies_in_the_preview_and_the_submit(
    browser: Browser,  # noqa: F811
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    jobs: Jobs,
    namespace: str,
) -> None:
    start_operator(SHUNTER_MAX_RUNNING="3")
    api = start_api()
    with api.client() as http:
        for name in ("prepare", "warmup"):
            body = {"name": name, **LONG}
            assert http.post("/api/training/submit", json=body).status_code == 201

    watched = Watched(browser)
    bodies = Bodies(watched)
    page = watched.open(api, namespace)
    form = page.locator("#submit")
    form.locator("input[name=name]").fill("train")
    rows = form.locator("#depends-on li.dependency")
    expect(rows).to_have_count(0)
    page.click("#add-dependency")
    rows.nth(0).locator("input[name=dep_name]").fill("prepare")  # Completed: the first choice
    expect(rows.nth(0).locator("input[name=dep_step]")).to_be_hidden()
    page.click("#add-dependency")
    rows.nth(1).locator("input[name=dep_name]").fill("warmup")
    rows.nth(1).locator("select[name=dep_condition]").select_option("Checkpointed")
    step = rows.nth(1).locator("input[name=dep_step]")
    expect(step).to_be_visible()  # asked for with Checkpointed only
    step.fill("500")
    page.click("#add-dependency")  # a row added, then removed: not sent
    rows.nth(2).locator("input[name=dep_name]").fill("gone")
    rows.nth(2).locator("button.remove").click()
    expect(rows).to_have_count(2)
    form.locator("input[name=cancel_dependents]").check()
    expected = [{"name": "prepare", "condition": "Completed"},
                {"name": "warmup", "condition": "Checkpointed", "step": 500}]  # fmt: skip

    page.click("#preview-button")
    preview = page.locator("#preview")
    expect(preview).to_be_visible()
    expect(preview).to_have_attribute("data-status", "ok")
    assert bodies.previews[-1]["depends_on"] == expected
    assert bodies.previews[-1]["cancel_dependents"] is True
    ARTIFACTS.mkdir(exist_ok=True)
    page.locator("#submit-panel").screenshot(path=str(ARTIFACTS / "ui-dependencies-form.png"))

    form.locator("button[type=submit]").click()
    expect(page.locator("#notice")).to_have_text("Submitted train")
    expect(page.locator("#submit-error")).to_be_hidden()
    (sent,) = bodies.submits
    assert (sent["depends_on"], sent["cancel_dependents"]) == (expected, True)
    spec = jobs.get("train")["spec"]
    assert spec["dependsOn"] == expected
    assert spec["cancelDependents"] is True
    row = page.locator('tr[data-job="train"]')
    expect(row.locator("td.name .message")).to_have_text(
        "Waiting for prepare to complete; warmup to reach checkpoint step 500", timeout=30_000
    )
    expect(row.locator("td.phase")).to_have_text("QUEUED")
    assert watched.problems == []
    watched.page.close()


def test_the_apis_refusals_of_dependencies_are_shown_in_the_form(
    browser: Browser,  # noqa: F811
    start_api: Callable[..., ApiProcess],
    jobs: Jobs,
    namespace: str,
) -> None:
    # a waits for b, which does not exist yet: b waiting for a would close a cycle.
    jobs.create(a_training_job("a").with_spec(dependsOn=[{"name": "b", "condition": "Completed"}]))
    api = start_api()
    watched = Watched(browser)
    page = watched.open(api, namespace)
    form = page.locator("#submit")
    error = page.locator("#submit-error")
    preview = page.locator("#preview")
    form.locator("input[name=name]").fill("b")
    page.click("#add-dependency")
    row = form.locator("#depends-on li.dependency")
    row.locator("input[name=dep_name]").fill("a")

    form.locator("button[type=submit]").click()  # 409
    expect(error).to_have_text(
        "depends_on would close a cycle of jobs waiting on each other: b -> a -> b"
    )
    page.click("#preview-button")  # the preview is refused alike
    expect(preview).to_contain_text("Would be refused: depends_on would close a cycle")

    row.locator("select[name=dep_condition]").select_option("Checkpointed")
    form.locator("button[type=submit]").click()  # no step: 422
    expect(error).to_contain_text("step is required with condition Checkpointed")

    row.locator("input[name=dep_step]").fill("10")
    row.locator("input[name=dep_name]").fill("nope")
    form.locator("button[type=submit]").click()  # no such job: 422
    expect(error).to_contain_text("no job named nope in namespace")
    assert names(jobs) == ["a"]

    row.locator("input[name=dep_name]").fill("a")  # a valid body is taken; the error goes
    row.locator("select[name=dep_condition]").select_option("Finished")
    form.locator("input[name=name]").fill("c")
    form.locator("button[type=submit]").click()
    expect(page.locator("#notice")).to_have_text("Submitted c")
    expect(error).to_be_hidden()
    assert names(jobs) == ["a", "c"]
    # Each refusal is a failed request in the console (409, 422): nothing else.
    assert all("409" in p or "422" in p for p in watched.problems), watched.problems
    watched.page.close()
