"""`idhooks simulate`: the hub stand-in against real HTTP servers on loopback.

`HubEndpoint` is a small http.server app that behaves like idhooks' webhook endpoint (and, on other paths,
like the classic mistakes of the Asgardeo troubleshooting list), recording what it received.
"""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from engine import catalog
from engine.offline import simulate
from engine.cli import main
from engine.errors import ConfigError, SignatureError
from engine.secrets import Secret
from engine.verify.signature import verify
from tests.conftest import SECRET, basic_config, free_port, wire_vector

TOPIC = "acme.b5e0d3c2.schema.wso2.v1.event.login"
MISTAKES = {  # path -> (status, content type, body template, extra headers)
    "/trailing-newline": (200, "text/plain", "{c}\n", {}),
    "/json-type": (200, "application/json", "{c}", {}),
    "/wrapped": (200, "application/json", '{{"challenge": "{c}"}}', {}),
    "/redirect": (301, "text/plain", "", {"Location": "https://example.test/webhooks/asgardeo"}),
    "/empty": (200, "text/plain", "", {}),
}


class HubEndpoint:
    """A real HTTP server on 127.0.0.1 standing in for an idhooks webhook endpoint."""

    def __init__(self) -> None:
        self.gets: list[dict[str, list[str]]] = []
        self.posts: list[tuple[bytes, dict[str, str]]] = []
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.01,), daemon=True)
        self.thread.start()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def answer(self, status: int, body: bytes = b"", content_type: str = "text/plain",
                       headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                endpoint.gets.append(query)
                challenge = query.get("hub.challenge", [""])[0]
                if parts.path in MISTAKES:
                    status, content_type, template, headers = MISTAKES[parts.path]
                    return self.answer(status, template.format(c=challenge).encode(), content_type, headers)
                topic = query.get("hub.topic", [""])[0]
                if parts.path != "/webhooks/asgardeo" or not fnmatch.fnmatchcase(topic, "acme.*"):
                    return self.answer(404, b"not found")
                self.answer(200, challenge.encode())

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                endpoint.posts.append((body, headers))
                signature = headers.get("x-hub-signature") or headers.get("x-wso2-event-signature", "")
                try:
                    verify(body, signature, [Secret(SECRET)])
                except SignatureError as exc:
                    return self.answer(401, str(exc).encode())
                self.answer(202, b"")

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def endpoint() -> Iterator[HubEndpoint]:
    server = HubEndpoint()
    yield server
    server.close()


def run_cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- verify --------------------------------------------------------------------------------------------
def test_verify_accepts_an_exact_echo(endpoint: HubEndpoint, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "simulate", "verify", "--url", endpoint.url + "/webhooks/asgardeo",
                           "--topic", TOPIC)
    assert code == 0
    assert "status:       200\n" in out
    assert "content type: text/plain\n" in out
    assert "OK: the endpoint echoed the challenge exactly; the hub would accept this subscribe." in out
    assert "note: http:// is fine for a local test" in out
    query = endpoint.gets[0]
    assert query["hub.mode"] == ["subscribe"] and query["hub.topic"] == [TOPIC]
    assert query["hub.lease_seconds"] == [str(simulate.LEASE_SECONDS)]


def test_verify_reports_404_for_a_topic_not_agreed(endpoint: HubEndpoint, capsys: pytest.CaptureFixture) -> None:
    code, out, _ = run_cli(capsys, "simulate", "verify", "--url", endpoint.url + "/webhooks/asgardeo",
                           "--topic", "other.x.schema.wso2.v1.event.login", "--mode", "unsubscribe")
    assert code == 1
    assert "FAIL: status 404 (expected 200)\n  fix: either the path is wrong" in out
    assert "outside the webhook's `topics` patterns" in out
    assert endpoint.gets[0]["hub.mode"] == ["unsubscribe"] and "hub.lease_seconds" not in endpoint.gets[0]


@pytest.mark.parametrize("path, expected", [
    ("/trailing-newline", "FAIL: the body ends with a newline after the challenge\n"
                          "  fix: echo the challenge exactly: no trailing newline (print/echo add one)"),
    ("/json-type", "FAIL: content type 'application/json' (expected 'text/plain')\n"
                   "  fix: answer the verification with Content-Type: text/plain"),
    ("/wrapped", "FAIL: the challenge is wrapped in other text (JSON, quotes or HTML)"),
    ("/redirect", "FAIL: redirect (301) to https://example.test/webhooks/asgardeo\n"
                  "  fix: the hub does not follow redirects"),
    ("/empty", "FAIL: the body is empty"),
    ("/wrong-path", "FAIL: status 404 (expected 200)"),
])
def test_verify_explains_each_mistake(endpoint: HubEndpoint, capsys: pytest.CaptureFixture, path: str,
                                      expected: str) -> None:
    code, out, _ = run_cli(capsys, "simulate", "verify", "--url", endpoint.url + path, "--topic", TOPIC)
    assert code == 1
    assert expected in out
    assert "OK:" not in out


def test_verify_reports_a_closed_port(capsys: pytest.CaptureFixture) -> None:
    url = f"http://127.0.0.1:{free_port()}/webhooks/asgardeo"
    code, out, _ = run_cli(capsys, "simulate", "verify", "--url", url, "--topic", TOPIC)
    assert code == 1
    assert f"FAIL: cannot connect to {url}: ConnectionError\n  fix: start idhooks" in out


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a test certificate")
def test_verify_explains_an_untrusted_certificate(endpoint: HubEndpoint, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=30)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    endpoint.server.socket = context.wrap_socket(endpoint.server.socket, server_side=True)
    url = endpoint.url.replace("http://", "https://") + "/webhooks/asgardeo"
    code, out, _ = run_cli(capsys, "simulate", "verify", "--url", url, "--topic", TOPIC)
    assert code == 1
    assert "FAIL: TLS handshake failed: " in out
    assert "  fix: the hub accepts only a certificate from a public CA, with its full chain" in out
    assert "note:" not in out


def test_each_verification_uses_a_fresh_challenge(endpoint: HubEndpoint) -> None:
    first = simulate.verify_subscription(endpoint.url + "/webhooks/asgardeo", TOPIC)
    second = simulate.verify_subscription(endpoint.url + "/webhooks/asgardeo", TOPIC)
    assert first.ok and second.ok
    assert first.challenge != second.challenge
    assert [q["hub.challenge"] for q in endpoint.gets] == [[first.challenge], [second.challenge]]


def test_verify_rejects_a_url_that_is_not_http(capsys: pytest.CaptureFixture) -> None:
    code, _, err = run_cli(capsys, "simulate", "verify", "--url", "ftp://127.0.0.1/x", "--topic", TOPIC)
    assert code == 2
    assert err.startswith("usage: idhooks simulate verify ")
    assert err.endswith("\nidhooks simulate verify: error: --url 'ftp://127.0.0.1/x': expected an http:// or https:// "
                        "URL\n")


# -- serialisation ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt, wire, header, digest", [
    ("hub", "login.loginFailed.hub.body", "X-Hub-Signature",
     "sha256=d5f4be6103bf330f97ad10c0f257f5e480821279e28f52e810c150f14760d8ad"),
    ("wso2-is", "login.loginFailed.is-http.body", "x-wso2-event-signature",
     "sha256=ce158fda236cb42d138e1ac01afb2fb702bb84df8697e2c815a0a53adc78ed72"),
])
def test_serialisation_matches_the_real_publishers_byte_for_byte(fmt: str, wire: str, header: str,
                                                                 digest: str) -> None:
    event = catalog.entries()["login.loginFailed"].sample()
    body, headers = simulate.serialize(event, fmt, Secret("my-webhook-secret"))
    assert body == wire_vector(wire)
    assert headers == {"Content-Type": "application/json", header: digest}


