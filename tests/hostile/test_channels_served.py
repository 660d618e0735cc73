"""Issue 12 items 9 and 10 through the whole path in one process: a signed event whose username is an
attack goes intake -> store -> rules -> jobs -> worker, and reaches Slack, SMTP and an HTTP target escaped
for each (real loopback peers; the rule's own mention, markup and path are intact)."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
from urllib.parse import unquote

import falcon.testing

from engine.config.settings import load_config
from engine.server import Service
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, sample_event, signed
from tests.peers import HttpPeer, SlackPeer, SmtpPeer, http_peer, slack_peer, smtp  # noqa: F401 - fixtures

ATTACK = '<!channel> <https://evil.example|Reset> <script>alert("x")</script> & abc?admin=1&x=#f/delete'
RULE = """
rules:
  - id: every-channel
    event: login.loginFailed
    actions:
      - slack: {to: chat, text: "<!here> failed login for {{ username }}"}
      - email: {to: mail, recipients: [soc@example.com], subject: "failed login {{ username }}",
                text: "failed login for {{ username }}", html: "<p>failed login for <b>{{ username }}</b></p>"}
      - http: {to: target, method: DELETE, path: "/users/{{ username }}/sessions", query: {who: "{{ username }}"}}
"""


def test_an_attack_in_a_username_reaches_every_channel_as_text(tmp_path: Path, slack_peer: SlackPeer,
                                                                smtp: SmtpPeer, http_peer: HttpPeer) -> None:
    config = basic_config(tmp_path, extra=f"""destinations:
  chat: {{type: slack, webhook_url: "{slack_peer.url}/services/T0/B0/X"}}
  mail: {{type: email, host: 127.0.0.1, port: {smtp.port}, from: idhooks@example.com}}
  target: {{type: http, base_url: "{http_peer.url}/api"}}
""")
    (tmp_path / "rules" / "all.yaml").write_text(RULE)
    event = sample_event()
    event["events"][next(iter(event["events"]))]["user"]["claims"][0]["value"] = ATTACK
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    service = Service(load_config(config), store)
    try:
        body, headers = signed(event)
        assert falcon.testing.TestClient(service.app).simulate_post(
            "/webhooks/asgardeo", body=body, headers=headers).status_code == 202
        assert service.processor.run_once() == 1
        while service.worker.run_once():
            pass
    finally:
        store.close()
    [slack] = slack_peer.requests
    assert slack.json()["text"] == ("<!here> failed login for &lt;!channel&gt; &lt;https://evil.example|Reset&gt; "
                                    "&lt;script&gt;alert(\"x\")&lt;/script&gt; &amp; abc?admin=1&amp;x=#f/delete")
    [(_, recipients, raw)] = smtp.messages
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert recipients == ["soc@example.com"]
    assert message.get_body(("html",)).get_content().strip() == (
        "<p>failed login for <b>&lt;!channel&gt; &lt;https://evil.example|Reset&gt; &lt;script&gt;alert(&#34;x&#34;)"
        "&lt;/script&gt; &amp; abc?admin=1&amp;x=#f/delete</b></p>")
    assert message.get_body(("plain",)).get_content().strip() == f"failed login for {ATTACK}"
    [call] = http_peer.requests
    empty, api, users, segment, sessions = call.path.split("/")
    assert (call.method, empty, api, users, sessions) == ("DELETE", "", "api", "users", "sessions")
    assert unquote(segment) == ATTACK
    assert call.query == {"who": [ATTACK]}
    assert call.headers["Idempotency-Key"] == f"{event['jti']}:every-channel:2"
