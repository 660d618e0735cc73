"""Issue 12 item 9 (email): event data in the html part arrives HTML-escaped (only the rule's own markup is
markup), the text part stays plain text, and no value can add a header or a recipient."""

from __future__ import annotations

import email
import email.policy
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from actions.base import ActionContext, fold_line
from actions.email import EmailAction
from engine.match import RuleSet
from tests.hostile.channels import FIELDS, HOSTILE, PROPERTY, as_sent, compile_rule, genuine_values, \
    hostile_event, render
from tests.peers import SmtpPeer, smtp  # noqa: F401 - fixture

HTML = ('<p>User <b>{{ username }}</b> failed at <i>{{ event.application.name }}</i>:</p>'
        '<p>{{ event.reason.description }} from <code>{{ ip }}</code> ({{ user_id }}, '
        '{% if event.tenant.name %}{{ event.tenant.name }}{% endif %})</p>'
        '<a href="https://idp.example.com/console">console</a>')
TEXT = "User {{ username }} failed at {{ event.application.name }}: {{ event.reason.description }} from {{ ip }} " \
       "({{ user_id }}, {{ event.tenant.name }})"
ACTION = f"""\
      - email:
          to: mail
          subject: "Failed login: {{{{ username }}}} at {{{{ event.application.name }}}}"
          text: "{TEXT}"
          html: '{HTML}'
"""
DESTINATION = {"mail": {"type": "email", "host": "127.0.0.1", "from": "idhooks@example.com",
                        "recipients": ["security@example.com"]}}
TAGS = ["p", "b", "i", "p", "code", "a"]
HEADERS = {"From", "To", "Subject", "Date", "Message-ID", "MIME-Version", "Content-Type"}


class _Reader(HTMLParser):
    """The start tags and the text of an HTML document, entities decoded."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        self.tags.append(tag)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def read_html(document: str) -> tuple[list[str], str]:
    reader = _Reader()
    reader.feed(document)
    reader.close()
    return reader.tags, "".join(reader.text)


def lines(text: str) -> str:
    """Line endings as one "\\n" (MIME transport writes CRLF) and no trailing newline."""
    return re.sub(r"\r\n?", "\n", text).rstrip("\n")


@pytest.fixture(scope="module")
def ruleset(tmp_path_factory: pytest.TempPathFactory) -> RuleSet:
    return compile_rule(tmp_path_factory.mktemp("rules"), ACTION, DESTINATION)


def deliver(ruleset: RuleSet, smtp: SmtpPeer, field: str, value: str) -> email.message.EmailMessage:
    """Render for an event with `value` in `field`, send through aiosmtpd, return the one message received."""
    action = EmailAction("mail", {**DESTINATION["mail"], "port": smtp.port}, ActionContext())
    before = len(smtp.messages)
    action.send(render(ruleset, hostile_event(field, value)), "jti:hostile:0")
    assert len(smtp.messages) == before + 1
    sender, recipients, raw = smtp.messages[-1]
    assert (sender, recipients) == ("idhooks@example.com", ["security@example.com"])
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_markup_in_event_data_is_text_in_the_html_part(ruleset: RuleSet, smtp: SmtpPeer) -> None:
    message = deliver(ruleset, smtp, "username", '<script>alert(1)</script><a href="https://evil.example">x</a>')
    html = message.get_body(("html",)).get_content()
    assert "<b>&lt;script&gt;alert(1)&lt;/script&gt;&lt;a href=&#34;https://evil.example&#34;&gt;x&lt;/a&gt;</b>" \
        in html
    assert read_html(html)[0] == TAGS
    assert '<script>alert(1)</script><a href="https://evil.example">x</a>' in message.get_body(("plain",)).get_content()


@PROPERTY
@given(field=st.sampled_from(sorted(FIELDS)), value=HOSTILE)
def test_any_event_value_in_any_field_stays_inert(ruleset: RuleSet, smtp: SmtpPeer,
                                                  field: str, value: str) -> None:
    message = deliver(ruleset, smtp, field, value)
    v = {k: as_sent(x) for k, x in {**genuine_values(), field: value}.items()}
    assert set(message.keys()) == HEADERS  # nothing added, nothing doubled
    subject = fold_line(f"Failed login: {v['username']} at {v['application']}")
    assert message["Subject"].split() == subject.split()
    assert message["To"] == "security@example.com"
    tags, text = read_html(message.get_body(("html",)).get_content())
    assert tags == TAGS
    assert lines(text) == lines(f"User {v['username']} failed at {v['application']}:{v['reason']} from {v['ip']} "
                                f"({v['user_id']}, {v['tenant']})console")
    plain = message.get_body(("plain",)).get_content()
    assert lines(plain) == lines(f"User {v['username']} failed at {v['application']}: {v['reason']} from {v['ip']} "
                                 f"({v['user_id']}, {v['tenant']})")


def test_the_rule_text_keeps_its_markup_and_a_safe_value_is_the_authors_choice(tmp_path: Path,
                                                                                 smtp: SmtpPeer) -> None:
    ruleset = compile_rule(tmp_path, """\
      - email: {to: mail, subject: s, html: "<h1>{{ '<b>' }}</h1>{{ '<i>trusted</i>' | safe }} {{ username | e }}"}
""", DESTINATION)
    message = deliver(ruleset, smtp, "username", "<u>")
    # a string literal interpolated is escaped like event data; `| safe` opts out; `| e` is not escaped twice
    assert lines(message.get_body(("html",)).get_content()) == "<h1>&lt;b&gt;</h1><i>trusted</i> &lt;u&gt;"
