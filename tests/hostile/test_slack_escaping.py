"""Issue 12 item 9 (Slack): event data posted to Slack is escaped (`&`, `<`, `>`), in text, Block Kit and
attachments, over both contracts; a mention or link can only come from the rule's own text."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions.base import ActionContext
from actions.slack import SlackAction
from engine.match import RuleSet
from engine.secrets import Secret
from tests.hostile.channels import FIELDS, HOSTILE, PROPERTY, as_sent, compile_rule, genuine_values, \
    hostile_event, render
from tests.peers import SlackPeer, slack_peer  # noqa: F401 - fixture

ISSUE_USERNAME = "<!channel> <https://evil.example|Reset your password>"
LINK = "<https://idp.example.com/console|open the console>"
TEXT = ("<!here> *failed login* {{ username }} / {{ event.application.name }} / "
        "{{ event.reason.description | default('-', true) }} / {{ ip }} / {{ user_id }} / "
        "{% if event.tenant.name %}{{ event.tenant.name }}{% endif %} " + LINK)
ACTION = f"""\
      - slack:
          to: security-slack
          text: "{TEXT}"
          blocks:
            - type: section
              text: {{type: mrkdwn, text: "<!here> {{{{ username }}}} in {{{{ event.tenant.name }}}}"}}
              fields:
                - {{type: mrkdwn, text: "*App*: {{{{ event.application.name }}}}"}}
                - {{type: plain_text, text: "{{{{ event.reason.description }}}}"}}
            - type: context
              elements: [{{type: mrkdwn, text: "from {{{{ ip }}}} ({{{{ user_id }}}})"}}]
          attachments:
            - {{fallback: "{{{{ username }}}}", title: "{{{{ event.application.name }}}}"}}
"""
DESTINATION = {"security-slack": {"type": "slack", "webhook_url": "https://hooks.slack.invalid/services/T/B/X"}}


def slack_unescape(text: str) -> str:
    return text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")


def control_sequences(text: str) -> list[str]:
    """What Slack would parse as a mention, channel or link: every `<...>`."""
    return re.findall(r"<[^<>]*>", text)


def assert_inert(text: str, literal_sequences: list[str], plain: str) -> None:
    """`text` has exactly the rule's own control sequences, every `&` starts an entity, and unescaping it
    gives the plain text back (nothing lost, nothing added)."""
    assert control_sequences(text) == literal_sequences
    assert re.fullmatch(r"(?:[^&]|&(?:amp|lt|gt);)*", text, re.S), text[:200]
    assert slack_unescape(text) == plain


def expected_text(values: dict[str, str]) -> str:
    v = {k: as_sent(x) for k, x in values.items()}
    return (f"<!here> *failed login* {v['username']} / {v['application']} / {v['reason'] or '-'} / {v['ip']} / "
            f"{v['user_id']} / {v['tenant']} {LINK}")


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return compile_rule(tmp_path_factory.mktemp("rules"), ACTION, DESTINATION)


@pytest.fixture(params=["webhook", "bot"])
def slack(request: pytest.FixtureRequest, slack_peer: SlackPeer) -> Iterator[tuple[SlackAction, SlackPeer]]:
    """The action over one of Slack's two contracts, both served by the loopback peer."""
    if request.param == "webhook":
        destination = {"type": "slack", "webhook_url": Secret(f"{slack_peer.url}/services/T0/B0/XX")}
    else:
        destination = {"type": "slack", "token": Secret(SlackPeer.TOKEN), "api_url": slack_peer.url + "/api",
                       "channel": "#security"}
    yield SlackAction("security-slack", destination, ActionContext()), slack_peer


def post(ruleset: RuleSet, slack: tuple[SlackAction, SlackPeer], field: str, value: str) -> dict[str, Any]:
    """Render the rule for an event with `value` in `field`, send it, return the one message received."""
    action, peer = slack
    before = len(peer.requests)
    action.send(render(ruleset, hostile_event(field, value)), "jti:hostile:0")
    requests = peer.wait_for(before + 1)
    assert len(requests) == before + 1
    assert requests[-1].path in ("/services/T0/B0/XX", "/api/chat.postMessage")
    return requests[-1].json()


def test_the_issue_username_cannot_mention_or_link(ruleset: RuleSet, slack: tuple[SlackAction, SlackPeer]) -> None:
    message = post(ruleset, slack, "username", ISSUE_USERNAME)
    assert message["text"].startswith("<!here> *failed login* &lt;!channel&gt; &lt;https://evil.example|Reset your "
                                      "password&gt; / Customer Portal")
    assert control_sequences(message["text"]) == ["<!here>", LINK]
    assert message["blocks"][0]["text"]["text"] == \
        "<!here> &lt;!channel&gt; &lt;https://evil.example|Reset your password&gt; in acme"
    assert message["attachments"][0]["fallback"] == "&lt;!channel&gt; &lt;https://evil.example|Reset your password&gt;"


def test_an_entity_in_event_data_stays_text(ruleset: RuleSet, slack: tuple[SlackAction, SlackPeer]) -> None:
    message = post(ruleset, slack, "application", "&lt;!channel&gt; & co")
    assert " / &amp;lt;!channel&amp;gt; &amp; co / " in message["text"]


def test_a_deliberate_mention_comes_only_from_the_rule_text(tmp_path: Path, slack_peer: SlackPeer) -> None:
    ruleset = compile_rule(tmp_path, """\
      - slack:
          to: security-slack
          text: "{% if event.reason %}<!subteam^SAZ94GDB8> {% endif %}<@U024BE7LH> {{ '<!channel>' }} {{ username }}"
""", DESTINATION)
    action = SlackAction("security-slack", {"type": "slack", "webhook_url": Secret(f"{slack_peer.url}/services/A")},
                         ActionContext())
    action.send(render(ruleset, hostile_event("username", "<!everyone>")), "k")
    # literal text is trusted; anything interpolated, even a string literal inside {{ }}, is escaped
    assert slack_peer.wait_for(1)[0].json()["text"] == \
        "<!subteam^SAZ94GDB8> <@U024BE7LH> &lt;!channel&gt; &lt;!everyone&gt;"


@PROPERTY
@given(field=st.sampled_from(sorted(FIELDS)), value=HOSTILE)
def test_any_event_value_in_any_field_stays_inert(ruleset: RuleSet, slack: tuple[SlackAction, SlackPeer],
                                                  field: str, value: str) -> None:
    message = post(ruleset, slack, field, value)
    values = {**genuine_values(), field: value}
    sent = {k: as_sent(v) for k, v in values.items()}
    assert_inert(message["text"], ["<!here>", LINK], expected_text(values))
    section = message["blocks"][0]
    assert_inert(section["text"]["text"], ["<!here>"], f"<!here> {sent['username']} in {sent['tenant']}")
    assert_inert(section["fields"][0]["text"], [], f"*App*: {sent['application']}")
    assert_inert(section["fields"][1]["text"], [], sent["reason"])
    assert_inert(message["blocks"][1]["elements"][0]["text"], [], f"from {sent['ip']} ({sent['user_id']})")
    assert_inert(message["attachments"][0]["fallback"], [], sent["username"])
    assert_inert(message["attachments"][0]["title"], [], sent["application"])
