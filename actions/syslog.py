"""`syslog`: send one syslog message per alert over UDP, TCP or TLS, as RFC 5424 or as CEF for SIEMs.

Wire formats:
- RFC 5424: `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD-ID PARAM="VALUE" ...] BOM MSG`.
  Header fields are cut to their RFC lengths and any character outside printable US-ASCII becomes `_`, so
  event data cannot add or shift a field; PARAM-VALUEs escape `"`, `\\` and `]` (RFC 5424 6.3.3); in MSG
  and PARAM-VALUEs CR, LF, TAB and other control characters are written as `\\n`, `\\r`, `\\t`, `\\xNN`.
- CEF (`format: cef`): the MSG of an RFC 5424 frame is `CEF:0|idhooks|idhooks|VERSION|ID|NAME|SEV|EXT`;
  header values escape `\\` and `|`, extension values escape `\\`, `=`, CR and LF, and extension keys
  must be letters, digits and `_`, so event data cannot add a key or start a new record.
- Framing: UDP sends one datagram per message (RFC 5426); TCP and TLS (RFC 5425) use octet counting
  (`LEN SP MSG`, RFC 6587), so a message containing a newline can never be read as two.
A message above `max_message_bytes` is shortened (longest value first), never split.

Each send opens a connection, writes one frame and closes it, all within `timeout` seconds (a peer that
stops reading cannot hold a worker). Connection errors and timeouts retry; a TLS certificate that does not
verify is permanent (the destination's `ca_file` must be fixed).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
import time
from datetime import datetime, timezone
from typing import Any, Callable, Mapping

from actions.base import RETRY_FIELD, Action, ActionContext, Field, check_choice, clean_text
from engine import __version__
from engine.errors import PermanentError, RetryableError

SEVERITIES = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4, "warn": 4, "notice": 5,
              "info": 6, "debug": 7}
CEF_SEVERITY = {0: 10, 1: 10, 2: 9, 3: 7, 4: 5, 5: 3, 6: 1, 7: 0}
FACILITIES = {name: code for code, name in enumerate(
    ("kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv", "ftp"))}
FACILITIES.update({f"local{n}": 16 + n for n in range(8)})
DEFAULT_SD_ID = "idhooks@32473"  # 32473: the enterprise number RFC 5612 reserves for examples and private use
BOM = "\ufeff"
_SD_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,32}(@[0-9]+)?$")
_CEF_KEY = re.compile(r"^[A-Za-z0-9_]{1,63}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control(text: str) -> str:
    """Control characters as visible escapes: nothing in an event can end a line or a record."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


def header_token(value: object, limit: int) -> str:
    """An RFC 5424 header field: printable US-ASCII only (no space), at most `limit`, '-' when empty."""
    text = "".join(c if 33 <= ord(c) <= 126 else "_" for c in clean_text(value))[:limit]
    return text or "-"


def sd_value(value: object) -> str:
    """An RFC 5424 PARAM-VALUE: `"`, `\\` and `]` escaped, control characters made visible."""
    text = clean_text(value)
    return escape_control(text.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]"))


def cef_header(value: object) -> str:
    """A CEF header value: `\\` and `|` escaped; line breaks and control characters become spaces."""
    return _CONTROL.sub(" ", clean_text(value).replace("\\", "\\\\").replace("|", "\\|"))


def cef_value(value: object) -> str:
    """A CEF extension value: `\\`, `=` escaped, CR/LF as `\\r`/`\\n`, other control characters dropped."""
    text = clean_text(value).replace("\\", "\\\\").replace("=", "\\=").replace("\r", "\\r").replace("\n", "\\n")
    return _CONTROL.sub("", text)


