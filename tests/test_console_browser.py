"""The console in a real browser (Debian's chromium through Playwright) against a real `idhooks serve` with a
SQLite store and a loopback HTTP target: log in, filter events by user, open a decision trace, retry a dead
letter and see it delivered, try a rule in the playground, a viewer refused a retry, an XSS username shown as
text. Each page's screenshot is taken on the way (docs/console.md shows them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.api_support import OPERATOR_TOKEN, VIEWER_TOKEN, XSS_NAME, login_event
from tests.browser import DEAD_USER, LiveConsole, launch, require_chromium, screenshot_folder
from tests.conftest import sample_event
from tests.peers import HttpPeer, Response

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def target() -> Iterator[HttpPeer]:
    peer = HttpPeer(Response(200, b"ok"))
    peer.fail_first(2, status=400)  # the first two deliveries are refused for good: two dead letters
    yield peer
    peer.close()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, target: HttpPeer) -> Iterator[LiveConsole]:
    require_chromium()
    console = LiveConsole(tmp_path_factory.mktemp("console"), target.url)
    for name, ip in (("jane@example.com", "10.0.0.5"), ("bob@example.com", "198.51.100.7"), (XSS_NAME, "10.9.9.9"),
                     (DEAD_USER, "192.0.2.1"), (DEAD_USER, "192.0.2.2")):
        console.send(login_event(name, ip=ip))
    console.send(sample_event("user.userCreated"))
    console.send(sample_event(), secret="a-wrong-secret")  # one refused event for the quarantine
    console.wait(lambda: len(console.api("/deliveries?status=dead")["items"]) == 2, "two dead letters")
    yield console
    console.stop()


@pytest.fixture(scope="module")
def browser(live: LiveConsole) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return screenshot_folder(tmp_path_factory.mktemp("screenshots"))


def open_page(browser: Any, live: LiveConsole, token: str) -> Any:
    """A fresh browser context logged in with `token`; any JavaScript dialog fails the test."""
    context = browser.new_context(viewport={"width": 1100, "height": 720}, base_url=live.url)
    page = context.new_page()
    page.on("dialog", lambda dialog: pytest.fail(f"a script ran in the console: {dialog.message}"))
    page.goto("/console")
    assert page.url.endswith("/console/login")
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/console")
    return page


def test_log_in_filter_events_by_user_and_open_a_decision_trace(browser, live, shots):
    page = open_page(browser, live, OPERATOR_TOKEN)
    assert "ops (operator)" in page.inner_text("header")
    page.screenshot(path=str(shots / "overview.png"))
    page.click("nav >> text=Events")
    page.fill("input[name=user]", "bob@example.com")
    page.click("form.filters button")
    page.wait_for_url("**/console/events?**")
    users = page.locator("table.events a.user").all_inner_texts()
    assert users == ["bob@example.com"]
    page.fill("input[name=user]", "")
    with page.expect_navigation():  # a screenshot or click during the navigation races it
        page.click("form.filters button")
    page.screenshot(path=str(shots / "events.png"))
    page.fill("input[name=user]", "jane@example.com")
    with page.expect_navigation():
        page.click("form.filters button")
    page.click("table.events a.jti")
    page.wait_for_url("**/console/events/*")
    trace = page.inner_text("ol.decisions")
    assert "failed-login-alert matched" in trace
    assert "failed login for jane@example.com from 10.0.0.5" in trace
    assert "notify-target did not match" in trace and "jane@example.com" in trace
    assert "10.0.0.5" in page.inner_text("pre.raw >> nth=1")  # the raw body viewer
    page.screenshot(path=str(shots / "event.png"), full_page=False)
    page.click("dl.facts a")  # the user's timeline
    page.wait_for_url("**/console/users/**")
    assert "jane@example.com" in page.inner_text("main")
    page.screenshot(path=str(shots / "timeline.png"))
    page.context.close()


def test_retry_a_dead_letter_and_see_it_delivered(browser, live, target, shots):
    page = open_page(browser, live, OPERATOR_TOKEN)
    page.goto("/console/deliveries?status=dead")
    page.screenshot(path=str(shots / "deliveries.png"))
    dead_id = page.locator("table.jobs tbody tr >> nth=0").locator("td >> nth=0").inner_text()
    page.locator("table.jobs tbody tr >> nth=0").locator("button.retry").click()
    page.wait_for_selector("p.notice")
    assert f"Dead letter {dead_id} queued for delivery" in page.inner_text("p.notice")
    delivered = live.wait(lambda: [r for r in target.wait_for(3, timeout=0.2) if r.path == "/hook"][2:],
                          "the retried delivery at the target")
    assert delivered[0].json() == {"user": DEAD_USER}

    def status() -> str:
        return next(j["status"] for j in live.api("/deliveries")["items"] if j["id"] == dead_id)
    live.wait(lambda: status() == "done", "the retried job done")
    page.goto("/console/deliveries")
    assert "done" in page.locator("table.jobs tr", has_text=dead_id).inner_text()
    page.context.close()


def test_a_viewer_sees_no_retry_button_and_is_refused_if_it_posts(browser, live, shots):
    page = open_page(browser, live, VIEWER_TOKEN)
    page.goto("/console/deliveries?status=dead")
    assert page.locator("button.retry").count() == 0
    dead_id = page.locator("table.jobs tbody tr >> nth=0").locator("td >> nth=0").inner_text()
    csrf = page.get_attribute("form.logout input[name=csrf]", "value")
    answer = page.request.post(f"/console/deadletters/{dead_id}/retry", form={"csrf": csrf})
    assert answer.status == 403 and "viewer" in answer.text()
    assert dead_id in [j["id"] for j in live.api("/deliveries?status=dead")["items"]]
    page.context.close()


def test_try_a_rule_in_the_playground(browser, live, shots):
    page = open_page(browser, live, VIEWER_TOKEN)
    page.click("nav >> text=Playground")
    page.select_option("select[name=catalog]", "login.loginFailed")
    page.fill("textarea[name=rules]", "rules:\n  - id: try-me\n    event: login.loginFailed\n    when:\n"
                                      "      initiatorType: USER\n    actions:\n"
                                      "      - log: {message: 'hello {{ username }} from {{ ip }}'}\n")
    page.click("form.playground button[type=submit]")
    page.wait_for_selector("ol.decisions")
    text = page.inner_text("ol.decisions")
    assert "try-me matched" in text and "hello jane.doe@example.com from 198.51.100.23" in text
    page.screenshot(path=str(shots / "playground.png"))
    page.fill("textarea[name=rules]", "rules: [")
    page.click("form.playground button[type=submit]")
    assert "invalid YAML" in page.inner_text("div.error")
    page.context.close()


def test_an_xss_username_stays_text(browser, live, shots):
    page = open_page(browser, live, OPERATOR_TOKEN)
    page.goto("/console/events")
    assert XSS_NAME in page.locator("table.events a.user").all_inner_texts()
    assert page.locator("main img").count() == 0
    page.locator("table.events tr", has_text=XSS_NAME).locator("a.jti").click()
    page.wait_for_url("**/console/events/*")
    assert XSS_NAME in page.inner_text("dl.facts")
    assert page.locator("main img").count() == 0
    page.context.close()


def test_screenshots_of_the_other_pages(browser, live, shots):
    page = open_page(browser, live, OPERATOR_TOKEN)
    for name in ("quarantine", "rules"):
        page.goto(f"/console/{name}")
        page.screenshot(path=str(shots / f"{name}.png"))
    assert "signature" in page.goto("/console/quarantine").text()
    page.context.close()
    context = browser.new_context(viewport={"width": 1100, "height": 720}, base_url=live.url)
    login = context.new_page()
    login.goto("/console/login")
    login.screenshot(path=str(shots / "login.png"))
    context.close()