# -- send ------------------------------------------------------------------------------------------------
def received_events(endpoint: HubEndpoint) -> list[dict[str, Any]]:
    return [json.loads(body) for body, _ in endpoint.posts]


def event_body(event: dict[str, Any]) -> dict[str, Any]:
    return next(iter(event["events"].values()))


@pytest.mark.parametrize("fmt, header, separator", [("hub", "x-hub-signature", b'", "'),
                                                    ("wso2-is", "x-wso2-event-signature", b'","')])
def test_send_signs_fresh_events_in_each_format(endpoint: HubEndpoint, capsys: pytest.CaptureFixture,
                                                monkeypatch: pytest.MonkeyPatch, fmt: str, header: str,
                                                separator: bytes) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    code, out, _ = run_cli(capsys, "simulate", "send", "login.loginFailed", "--url", endpoint.url + "/webhooks/x",
                           "--secret-env", "HOOK_SECRET", "--count", "3", "--format", fmt)
    assert code == 0, out
    assert out.count(" 202 Accepted jti=") == 3
    assert out.endswith(f"sent 3 {fmt} event(s) to {endpoint.url}/webhooks/x: 3 accepted (2xx), "
                        "0 rejected, 0 without an answer\n")
    assert all(header in headers and separator in body for body, headers in endpoint.posts)
    events = received_events(endpoint)
    assert len({e["jti"] for e in events}) == 3
    assert all(e["jti"] != "c6a2e9f1-0b7d-4e3a-8f5c-1d9b2a7e4c60" and e["iat"] > 1767604498120 for e in events)
    assert SECRET not in out


