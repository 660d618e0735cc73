"""`email`: send a text and/or HTML mail through an SMTP server (optionally STARTTLS and AUTH).

Templated headers (subject, recipients) have CR/LF folded to spaces before they reach the message, so
event data can never inject a header. In the `html` body every event value is HTML-escaped (the rule's
own markup is kept); the `text` body is plain text and stays as rendered. The Message-ID is derived from the idempotency key, so a retried
send carries the same Message-ID and mail systems can recognise the duplicate.
SMTP replies map to the two failure classes: 4xx and network errors retry, 5xx and a refused login are
permanent.
"""

from __future__ import annotations

import hashlib
import smtplib
import ssl
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, getaddresses
from typing import Any, Mapping

from actions.base import RETRY_FIELD, Action, ActionContext, Field, fold_line, require_any
from actions.deadline import deadline, watch
from actions.escaping import HTML
from engine.errors import PermanentError, RetryableError
from engine.secrets import redact, reveal


class EmailAction(Action):
    name = "email"
    destination_type = "email"
    rule_fields = {
        "to": Field("destination", required=True, help="a destination of type email"),
        "recipients": Field("list", help="addresses (default: the destination's recipients)"),
        "subject": Field("text", required=True),
        "text": Field("text", help="plain-text body"),
        "html": Field("text", help="HTML body (sent as an alternative part); event values are HTML-escaped",
                      escape=HTML),
        "retry": RETRY_FIELD,
    }
    destination_fields = {
        "host": Field("value", required=True), "port": Field("value", help="default 25"),
        "starttls": Field("value", help="upgrade with STARTTLS (default false)"),
        "tls": Field("value", help="implicit TLS from the first byte, SMTPS (usually port 465; default false)"),
        "username": Field("value"), "password": Field("value"),
        "from": Field("value", required=True, help="the sender address"),
        "recipients": Field("value", help="default recipients"),
        "ca_file": Field("value", help="CA bundle for a private CA"),
        "timeout": Field("value", help="seconds for the whole SMTP conversation (default 10)"),
    }
    test_fields = {"subject": "idhooks test: {{ type }}",
                   "text": "A test notification from idhooks: {{ type }} for {{ username }}."}

    def __init__(self, destination_name: str | None, destination: Mapping[str, Any] | None,
                 context: ActionContext) -> None:
        super().__init__(destination_name, destination, context)
        read = self.destination_reader()
        self.host = read.text("host", required=True)
        self.port = int(read.number("port", 25, minimum=1, whole=True))
        self.starttls, self.tls = read.boolean("starttls", False), read.boolean("tls", False)
        self.username, self.password = read.secret_text("username"), read.secret_text("password")
        self.sender = read.text("from", required=True)
        self.recipients = read.text_list("recipients")
        self.ca_file = read.text("ca_file")
        self.timeout = read.number("timeout", 10.0, minimum=0.001)
        if self.starttls and self.tls:
            read.add("tls", "give starttls (upgrade a plain connection) or tls (SMTPS), not both")
        if (self.username is None) != (self.password is None):
            read.add(None, "give both username and password, or neither")
        if self.sender and "@" not in self.sender:
            read.add("from", f"expected an email address, got {self.sender!r}")
        read.done()
        self.secrets = read.secrets()

    @classmethod
    def check_rule_fields(cls, fields: Mapping[str, Any]) -> list[str]:
        return super().check_rule_fields(fields) + require_any(fields, "text", "html")

    def send(self, rendered: Mapping[str, Any], idempotency_key: str) -> None:
        try:
            message = self.build_message(rendered, idempotency_key)
        except UnicodeError as exc:  # e.g. a lone surrogate from event data: no retry can encode it
            raise PermanentError(f"cannot encode the message: {exc}") from None
        try:
            self._deliver(message)
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentError(self._describe("login refused", exc)) from None
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentError(self._describe("every recipient refused", exc)) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PermanentError(self._describe("server does not support what the destination asks", exc)) from None
        except smtplib.SMTPResponseException as exc:
            error = PermanentError if exc.smtp_code >= 500 else RetryableError
            raise error(self._describe(f"server answered {exc.smtp_code}", exc)) from None
        except UnicodeError as exc:
            raise PermanentError(self._describe("cannot encode the message", exc)) from None
        except (smtplib.SMTPException, OSError) as exc:
            raise RetryableError(self._describe("cannot talk to the server", exc)) from None

    def build_message(self, rendered: Mapping[str, Any], idempotency_key: str) -> EmailMessage:
        """The message to send; raises PermanentError when no valid recipient remains."""
        recipients = self._recipients(rendered.get("recipients") or self.recipients)
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = ", ".join(recipients)
        message["Subject"] = fold_line(rendered.get("subject", ""))
        message["Date"] = formatdate(self.context.clock(), localtime=False)
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        message["Message-ID"] = f"<{digest}@idhooks>"
        text, html = rendered.get("text"), rendered.get("html")
        if text is not None:
            message.set_content(str(text))
            if html is not None:
                message.add_alternative(str(html), subtype="html")
        else:
            message.set_content(str(html or ""), subtype="html")
        return message

    @staticmethod
    def _recipients(values: Any) -> list[str]:
        """Each item must be exactly one valid address, so event data cannot add recipients."""
        values = [values] if isinstance(values, str) else list(values or [])
        if not values:
            raise PermanentError("no valid recipient: the list is empty")
        found = []
        for value in values:
            parsed = [addr for _, addr in getaddresses([fold_line(value)]) if addr]
            if len(parsed) != 1 or not _valid(parsed[0]):
                raise PermanentError(f"recipient {fold_line(value)!r} is not one valid email address")
            found.append(parsed[0])
        return found

    def _deliver(self, message: EmailMessage) -> None:
        """The whole SMTP conversation runs under one deadline of `timeout` seconds (actions/deadline.py):
        smtplib's timeout bounds each read, so a server answering one byte at a time would never end."""
        with deadline(self.timeout) as limit:
            try:
                with self._connect(limit.remaining()) as smtp:
                    watch(smtp.sock)
                    if self.starttls:
                        smtp.starttls(context=ssl.create_default_context(cafile=self.ca_file))
                        watch(smtp.sock)
                    if self.username is not None:
                        smtp.login(str(reveal(self.username)), str(reveal(self.password)))
                    smtp.send_message(message)
            except (smtplib.SMTPException, OSError):
                if limit.passed:
                    raise RetryableError(self._describe(f"deadline exceeded: the conversation took more than "
                                                        f"{self.timeout:g} s", TimeoutError("timed out"))) from None
                raise

    def _connect(self, timeout: float) -> smtplib.SMTP:
        if self.context.smtp_factory is not None:
            return self.context.smtp_factory(self.host, self.port, timeout=timeout)
        if self.tls:
            return _WatchedSMTPSSL(self.host, self.port, timeout=timeout,
                                   context=ssl.create_default_context(cafile=self.ca_file))
        return _WatchedSMTP(self.host, self.port, timeout=timeout)

    def _describe(self, what: str, exc: Exception) -> str:
        return redact(f"SMTP {self.host}:{self.port}: {what}: {exc}", self.secrets)


class _WatchedSMTP(smtplib.SMTP):
    """smtplib.SMTP whose socket is under the attempt's deadline from the moment it connects (the
    constructor already reads the greeting, which a slow server could drip)."""

    def _get_socket(self, host: str, port: int, timeout: float) -> Any:
        sock = super()._get_socket(host, port, timeout)
        watch(sock)
        return sock


class _WatchedSMTPSSL(smtplib.SMTP_SSL):
    def _get_socket(self, host: str, port: int, timeout: float) -> Any:
        sock = super()._get_socket(host, port, timeout)
        watch(sock)
        return sock


def _valid(address: str) -> bool:
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError):
        return False
    return "@" in address
