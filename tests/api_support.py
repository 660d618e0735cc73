"""Helpers for the API and console tests: a Service (the real wiring, without threads or waitress) on a tmp
SQLite store with two tokens, events sent signed through the webhook, and a dead letter to retry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import falcon.testing

from engine.config.settings import load_config
from engine.server import Service
from engine.store import open_store
from engine.store.base import NewJob
from tests.conftest import basic_config, sample_event, signed

VIEWER_TOKEN = "viewer-token-5b1e9d0c7a"
OPERATOR_TOKEN = "operator-token-8f3a6c2e4d"
XSS_NAME = "<img src=x onerror=alert(1)>@example.com"
RULE = """
rules:
  - id: failed-login-alert
    event: login.loginFailed
    when:
      all:
        - claim: username
          exists: true
    actions:
      - log: {message: "failed login for {{ username }} from {{ ip }}"}
  - id: internal-logins
    event: login.loginFailed
    when:
      all:
        - path: $.initiatorIpAddress
          starts_with: "10."
    actions:
      - log: {message: "internal"}
"""
API_CONFIG = """
api:
  tokens:
    - {name: viewers, token_file: viewer-token, role: viewer}
    - {name: ops, token_file: operator-token, role: operator}
  mask: [claims.emailaddress, claims.username]
"""


def api_config(folder: Path, extra: str = API_CONFIG, rules: str = RULE, port: int = 8080) -> Path:
    """A config with the two tokens (files beside it) and `rules` as rules/logins.yaml."""
    (folder / "viewer-token").write_text(VIEWER_TOKEN + "\n")
    (folder / "operator-token").write_text(OPERATOR_TOKEN + "\n")
    path = basic_config(folder, extra=extra, port=port)
    (folder / "rules" / "logins.yaml").write_text(rules)
    return path


def login_event(username: str, ip: str = "198.51.100.23", user_id: str | None = None,
                alias: str = "login.loginFailed") -> dict[str, Any]:
    event = sample_event(alias, initiatorIpAddress=ip)
    body = next(iter(event["events"].values()))
    body["user"]["claims"] = [{"uri": "http://wso2.org/claims/username", "value": username},
                              {"uri": "http://wso2.org/claims/emailaddress", "value": username}]
    if user_id:
        body["user"]["id"] = user_id
    return event


@dataclass
class Deployment:
    service: Service
    client: falcon.testing.TestClient

    def send(self, event: dict[str, Any]) -> str:
        body, headers = signed(event)
        result = self.client.simulate_post("/webhooks/asgardeo", body=body, headers=headers)
        assert result.status_code == 202, result.text
        self.service.processor.run_once()
        return event["jti"]

    def get(self, path: str, token: str | None = VIEWER_TOKEN, **kwargs: Any) -> falcon.testing.Result:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.simulate_get(path, headers=headers, **kwargs)

    def post(self, path: str, token: str | None = OPERATOR_TOKEN, body: Any = None, **kwargs: Any):
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None:
            kwargs["body"] = body if isinstance(body, (bytes, str)) else json.dumps(body)
            headers["Content-Type"] = "application/json"
        return self.client.simulate_post(path, headers=headers, **kwargs)

    def dead_letter(self, destination: str = "target") -> str:
        store = self.service.store
        store.enqueue_jobs([NewJob(key=f"manual:{destination}:0", destination=destination, action="http",
                                   message={}, rule="r")], 1.0)
        job = store.list_jobs("pending", 1)[0]
        store.dead_job(job.id, "HTTP 500 from the target")
        return job.id


def deployment(folder: Path, extra: str = API_CONFIG, rules: str = RULE) -> Deployment:
    config = load_config(api_config(folder, extra, rules))
    service = Service(config, open_store(config.store))
    return Deployment(service, falcon.testing.TestClient(service.app))
