"""The slack action against a loopback server speaking Slack's incoming-webhook and chat.postMessage contracts."""

from __future__ import annotations

import pytest

from actions import build_actions
from actions.base import ActionContext
from actions.slack import SlackAction
from engine.errors import ConfigError, PermanentError, RetryableError
from engine.secrets import Secret
from tests.lane_support import Via, via  # noqa: F401 - fixture
from tests.peers import Response, SlackPeer, api_error, rate_limited, slack_peer  # noqa: F401 - fixture

KEY = "jti-1:failed-login:0"


def webhook(peer: SlackPeer) -> SlackAction:
    url = Secret(f"{peer.url}/services/T000/B000/XXXX", source="SLACK_WEBHOOK_URL")
    return SlackAction("security-slack", {"type": "slack", "webhook_url": url}, ActionContext())


def bot(peer: SlackPeer, token: str = SlackPeer.TOKEN, **extra: object) -> SlackAction:
    destination = {"type": "slack", "token": Secret(token), "api_url": peer.url + "/api", **extra}
    return SlackAction("security-bot", destination, ActionContext())


def test_incoming_webhook_posts_text_and_blocks(via: Via, slack_peer: SlackPeer) -> None:
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*alice* failed to log in \"twice\""}}]
    via.send(webhook(slack_peer), {"to": "security-slack", "text": "login failed", "blocks": blocks, "channel": ""}, KEY)
    [request] = slack_peer.requests
    assert request.path == "/services/T000/B000/XXXX"
    assert request.json() == {"text": "login failed", "blocks": blocks}


@pytest.mark.parametrize(("answer", "error", "message"), [
    (Response(400, b"invalid_payload"), PermanentError, "answered 400: invalid_payload"),
    (Response(404, b"no_service"), PermanentError, "answered 404: no_service"),
    (Response(500, b"rollup_error"), RetryableError, "answered 500: rollup_error"),
])
def test_incoming_webhook_errors(via: Via, slack_peer: SlackPeer, answer: Response, error: type, message: str) -> None:
    slack_peer.script.append(answer)
    with pytest.raises(error, match=message) as failure:
        via.send(webhook(slack_peer), {"text": "hi"}, KEY)
    assert "/services/T000" not in str(failure.value)  # the webhook URL is a secret


def test_rate_limit_is_retryable_with_retry_after(via: Via, slack_peer: SlackPeer) -> None:
    slack_peer.script.append(rate_limited(30))
    with pytest.raises(RetryableError, match=r"^\*\*\* answered 429: rate_limited$") as failure:
        via.send(webhook(slack_peer), {"text": "hi"}, KEY)
    assert failure.value.retry_after == 30


def test_bot_token_posts_to_chat_post_message(via: Via, slack_peer: SlackPeer) -> None:
    via.send(bot(slack_peer, channel="#security"), {"text": "user locked"}, KEY)
    [request] = slack_peer.requests
    assert request.path == "/api/chat.postMessage"
    assert request.headers["Authorization"] == f"Bearer {SlackPeer.TOKEN}"
    assert request.json() == {"text": "user locked", "channel": "#security"}


def test_rule_channel_overrides_destination_channel(via: Via, slack_peer: SlackPeer) -> None:
    via.send(bot(slack_peer, channel="#security"), {"text": "x", "channel": "#oncall"}, KEY)
    assert slack_peer.requests[0].json()["channel"] == "#oncall"


@pytest.mark.parametrize(("answer", "error", "message"), [
    (api_error("channel_not_found"), PermanentError, "chat.postMessage failed: channel_not_found"),
    (api_error("invalid_payload"), PermanentError, "chat.postMessage failed: invalid_payload"),
    (api_error("internal_error"), RetryableError, "chat.postMessage failed: internal_error"),
    (rate_limited(5), RetryableError, "answered 429"),
])
def test_chat_post_message_errors(via: Via, slack_peer: SlackPeer, answer: Response, error: type, message: str) -> None:
    slack_peer.script.append(answer)
    with pytest.raises(error, match=message):
        via.send(bot(slack_peer, channel="#security"), {"text": "x"}, KEY)


def test_wrong_token_is_permanent_and_never_shown(via: Via, slack_peer: SlackPeer) -> None:
    with pytest.raises(PermanentError, match="chat.postMessage failed: invalid_auth") as failure:
        via.send(bot(slack_peer, token="xoxb-wrong-9", channel="#security"), {"text": "x"}, KEY)
    assert "xoxb-wrong-9" not in str(failure.value) + failure.value.response_snippet


def test_destination_needs_exactly_one_of_webhook_url_and_token() -> None:
    with pytest.raises(ConfigError) as failure:
        build_actions({"s": {"type": "slack", "chanel": "#x"}}, ActionContext(source="/etc/idhooks/config.yaml"))
    assert failure.value.problems == [
        "/etc/idhooks/config.yaml:0: destinations.s.chanel: unknown key (did you mean 'channel'?); expected one "
        "of: webhook_url, token, channel, api_url, timeout, connect_timeout, type, retry",
        "/etc/idhooks/config.yaml:0: destinations.s: give exactly one of webhook_url (incoming webhook) or token "
        "(bot, chat.postMessage)",
    ]


def test_rule_needs_text_or_blocks() -> None:
    assert SlackAction.check_rule_fields({"to": "security-slack"}) == ["text: give text or blocks (or both)"]
