"""The web UI in headless Chromium (Debian's package, driven by Playwright).

Submit a job from the form, watch it run, cancel it, see CANCELLING then CANCELLED,
read its events, and find no error in the browser console; a screenshot is kept in
test-artifacts/.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from kubernetes import client
from playwright.sync_api import Browser, Page, expect, sync_playwright

from tests.support.api import ApiProcess
from tests.support.kube import EDITOR, account_with_role
from tests.support.operator import OperatorProcess

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    executable = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(executable).exists():
        pytest.fail("Debian's chromium is needed: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_FLAGS
        )
        yield browser
        browser.close()


def test_submit_watch_cancel_in_the_browser(
    browser: Browser,
    start_operator: Callable[..., OperatorProcess],
    start_api: Callable[..., ApiProcess],
    kube_api: client.ApiClient,
    namespace: str,
    user_roles: list[str],
):
    start_operator()
    api = start_api(SHUNTER_API_AUTH="kubernetes")
    token = account_with_role(kube_api, namespace, "ui-user", EDITOR)
    page: Page = browser.new_page()
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))

    page.goto(f"{api.base_url}/")
    expect(page).to_have_url(f"{api.base_url}/ui/")
    page.fill("#namespace", namespace)
    page.fill("#token", token)  # entered once, kept in the session
    page.click("#settings button")

    page.fill("#submit input[name=name]", "ui-job")
    page.fill("#submit input[name=run_for]", "600s")
    page.fill("#submit input[name=grace]", "2")
    page.check("#submit input[name=hang]")  # a trainer that ignores SIGTERM: a slow cancel
    page.click("#submit button")
    expect(page.locator("#notice")).to_have_text("Submitted ui-job")
    row = page.locator('tr[data-job="ui-job"]')
    expect(row.locator("td.phase")).to_have_text("RUNNING", timeout=30_000)

    page.reload()  # the token survives a reload (sessionStorage)
    expect(row.locator("td.phase")).to_have_text("RUNNING", timeout=10_000)
    button = row.locator("button.cancel")
    button.click()
    expect(button).to_be_disabled()  # while the request is in flight
    expect(row.locator("td.phase")).to_have_text("CANCELLING", timeout=10_000)
    expect(row.locator("td.phase")).to_have_text("CANCELLED", timeout=30_000)
    expect(page.locator("#notice")).to_have_text(
        "ui-job: Job cancelled (was running)", timeout=30_000
    )
    expect(row.locator("button.cancel")).to_have_count(0)

    row.locator("td.name").click()
    events = page.locator("#detail-events li")
    expect(events.filter(has_text="Terminating")).to_have_count(1, timeout=10_000)
    expect(events.filter(has_text="ForceDeleting")).to_have_count(1)
    expect(events.filter(has_text="Cancelled")).to_have_count(1)

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-cancelled.png"), full_page=True)
    with httpx.Client(base_url=api.base_url, timeout=5) as http:  # still responsive
        assert http.get("/healthz").status_code == 200
    assert problems == []
    page.close()
