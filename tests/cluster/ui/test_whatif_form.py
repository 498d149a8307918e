"""The submit form shows the what-if before Submit (POST /submit?dry_run=true): the
position and estimated start from the operator's plan, and a refusal as the submit
would get it; previewing creates nothing."""

from __future__ import annotations

import time
from collections.abc import Callable

from playwright.sync_api import Browser, Route, expect

from tests.cluster.ui.test_browser import Watched, browser  # noqa: F401 (the fixture)
from tests.support.api import ApiProcess
from tests.support.nodes import NodePool
from tests.support.operator import Jobs, OperatorProcess
from tests.support.polling import wait_for


def test_the_form_previews_the_start_and_creates_nothing(
    browser: Browser,  # noqa: F811
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    node_pool: NodePool,
    jobs: Jobs,
    queues: Callable[..., str],
    namespace: str,
) -> None:
    node_pool.add(1, gpus=8)
    start_operator(SHUNTER_MAX_RUNNING="4", SHUNTER_ESTIMATE_SECONDS="1")
    team = queues(maxRunning=1)  # the form's job waits for the holder, wherever it runs
    api = start_api()
    with api.client() as http:
        body = {"name": "holder", "gpus": 8, "node_selector": node_pool.selector, "queue": team,
                "max_runtime_seconds": 1200,
                "pod_annotations": {"sim.shunter.dev/run-for": "1200s"}}  # fmt: skip
        assert http.post("/api/training/submit", json=body).status_code == 201
        wait_for(lambda: http.get("/api/training/status/holder").json()["status"] == "running",
                 timeout=60, what="the holder to run")  # fmt: skip

    watched = Watched(browser)
    page = watched.open(api, namespace)
    form = page.locator("#submit")
    form.locator("input[name=name]").fill("next")
    form.locator("input[name=gpus]").fill("8")
    form.locator("input[name=max_runtime]").fill("60")
    form.locator("input[name=queue]").fill(team)
    preview = page.locator("#preview")

    def planned() -> bool:
        page.click("#preview-button")
        try:
            expect(preview).to_contain_text("Estimated start: in", timeout=2000)
        except AssertionError:
            return False  # no plan published yet: asked again
        return True

    def names() -> list[str]:
        listing = jobs.custom.list_namespaced_custom_object(
            "shunter.dev", "v1alpha1", namespace, "trainingjobs"
        )
        return [j["metadata"]["name"] for j in listing["items"]]

    wait_for(planned, timeout=30, interval=1, what="a preview with an estimated start")
    expect(preview).to_contain_text("Would wait in queue at position 1")
    assert names() == ["holder"]

    form.locator("input[name=gpus]").fill("1000")  # over the API's bound: refused as a submit
    page.click("#preview-button")
    expect(preview).to_contain_text("Would be refused")
    assert names() == ["holder"]
    assert watched.problems == [] or all("422" in p for p in watched.problems)
    watched.page.close()


def test_a_submit_right_after_typing_sends_no_preview_of_the_created_job(
    browser: Browser,  # noqa: F811
    start_api: Callable[..., ApiProcess],
    jobs: Jobs,
    namespace: str,
) -> None:
    """Typing schedules a preview 600 ms later; a Submit within that time, whose answer
    comes after it (held back here by 1.5 s), used to let the preview go out for a job
    that now existed: a dry run answered 409 and "Would be refused: already exists"."""
    api = start_api()
    watched = Watched(browser)
    page = watched.open(api, namespace)
    sent: list[tuple[float, str]] = []
    page.on("request", lambda r: sent.append((time.monotonic(), r.url))
            if r.method == "POST" and "/api/training/submit" in r.url else None)  # fmt: skip

    def slow_create(route: Route) -> None:
        if "dry_run=true" in route.request.url:
            route.continue_()
            return
        time.sleep(1.5)  # the create's answer comes after the preview's timer
        route.continue_()

    page.route("**/api/training/submit*", slow_create)
    form = page.locator("#submit")
    form.locator("input[name=name]").fill("quick")  # the input event: a preview due soon
    submitted_at = time.monotonic()
    form.locator("button[type=submit]").click()
    expect(page.locator("#notice")).to_have_text("Submitted quick", timeout=15_000)
    assert jobs.get("quick")["metadata"]["name"] == "quick"
    late = [url for at, url in sent if at > submitted_at and "dry_run=true" in url]
    assert late == []
    expect(page.locator("#preview")).to_be_hidden()
    assert watched.problems == []
    watched.page.close()