class SyslogAction(Action):
    name = "syslog"
    destination_type = "syslog"
    rule_fields = {
        "to": Field("destination", required=True, help="a destination of type syslog"),
        "message": Field("text", required=True, help="the message (CEF: the event name)"),
        "severity": Field("text", help="emerg, alert, crit, err, warning, notice, info or debug (default warning)"),
        "app_name": Field("text", help="APP-NAME (default idhooks)"),
        "structured_data": Field("json", help="{SD-ID: {name: value}} or {name: value} (CEF: extension keys)"),
        "event_id": Field("text", default="{{ rule.id }}", help="RFC 5424 MSGID / CEF signature id (default: the rule id)"),
        "retry": RETRY_FIELD,
    }
    destination_fields = {
        "host": Field("value", required=True), "port": Field("value", help="default 514 (udp, tcp), 6514 (tls)"),
        "protocol": Field("value", help="udp (default), tcp or tls"),
        "format": Field("value", help="rfc5424 (default) or cef"),
        "facility": Field("value", help="default auth"),
        "ca_file": Field("value", help="CA bundle that signed the TLS server's certificate"),
        "max_message_bytes": Field("value", help="default 2048 (udp), 8192 (tcp, tls)"),
        "timeout": Field("value", help="seconds for connect and send (default 5)"),
    }
    test_fields = {"message": "idhooks test: {{ type }} for {{ username }}", "severity": "info"}

    def __init__(self, destination_name: str | None, destination: Mapping[str, Any] | None,
                 context: ActionContext, hostname: Callable[[], str] = socket.gethostname) -> None:
        super().__init__(destination_name, destination, context)
        read = self.destination_reader()
        self.host = read.text("host", required=True) or ""
        self.protocol = read.text("protocol", "udp")
        self.format = read.text("format", "rfc5424")
        facility = read.text("facility", "auth")
        for key, value, allowed in (("protocol", self.protocol, ("udp", "tcp", "tls")),
                                    ("format", self.format, ("rfc5424", "cef")), ("facility", facility, FACILITIES)):
            if value not in allowed:
                read.add(key, f"expected one of {', '.join(allowed)}, got {value!r}")
        self.facility = FACILITIES.get(str(facility), 4)
        self.port = int(read.number("port", 6514 if self.protocol == "tls" else 514, minimum=1, whole=True))
        self.ca_file = read.text("ca_file")
        if self.ca_file and self.protocol != "tls":
            read.add("ca_file", "only used with protocol: tls")
        self.max_bytes = int(read.number("max_message_bytes", 2048 if self.protocol == "udp" else 8192,
                                         minimum=480, whole=True))
        self.timeout = read.number("timeout", 5.0, minimum=0.001)
        read.done()
        self.hostname = header_token(hostname(), 255)

    @classmethod
    def check_rule_fields(cls, fields: Mapping[str, Any]) -> list[str]:
        problems = super().check_rule_fields(fields) + check_choice(fields, "severity", tuple(SEVERITIES))
        data = fields.get("structured_data")
        if data is None:
            return problems
        if not isinstance(data, Mapping):
            return problems + ["structured_data: expected a mapping"]
        for name, value in data.items():
            params = value if isinstance(value, Mapping) else {name: value}
            if isinstance(value, Mapping) and not _SD_NAME.match(str(name)):
                problems.append(f"structured_data.{name}: an SD-ID is 1-32 letters, digits, '_', '.', '-' "
                                "with an optional @number")
            problems += [f"structured_data.{key}: a parameter name is 1-32 letters, digits or '_'"
                         for key in params if not re.match(r"^[A-Za-z0-9_]{1,32}$", str(key))]
        return problems

    def send(self, rendered: Mapping[str, Any], idempotency_key: str) -> None:
        frame = self.frame(rendered).encode("utf-8")
        deadline = time.monotonic() + self.timeout
        try:
            if self.protocol == "udp":
                self._send_udp(frame, deadline)
            else:
                self._send_stream(f"{len(frame)} ".encode("ascii") + frame, deadline)
        except ssl.SSLCertVerificationError as exc:
            raise PermanentError(f"syslog {self.host}:{self.port}: TLS certificate not trusted: "
                                 f"{exc.verify_message} (check ca_file)") from None
        except (TimeoutError, socket.timeout):
            raise RetryableError(f"syslog {self.host}:{self.port}: timed out after {self.timeout:g}s") from None
        except OSError as exc:
            raise RetryableError(f"syslog {self.host}:{self.port} ({self.protocol}): "
                                 f"{exc.strerror or exc}") from None

    def _send_udp(self, frame: bytes, deadline: float) -> None:
        family, kind, proto, _, address = socket.getaddrinfo(self.host, self.port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, kind, proto) as sock:
            sock.settimeout(_remaining(deadline))
            sock.connect(address)
            sock.send(frame)

    def _send_stream(self, data: bytes, deadline: float) -> None:
        with socket.create_connection((self.host, self.port), timeout=_remaining(deadline)) as raw:
            if self.protocol != "tls":
                raw.settimeout(_remaining(deadline))
                raw.sendall(data)
                return
            context = ssl.create_default_context(cafile=self.ca_file)
            raw.settimeout(_remaining(deadline))
            with context.wrap_socket(raw, server_hostname=self.host) as sock:
                sock.settimeout(_remaining(deadline))
                sock.sendall(data)

    # -- formatting ------------------------------------------------------------------------------
    def frame(self, rendered: Mapping[str, Any]) -> str:
        """The whole message, shortened (longest value first) until its UTF-8 form fits max_message_bytes."""
        severity = _severity(rendered.get("severity"))
        values = {"message": clean_text(rendered.get("message") or "")}
        params = _params(rendered.get("structured_data"))
        for (sd_id, name), value in params.items():
            values[f"{sd_id}\0{name}"] = value
        while True:
            text = self._format(rendered, severity, values)
            size = len(text.encode("utf-8"))
            if size <= self.max_bytes:
                return text
            longest = max(values, key=lambda k: len(values[k]))
            if not values[longest]:
                raise PermanentError(f"a syslog message cannot fit in max_message_bytes ({self.max_bytes})")
            values[longest] = values[longest][:len(values[longest]) // 2] + "..."
            if len(values[longest]) <= 3:
                values[longest] = ""

    def _format(self, rendered: Mapping[str, Any], severity: int, values: dict[str, str]) -> str:
        stamp = datetime.fromtimestamp(self.context.clock(), tz=timezone.utc).isoformat(timespec="microseconds")
        header = (f"<{self.facility * 8 + severity}>1 {stamp.replace('+00:00', 'Z')} {self.hostname} "
                  f"{header_token(rendered.get('app_name') or 'idhooks', 48)} {os.getpid()} "
                  f"{header_token(rendered.get('event_id') or '-', 32)}")
        params = {tuple(k.split("\0")): v for k, v in values.items() if "\0" in k}
        if self.format == "cef":
            return f"{header} - {self._cef(rendered, severity, values['message'], params)}"
        return f"{header} {_structured(params)} {BOM}{escape_control(values['message'])}"

    @staticmethod
    def _cef(rendered: Mapping[str, Any], severity: int, message: str, params: dict[tuple, str]) -> str:
        head = "|".join(cef_header(v) for v in ("idhooks", "idhooks", __version__,
                                                 rendered.get("event_id") or "idhooks", message))
        extension = " ".join(f"{name}={cef_value(value)}" for (_, name), value in params.items()
                             if _CEF_KEY.match(name))
        return f"CEF:0|{head}|{CEF_SEVERITY[severity]}|{extension}"


def _remaining(deadline: float) -> float:
    """Seconds left for this send; a TimeoutError once none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("deadline passed")
    return left


def _severity(value: Any) -> int:
    text = str(value or "warning").strip().lower()
    if text.isdigit() and int(text) <= 7:
        return int(text)
    if text not in SEVERITIES:
        raise PermanentError(f"severity {text!r} is not one of {', '.join(SEVERITIES)}")
    return SEVERITIES[text]


def _params(data: Any) -> dict[tuple[str, str], str]:
    """(SD-ID, name) -> text; flat values go under idhooks@32473. Names were checked at load."""
    found: dict[tuple[str, str], str] = {}
    if not isinstance(data, Mapping):
        return found
    for key, value in data.items():
        if isinstance(value, Mapping):
            found.update({(str(key), str(k)): _text(v) for k, v in value.items()})
        else:
            found[(DEFAULT_SD_ID, str(key))] = _text(value)
    return found


def _text(value: Any) -> str:
    return clean_text(value if isinstance(value, str) else "" if value is None else value)


def _structured(params: dict[tuple, str]) -> str:
    if not params:
        return "-"
    elements: dict[str, list[str]] = {}
    for (sd_id, name), value in params.items():
        elements.setdefault(header_token(sd_id, 32), []).append(f'{header_token(name, 32)}="{sd_value(value)}"')
    return "".join(f"[{sd_id} {' '.join(items)}]" for sd_id, items in elements.items())
