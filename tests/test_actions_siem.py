"""splunk_hec and syslog against a loopback HEC server and a syslog receiver (UDP, TCP, TLS with a CA made
by the test), parsing what arrives the way a SIEM would: injected fields or records must stay inside
their value."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

import pytest
import trustme

from actions import build_actions
from actions.base import ActionContext
from actions.splunk_hec import SplunkHecAction
from actions.syslog import SyslogAction
from engine.errors import ConfigError, PermanentError, RetryableError
from engine.secrets import Secret
from tests.peers import Response
from tests.lane_support import Via, via  # noqa: F401 - fixture
from tests.service_peers import SplunkHecPeer, SyslogPeer, parse_cef, parse_rfc5424

KEY = "jti-1:failed-login:0"
NOW = 1_780_000_000.25
INJECT_5424 = 'x"] [evil@1 admin="true"] \n<34>1 2026-01-01T00:00:00Z fake host - - - forged'
INJECT_CEF = "x suser=root cs1=evil\r\nCEF:0|fake|fake|1|1|forged|10|act=allow | \\"


@pytest.fixture
def hec() -> Iterator[SplunkHecPeer]:
    peer = SplunkHecPeer()
    yield peer
    peer.close()


def splunk(peer: SplunkHecPeer, token: str = SplunkHecPeer.TOKEN, **extra: object) -> SplunkHecAction:
    destination = {"type": "splunk_hec", "url": peer.url, "token": Secret(token, "HEC_TOKEN"), "index": "identity",
                   **extra}
    return SplunkHecAction("siem", destination, ActionContext())


# -- splunk_hec ------------------------------------------------------------------------------------
def test_hec_indexes_the_event_with_fields(via: Via, hec: SplunkHecPeer) -> None:
    via.send(splunk(hec), {"event": {"type": "login.loginFailed", "user": "alice"}, "fields": {"rule": "r1",
                                                                                         "tags": ["a", "b"]}}, KEY)
    [event] = hec.events
    assert event == {"index": "identity", "sourcetype": "_json", "source": "idhooks",
                     "event": {"type": "login.loginFailed", "user": "alice"}, "fields": {"rule": "r1", "tags": ["a", "b"]}}
    assert hec.requests[0].headers["X-Splunk-Request-Channel"]  # a GUID per job, stable across retries


def test_hec_invalid_token_is_permanent_and_never_shown(via: Via, hec: SplunkHecPeer) -> None:
    with pytest.raises(PermanentError, match="answered 403: .*Invalid token") as failure:
        via.send(splunk(hec, token="wrong-token-9d1c"), {"event": {"a": 1}}, KEY)
    assert "wrong-token-9d1c" not in str(failure.value) + failure.value.response_snippet


@pytest.mark.parametrize(("answer", "error"), [
    (Response(503, {"text": "Server is busy", "code": 9}, {"Retry-After": "4"}), RetryableError),
    (Response(400, {"text": "Invalid data format", "code": 6}), PermanentError),
])
def test_hec_answers_are_classified(via: Via, hec: SplunkHecPeer, answer: Response, error: type) -> None:
    hec.script.append(answer)
    with pytest.raises(error) as failure:
        via.send(splunk(hec), {"event": {"a": 1}}, KEY)
    if error is RetryableError:
        assert failure.value.retry_after == 4


def test_hec_hostile_values_stay_json_data(via: Via, hec: SplunkHecPeer) -> None:
    nasty = 'a"}, "index": "main", "x": {"\r\n\x00\ud800' + "Z" * 100_000
    via.send(splunk(hec), {"event": {"msg": nasty, "n": float("nan"), "inf": float("inf")}, "fields": {"f": nasty}}, KEY)
    [event] = hec.events
    assert event["index"] == "identity" and event["event"]["msg"] == nasty.replace("\ud800", "\ufffd")
    assert event["event"]["n"] is None and event["event"]["inf"] is None  # strict JSON: no NaN/Infinity


def test_hec_slow_peer_hits_the_deadline(via: Via, hec: SplunkHecPeer) -> None:
    hec.hold.clear()
    with pytest.raises(RetryableError, match="timed out"):
        via.send(splunk(hec, timeout=0.3), {"event": {"a": 1}}, KEY)


def test_hec_rule_fields_must_be_flat() -> None:
    assert SplunkHecAction.check_rule_fields({"fields": {"a": {"b": 1}}}) == [
        "fields: expected a flat mapping of names to text (or lists of text)"]


# -- syslog ----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def tls_files(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, str]:
    """(server cert chain, server key, CA bundle) for 127.0.0.1, signed by a CA this test made."""
    folder = tmp_path_factory.mktemp("syslog-tls")
    server = ca.issue_cert("127.0.0.1")
    chain, key, bundle = folder / "chain.pem", folder / "key.pem", folder / "ca.pem"
    server.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in server.cert_chain_pems))
    ca.cert_pem.write_to_path(str(bundle))
    return str(chain), str(key), str(bundle)


@pytest.fixture(params=["udp", "tcp", "tls"])
def receiver(request: pytest.FixtureRequest, tls_files: tuple[str, str, str]) -> Iterator[SyslogPeer]:
    peer = SyslogPeer(request.param, tls_files[:2])
    yield peer
    peer.close()


def syslog(peer: SyslogPeer, tls_files: tuple[str, str, str] | None = None, **extra: object) -> SyslogAction:
    destination = {"type": "syslog", "host": "127.0.0.1", "port": peer.port, "protocol": peer.protocol, **extra}
    if peer.protocol == "tls" and tls_files:
        destination.setdefault("ca_file", tls_files[2])
    return SyslogAction("siem-syslog", destination, ActionContext(clock=lambda: NOW), hostname=lambda: "idh host")


def test_rfc5424_over_each_transport(receiver: SyslogPeer, tls_files: tuple[str, str, str]) -> None:
    syslog(receiver, tls_files).send({"message": "alice locked out", "severity": "err", "app_name": "idhooks",
                                      "structured_data": {"user": "alice", "origin@32473": {"ip": "203.0.113.9"}},
                                      "event_id": "lockout-alert"}, KEY)
    [line] = receiver.wait_for(1)
    record = parse_rfc5424(line)
    assert record.pri == 4 * 8 + 3 and record.version == "1" and record.timestamp == "2026-05-28T20:26:40.250000Z"
    assert record.hostname == "idh_host" and record.msgid == "lockout-alert"
    assert record.structured_data == {"idhooks@32473": {"user": "alice"}, "origin@32473": {"ip": "203.0.113.9"}}
    assert record.msg == "alice locked out"


def test_rfc5424_injection_stays_inside_its_value(receiver: SyslogPeer, tls_files: tuple[str, str, str]) -> None:
    syslog(receiver, tls_files).send({"message": INJECT_5424, "app_name": "app name\nx",
                                      "structured_data": {"user": INJECT_5424}, "event_id": "r"}, KEY)
    [line] = receiver.wait_for(1)
    assert "\n" not in line and "\r" not in line
    record = parse_rfc5424(line)
    assert record.app_name == "app_name_x"
    assert record.structured_data == {"idhooks@32473": {"user": INJECT_5424.replace("\n", "\\n")}}
    assert record.msg == INJECT_5424.replace("\n", "\\n")
    assert receiver.framing_errors == []


def test_cef_escaping_keeps_fields_and_records_apart(receiver: SyslogPeer, tls_files: tuple[str, str, str]) -> None:
    syslog(receiver, tls_files, format="cef").send(
        {"message": INJECT_CEF, "severity": "crit", "event_id": "id|x",
         "structured_data": {"suser": INJECT_CEF, "src": "203.0.113.9"}}, KEY)
    [line] = receiver.wait_for(1)
    assert "\n" not in line and "\r" not in line
    record = parse_rfc5424(line)
    header, extension = parse_cef(record.msg)
    assert header[:4] == ["CEF:0", "idhooks", "idhooks", header[3]] and header[4] == "id|x"
    assert header[5] == INJECT_CEF.replace("\r", " ").replace("\n", " ") and header[6] == "9"
    assert extension == {"suser": INJECT_CEF, "src": "203.0.113.9"}


def test_huge_message_is_shortened_to_fit_not_split(receiver: SyslogPeer, tls_files: tuple[str, str, str]) -> None:
    syslog(receiver, tls_files).send({"message": "m" * 100_000 + "\ud800",
                                      "structured_data": {"a": "é" * 50_000}}, KEY)
    [line] = receiver.wait_for(1)
    limit = 2048 if receiver.protocol == "udp" else 8192
    assert len(line.encode("utf-8")) <= limit
    record = parse_rfc5424(line)
    assert record.msg.startswith("mmm") and record.structured_data["idhooks@32473"]["a"].startswith("éé")


def test_tls_with_an_untrusted_certificate_is_permanent(tls_files: tuple[str, str, str]) -> None:
    peer = SyslogPeer("tls", tls_files[:2])
    try:
        with pytest.raises(PermanentError, match="TLS certificate not trusted"):
            syslog(peer).send({"message": "x"}, KEY)  # no ca_file: the system CAs do not know the test CA
    finally:
        peer.close()


def test_tcp_receiver_down_is_retryable() -> None:
    peer = SyslogPeer("tcp")
    peer.close()
    with pytest.raises(RetryableError, match="refused"):
        syslog(peer).send({"message": "x"}, KEY)


def test_stuck_tls_receiver_hits_the_deadline(tls_files: tuple[str, str, str]) -> None:
    peer = SyslogPeer("tcp", read=False)  # accepts, never reads: the TLS handshake never completes
    action = SyslogAction("s", {"type": "syslog", "host": "127.0.0.1", "port": peer.port, "protocol": "tls",
                                "ca_file": tls_files[2], "timeout": 0.3}, ActionContext())
    started = time.monotonic()
    try:
        with pytest.raises(RetryableError, match="timed out after 0.3s"):
            action.send({"message": "x"}, KEY)
    finally:
        peer.close()
    assert time.monotonic() - started < 5


def test_syslog_config_and_rule_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as failure:
        build_actions({"s": {"type": "syslog", "host": "h", "protocol": "sctp", "format": "leef",
                             "ca_file": "x.pem"}}, ActionContext())
    assert failure.value.problems == [
        "config.yaml:0: destinations.s.protocol: expected one of udp, tcp, tls, got 'sctp'",
        "config.yaml:0: destinations.s.format: expected one of rfc5424, cef, got 'leef'",
        "config.yaml:0: destinations.s.ca_file: only used with protocol: tls"]
    assert SyslogAction.check_rule_fields({"severity": "loud", "structured_data": {"bad id": {"k=v": 1}}}) == [
        "severity: expected one of emerg, alert, crit, err, error, warning, warn, notice, info, debug, got 'loud'",
        "structured_data.bad id: an SD-ID is 1-32 letters, digits, '_', '.', '-' with an optional @number",
        "structured_data.k=v: a parameter name is 1-32 letters, digits or '_'"]
