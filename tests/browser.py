"""Browser tests' helpers: Debian's chromium driven by Playwright (never a downloaded browser), and a live
`idhooks serve` with a real SQLite store, two tokens and a loopback HTTP target."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from tests.api_support import API_CONFIG, OPERATOR_TOKEN, api_config
from tests.conftest import ServerProcess, free_port, signed

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
DEAD_USER = "dead.letter@example.com"
TARGET_RULE = """
rules:
  - id: failed-login-alert
    event: login.loginFailed
    when:
      all:
        - claim: username
          exists: true
    actions:
      - log: {message: "failed login for {{ username }} from {{ ip }}"}
  - id: notify-target
    description: Tell the loopback target about one user's failed logins
    event: login.loginFailed
    when:
      all:
        - claim: username
          equals: dead.letter@example.com
    actions:
      - http: {to: target, method: POST, path: /hook, json: {user: "{{ username }}"}}
"""


def require_chromium() -> None:
    """Skip with a reason when Debian's chromium is missing; fail in CI (IDHOOKS_REQUIRE_BROWSER or CI)."""
    problem = None
    if not CHROMIUM.exists():
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError as exc:
            problem = f"playwright is not installed: {exc}"
    if problem:
        if os.environ.get("IDHOOKS_REQUIRE_BROWSER") or os.environ.get("CI"):
            pytest.fail(f"browser tests are required here but {problem}")
        pytest.skip(problem)


def launch(playwright: Any) -> Any:
    return playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)


class LiveConsole:
    """A real server on a free port; events are sent signed over HTTP like the hub sends them."""

    def __init__(self, folder: Path, target_url: str) -> None:
        self.folder = folder
        extra = API_CONFIG + f"destinations:\n  target: {{type: http, base_url: \"{target_url}\"}}\n" \
                             "delivery: {backoff_initial: 1s}\n"
        self.server = ServerProcess(api_config(folder, extra=extra, rules=TARGET_RULE), free_port())
        self.url = self.server.url

    def send(self, event: dict[str, Any], secret: str | None = None) -> str:
        body, headers = signed(event, secret) if secret else signed(event)
        requests.post(self.url + "/webhooks/asgardeo", data=body, headers=headers, timeout=10)
        return event["jti"]

    def api(self, path: str) -> Any:
        result = requests.get(self.url + "/api/v1" + path, headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"},
                              timeout=10)
        assert result.status_code == 200, result.text
        return result.json()

    def wait(self, check: Callable[[], Any], what: str, timeout: float = 15) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.server.log()[-3000:]}")

    def stop(self) -> None:
        self.server.stop()


def screenshot_folder(tmp: Path) -> Path:
    """IDHOOKS_SCREENSHOTS=docs/console makes the browser tests refresh the docs' screenshots; otherwise
    they are taken into a temporary folder (the same code runs either way)."""
    chosen = os.environ.get("IDHOOKS_SCREENSHOTS")
    folder = Path(chosen) if chosen else tmp
    folder.mkdir(parents=True, exist_ok=True)
    return folder
