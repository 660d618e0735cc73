"""The email action against a real SMTP server (aiosmtpd) on loopback: plain, STARTTLS and AUTH."""

from __future__ import annotations

import email
import email.policy
from pathlib import Path
import pytest

from actions import build_actions
from actions.base import ActionContext
from actions.email import EmailAction
from engine.config.settings import load_config
from engine.errors import ConfigError, PermanentError, RetryableError
from engine.secrets import Secret
from tests.conftest import free_port
from tests.peers import SmtpPeer, certificate, smtp, smtp_tls  # noqa: F401 - fixtures

KEY = "jti-1:new-user:1"
RENDERED = {"to": "mail", "recipients": ["alice@example.com", "Bob <bob@example.com>"],
            "subject": "New user alice", "text": "Hello alice\n", "html": "<p>Hello <b>alice</b></p>"}


def mailer(port: int, **extra: object) -> EmailAction:
    destination = {"type": "email", "host": "127.0.0.1", "port": port, "from": "idhooks@example.com", **extra}
    return EmailAction("mail", destination, ActionContext())


def parse(raw: bytes) -> email.message.EmailMessage:
    return email.message_from_bytes(raw, policy=email.policy.default)


def test_sends_text_and_html_parts_to_every_recipient(smtp: SmtpPeer) -> None:
    mailer(smtp.port).send(RENDERED, KEY)
    [(sender, recipients, raw)] = smtp.messages
    assert (sender, recipients) == ("idhooks@example.com", ["alice@example.com", "bob@example.com"])
    message = parse(raw)
    assert (message["Subject"], message["From"]) == ("New user alice", "idhooks@example.com")
    assert message["To"] == "alice@example.com, bob@example.com"
    assert message.get_body(("plain",)).get_content() == "Hello alice\r\n"
    assert message.get_body(("html",)).get_content() == "<p>Hello <b>alice</b></p>\r\n"


def test_retry_keeps_the_message_id(smtp: SmtpPeer) -> None:
    action = mailer(smtp.port)
    action.send(RENDERED, KEY)
    action.send(RENDERED, KEY)
    first, second = (parse(raw)["Message-ID"] for _, _, raw in smtp.messages)
    assert first == second


def test_cr_lf_in_templated_subject_and_recipients_cannot_inject_headers(smtp: SmtpPeer) -> None:
    rendered = {**RENDERED, "subject": "hi\r\nBcc: victim@example.com",
                "recipients": ["alice@example.com\r\nBcc: victim@example.com"]}
    with pytest.raises(PermanentError, match="recipient 'alice@example.com Bcc: victim@example.com' is not one "
                                             "valid email address"):
        mailer(smtp.port).send(rendered, KEY)
    assert smtp.messages == []
    mailer(smtp.port).send({**RENDERED, "subject": "hi\r\nBcc: victim@example.com"}, KEY)
    [(_, recipients, raw)] = smtp.messages
    message = parse(raw)
    assert message["Subject"] == "hi Bcc: victim@example.com"
    assert message["Bcc"] is None
    assert "victim@example.com" not in recipients


def test_no_valid_recipient_is_permanent(smtp: SmtpPeer) -> None:
    with pytest.raises(PermanentError, match="no valid recipient: the list is empty"):
        mailer(smtp.port).send({**RENDERED, "recipients": []}, KEY)
    assert smtp.messages == []


def test_starttls_and_auth(smtp_tls: SmtpPeer, certificate: tuple[Path, Path]) -> None:
    action = mailer(smtp_tls.port, starttls=True, ca_file=str(certificate[0]),
                    username=Secret(SmtpPeer.USER), password=Secret(SmtpPeer.PASSWORD))
    action.send(RENDERED, KEY)
    assert len(smtp_tls.messages) == 1


def test_implicit_tls_smtps(certificate: tuple[Path, Path]) -> None:
    peer = SmtpPeer(certificate, implicit_tls=True)
    try:
        mailer(peer.port, tls=True, ca_file=str(certificate[0]), username=Secret(SmtpPeer.USER),
               password=Secret(SmtpPeer.PASSWORD)).send(RENDERED, KEY)
        assert len(peer.messages) == 1
    finally:
        peer.close()


def test_auth_failure_is_permanent_and_hides_the_password(smtp_tls: SmtpPeer,
                                                          certificate: tuple[Path, Path]) -> None:
    action = mailer(smtp_tls.port, starttls=True, ca_file=str(certificate[0]),
                    username=Secret(SmtpPeer.USER), password=Secret("wrong-pass-42"))
    with pytest.raises(PermanentError, match=f"SMTP 127.0.0.1:{smtp_tls.port}: login refused: .*535") as failure:
        action.send(RENDERED, KEY)
    assert "wrong-pass-42" not in str(failure.value)
    assert smtp_tls.messages == []


def test_untrusted_certificate_fails_closed(smtp_tls: SmtpPeer) -> None:
    with pytest.raises(RetryableError, match="CERTIFICATE_VERIFY_FAILED"):
        mailer(smtp_tls.port, starttls=True).send(RENDERED, KEY)
    assert smtp_tls.messages == []


def test_server_down_is_retryable() -> None:
    with pytest.raises(RetryableError, match="cannot talk to the server: .*refused"):
        mailer(free_port()).send(RENDERED, KEY)


def test_destination_errors_carry_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("""\
destinations:
  mail:
    type: email
    host: smtp.example.com
    port: "587"
    username: ${SMTP_USER}
    form: idhooks@example.com
""")
    config = load_config(tmp_path / "config.yaml", env={"SMTP_USER": "mailer"})
    with pytest.raises(ConfigError) as failure:
        build_actions(config.destinations, ActionContext(source=str(config.path)))
    path = tmp_path / "config.yaml"
    assert failure.value.problems == [
        f"{path}:7: destinations.mail.form: unknown key (did you mean 'from'?); expected one of: host, port, "
        "starttls, tls, username, password, from, recipients, ca_file, timeout, type, retry",
        f"{path}:5: destinations.mail.port: expected a whole number >= 1, got '587'",
        f"{path}:3: destinations.mail: missing required key 'from'",
        f"{path}:3: destinations.mail: give both username and password, or neither",
    ]