def test_set_overrides_fields_and_claims(endpoint: HubEndpoint, capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    code, out, _ = run_cli(capsys, "simulate", "send", "login.loginFailed", "--url", endpoint.url + "/w",
                           "--secret-env", "HOOK_SECRET", "--set", "initiatorIpAddress=203.0.113.9",
                           "--set", "claims.username=bob", "--set", "claims.emailaddress=bob@example.com",
                           "--set", "reason.context.failedStep.step=2", "--set", "risk.flags=[\"tor\"]")
    assert code == 0, out
    body = event_body(received_events(endpoint)[0])
    assert body["initiatorIpAddress"] == "203.0.113.9"
    assert body["user"]["claims"] == [{"uri": "http://wso2.org/claims/username", "value": "bob"},
                                      {"uri": "http://wso2.org/claims/emailaddress", "value": "bob@example.com"}]
    assert body["reason"]["context"]["failedStep"]["step"] == 2
    assert body["risk"] == {"flags": ["tor"]}


def test_set_creates_user_claims_when_the_event_has_none() -> None:
    template = catalog.entries()["role.roleCreated"].sample()
    event = simulate.build_event(template, [("claims.username", "bob")], jti="j", iat_ms=1)
    assert event_body(event)["user"] == {"claims": [{"uri": "http://wso2.org/claims/username", "value": "bob"}]}
    assert "user" not in event_body(template)


def test_a_wrong_secret_is_reported_with_its_fix(endpoint: HubEndpoint, capsys: pytest.CaptureFixture,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", "not-the-secret")
    code, out, _ = run_cli(capsys, "simulate", "send", "user.userDeleted", "--url", endpoint.url + "/w",
                           "--secret-env", "HOOK_SECRET", "--format", "wso2-is")
    assert code == 1
    assert "[1/1] 401 Unauthorized jti=" in out
    assert "  fix: the signature did not verify: --secret-env must hold the webhook's secret" in out
    assert "1 rejected" in out and "not-the-secret" not in out


@pytest.mark.parametrize("argv, message", [
    (["login.loginFailed", "--secret-env", "IDHOOKS_TEST_UNSET_VAR"],
     "idhooks simulate send: error: --secret-env IDHOOKS_TEST_UNSET_VAR: the environment variable "
     "IDHOOKS_TEST_UNSET_VAR is not set or empty; export the webhook secret in it, e.g. "
     "`export IDHOOKS_TEST_UNSET_VAR=\"$(cat var/webhook-secret)\"`\n"),
    (["login.loginFailed", "--secret-env", "s3cret-pasted-by-mistake"],
     "idhooks simulate send: error: --secret-env takes the NAME of an environment variable holding the secret "
     "(e.g. --secret-env ASGARDEO_WEBHOOK_SECRET), not the secret itself; no such variable is set\n"),
    (["login.loginFaild", "--secret-env", "HOOK_SECRET"],
     "idhooks simulate send: error: unknown event 'login.loginFaild' (did you mean 'login.loginFailed'?): give a "
     "catalog alias or alias/variant (list them with `idhooks catalog`) or the path of a JSON file\n"),
    (["login.loginFailed", "--secret-env", "HOOK_SECRET", "--set", "initiatorIpAddress"],
     "idhooks simulate send: error: --set 'initiatorIpAddress': expected path=value, e.g. "
     "initiatorIpAddress=203.0.113.9\n"),
    (["login.loginFailed", "--secret-env", "HOOK_SECRET", "--set", "tenant.name.first=x"],
     "idhooks simulate send: error: --set tenant.name.first: tenant.name is not an object in this event\n"),
])
def test_bad_input_is_a_clear_error_and_sends_nothing(endpoint: HubEndpoint, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch, argv: list[str],
                                                      message: str) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    monkeypatch.delenv("IDHOOKS_TEST_UNSET_VAR", raising=False)
    code, out, err = run_cli(capsys, "simulate", "send", *argv, "--url", endpoint.url + "/w")
    assert (code, out) == (2, "")
    assert err.startswith("usage: idhooks simulate send ") and err.endswith("\n" + message)
    assert endpoint.posts == []


def test_send_reads_an_event_file(endpoint: HubEndpoint, capsys: pytest.CaptureFixture,
                                  monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    custom = catalog.entries()["user.userDeleted"].sample()
    event_body(custom)["initiatorType"] = "SYSTEM"
    path = tmp_path / "event.json"
    path.write_text(json.dumps(custom))
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    code, out, _ = run_cli(capsys, "simulate", "send", str(path), "--url", endpoint.url + "/w",
                           "--secret-env", "HOOK_SECRET")
    assert code == 0, out
    assert event_body(received_events(endpoint)[0])["initiatorType"] == "SYSTEM"


def test_a_file_that_is_not_an_event_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "event.json"
    path.write_text('{"jti": "x"}')
    with pytest.raises(ConfigError) as info:
        simulate.load_template(str(path))
    assert str(info.value) == f"{path}: expected a Security Event Token with an 'events' object"


def test_a_closed_port_fails_the_send(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    code, out, _ = run_cli(capsys, "simulate", "send", "login.loginSuccess", "--secret-env", "HOOK_SECRET",
                           "--url", f"http://127.0.0.1:{free_port()}/w")
    assert code == 1
    assert "[1/1] ERROR ConnectionError jti=" in out and "1 without an answer" in out


def test_rate_paces_sends_on_the_injected_clock(endpoint: HubEndpoint) -> None:
    now = [100.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds

    sender = simulate.EventSender(endpoint.url + "/w", Secret(SECRET), clock=lambda: now[0], sleep=sleep)
    results = list(sender.send_all(catalog.entries()["login.loginFailed"].sample(), [], count=3, rate=4))
    assert [r.status for r in results] == [202, 202, 202]
    assert sleeps == [0.25, 0.25]


# -- against the real `idhooks serve` ---------------------------------------------------------------------
@pytest.fixture
def idhooks(serve: Any, tmp_path: Path) -> Any:
    return serve(basic_config(tmp_path))


def test_verify_against_the_real_server(idhooks: Any, capsys: pytest.CaptureFixture) -> None:
    url = idhooks.url + "/webhooks/asgardeo"
    code, out, _ = run_cli(capsys, "simulate", "verify", "--url", url, "--topic", TOPIC)
    assert code == 0, out
    assert "OK: the endpoint echoed the challenge exactly" in out
    code, out, _ = run_cli(capsys, "simulate", "verify", "--url", url, "--topic", "globex.x.schema.wso2.v1.event.login")
    assert code == 1
    assert ("FAIL: status 404: the endpoint does not agree to this topic\n"
            "  fix: add a pattern matching it to the webhook's `topics` in config.yaml") in out
    code, out, _ = run_cli(capsys, "simulate", "verify", "--url", idhooks.url + "/webhooks/typo", "--topic", TOPIC)
    assert code == 1
    assert "FAIL: status 404 (expected 200)\n  fix: either the path is wrong" in out


def test_send_in_each_format_is_accepted_by_the_real_server(idhooks: Any, capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url = idhooks.url + "/webhooks/asgardeo"
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    for fmt in ("hub", "wso2-is"):
        code, out, _ = run_cli(capsys, "simulate", "send", "login.loginFailed", "--url", url, "--format", fmt,
                               "--secret-env", "HOOK_SECRET", "--set", "claims.username=bob", "--count", "2")
        assert code == 0, out
        assert out.count(" 202 Accepted jti=") == 2
    monkeypatch.setenv("HOOK_SECRET", "wrong")
    code, out, _ = run_cli(capsys, "simulate", "send", "login.loginFailed", "--url", url, "--secret-env", "HOOK_SECRET")
    assert code == 1 and "[1/1] 401 Unauthorized" in out
    metrics = requests.get(idhooks.url + "/metrics", timeout=5).text
    assert 'idhooks_deliveries_received_total{outcome="accepted",webhook="asgardeo"} 4.0' in metrics
    assert 'idhooks_deliveries_received_total{outcome="bad_signature",webhook="asgardeo"} 1.0' in metrics


def test_set_values_reach_the_rule_context(serve: Any, tmp_path: Path, capsys: pytest.CaptureFixture,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule that holds only for the --set values matches the event sent with them, and not the plain sample
    (the control, sent first, so it is evaluated before the one we wait for)."""
    config = basic_config(tmp_path)
    (tmp_path / "rules" / "probe.yaml").write_text("""
rules:
  - id: simulate-probe
    event: login.loginFailed
    when:
      all:
        - {claim: username, equals: bob}
        - {path: $.initiatorIpAddress, equals: 203.0.113.9}
        - {path: $.reason.context.failedStep.step, equals: 2}
    actions:
      - log: {message: "probe saw {{ username }} from {{ ip }} at step {{ event.reason.context.failedStep.step }}"}
""")
    server = serve(config)
    if requests.get(server.url + "/readyz", timeout=5).json()["rules"].get("count") != 1:
        pytest.skip("`idhooks serve` does not load rule files in this tree yet (rules engine not wired)")
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    url = server.url + "/webhooks/asgardeo"
    control = send_and_get_jti(capsys, "login.loginFailed", "--url", url, "--secret-env", "HOOK_SECRET")
    probe = send_and_get_jti(capsys, "login.loginFailed", "--url", url, "--secret-env", "HOOK_SECRET",
                             "--set", "claims.username=bob", "--set", "initiatorIpAddress=203.0.113.9",
                             "--set", "reason.context.failedStep.step=2")
    deadline = time.monotonic() + 10
    while "probe saw" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    matched = [line for line in server.log().splitlines() if "rules matched" in line]
    assert any(f"jti={probe} " in line and "simulate-probe" in line for line in matched), server.log()
    assert not any(f"jti={control} " in line for line in matched)
    assert "probe saw bob from 203.0.113.9 at step 2" in server.log()


def send_and_get_jti(capsys: pytest.CaptureFixture, *argv: str) -> str:
    code, out, _ = run_cli(capsys, "simulate", "send", *argv)
    assert code == 0, out
    return out.split(" jti=", 1)[1].split()[0]


@pytest.mark.parametrize("option, value", [("--count", "0"), ("--rate", "-1"), ("--count", "many")])
def test_count_and_rate_must_be_positive(capsys: pytest.CaptureFixture, option: str, value: str) -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", "send", "login.loginFailed", "--url", "http://127.0.0.1:1/w", "--secret-env", "X",
              option, value])
    assert info.value.code == 2
    assert f"argument {option}: expected a number above 0, got '{value}'" in capsys.readouterr().err


def test_count_drives_a_threshold_rule_as_the_cookbook_says(serve: Any, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/cookbook.md: `--set claims.username=bob --count 5` fires the brute-force rule once; 4 do not."""
    config = basic_config(tmp_path)
    (tmp_path / "rules" / "brute.yaml").write_text("""
rules:
  - id: brute-force-user
    event: login.loginFailed
    threshold: {count: 5, within: 10m, group_by: [claims.username]}
    suppress: {for: 30m}
    actions:
      - log: {message: "brute force: {{ count }} failures for {{ username }}"}
""")
    server = serve(config)
    monkeypatch.setenv("HOOK_SECRET", SECRET)
    url = server.url + "/webhooks/asgardeo"
    for user, count in (("alice", "4"), ("bob", "5")):
        send_and_get_jti(capsys, "login.loginFailed", "--url", url, "--secret-env", "HOOK_SECRET",
                         "--set", f"claims.username={user}", "--count", count)
    deadline = time.monotonic() + 10
    while "brute force:" not in server.log() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert re.findall(r"brute force: (\d+ failures for \w+)", server.log()) == ["5 failures for bob"]


def test_a_catalog_variant_is_an_event_source() -> None:
    body = next(iter(simulate.load_template("login.loginFailed/no-flow-fields")["events"].values()))
    assert "initiatorType" not in body and body["user"]["claims"][0]["value"] == "jane.doe@example.com"
