"""nats against the machine's NATS JetStream on 127.0.0.1:4222: each test makes its own stream (with a
duplicate window) and reads back what was stored. Skips without a server; fails in CI
(IDHOOKS_REQUIRE_NATS / CI)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import pytest

from actions.base import ActionContext
from actions.nats import NatsAction, check_subject, msg_id
from engine.errors import ConfigError, PermanentError, RetryableError
from engine.secrets import Secret
from tests.conftest import free_port
from tests.rules_support import decide, envelope, load

NATS_URL = "nats://127.0.0.1:4222"
KEY = "jti-1:new-user:0"


def _nats_answers() -> None:
    try:
        socket.create_connection(("127.0.0.1", 4222), timeout=1).close()
    except OSError as exc:
        if os.environ.get("IDHOOKS_REQUIRE_NATS") or os.environ.get("CI"):
            pytest.fail(f"NATS is required in CI but {NATS_URL} does not answer: {exc}")
        pytest.skip(f"no NATS server answers at {NATS_URL}: {exc}")


async def _with_js(work: Any) -> Any:
    import nats

    connection = await nats.connect(NATS_URL)
    try:
        return await work(connection.jetstream())
    finally:
        await connection.close()


@pytest.fixture
def stream() -> Iterator[str]:
    """A new stream capturing `idhooks-test.<id>.>`; yields the subject prefix; deleted afterwards."""
    _nats_answers()
    from nats.js.api import StreamConfig

    name = f"IDHOOKS_TEST_{uuid.uuid4().hex[:12].upper()}"
    prefix = f"idhooks-test.{name.lower()}"
    asyncio.run(_with_js(lambda js: js.add_stream(StreamConfig(name=name, subjects=[f"{prefix}.>"],
                                                               duplicate_window=120))))
    yield prefix
    asyncio.run(_with_js(lambda js: js.delete_stream(name)))


def stored(prefix: str) -> list[Any]:
    """Every message of the stream, oldest first (subject, headers, data)."""
    async def read(js: Any) -> list[Any]:
        name = (await js.find_stream_name_by_subject(f"{prefix}.x"))
        info = await js.stream_info(name)
        return [await js.get_msg(name, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)] \
            if info.state.messages else []
    return asyncio.run(_with_js(read))


def action(servers: Any = NATS_URL, **extra: Any) -> NatsAction:
    return NatsAction("bus", {"type": "nats", "servers": servers, "subject": "unused", **extra}, ActionContext())


def test_publish_is_stored_with_the_idempotency_key_as_msg_id(stream: str) -> None:
    action().send({"subject": f"{stream}.login", "payload": {"user": "alice", "n": float("nan")}}, KEY)
    [message] = stored(stream)
    assert message.subject == f"{stream}.login"
    assert message.headers["Nats-Msg-Id"] == KEY
    assert json.loads(message.data) == {"user": "alice", "n": None}


def test_a_retry_after_a_lost_ack_is_not_stored_twice(stream: str) -> None:
    bus = action()
    bus.send({"subject": f"{stream}.a", "payload": "first"}, KEY)
    bus.send({"subject": f"{stream}.a", "payload": "first"}, KEY)  # the same job sent again
    bus.send({"subject": f"{stream}.a", "payload": "second"}, "jti-2:new-user:0")
    assert [m.data for m in stored(stream)] == [b"first", b"second"]


@pytest.mark.parametrize("subject", ["{p}.a b", "{p}.*", "{p}.>", "{p}..x", "{p}.\r\nPUB x", "", "{p}." + "x" * 600])
def test_hostile_subjects_are_refused_before_publishing(stream: str, subject: str) -> None:
    with pytest.raises(PermanentError, match="refused subject"):
        action().send({"subject": subject.format(p=stream), "payload": "x"}, KEY)
    assert stored(stream) == []


def test_hostile_payload_text_is_stored_as_is(stream: str) -> None:
    text = "line\r\nPUB evil 3\r\nabc\x00\ud800" + "Z" * 200_000
    action().send({"subject": f"{stream}.t", "payload": text}, KEY)
    [message] = stored(stream)
    assert message.data == text.replace("\ud800", "\ufffd").encode("utf-8")


def test_a_hostile_idempotency_key_cannot_add_a_header(stream: str) -> None:
    key = "jti\r\nNats-Expected-Stream: OTHER\r\n\r\nx:rule:0"  # the jti part comes from the sender
    action().send({"subject": f"{stream}.h", "payload": "x"}, key)
    action().send({"subject": f"{stream}.h", "payload": "x"}, key)
    [message] = stored(stream)
    assert message.headers == {"Nats-Msg-Id": msg_id(key)} and msg_id(key).startswith("sha256:")


def test_subject_without_a_stream_is_permanent(stream: str) -> None:
    with pytest.raises(PermanentError, match="no JetStream stream stores subject 'idhooks-nostream"):
        action().send({"subject": f"idhooks-nostream.{uuid.uuid4().hex}", "payload": "x"}, KEY)


def test_server_down_is_retryable_within_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(RetryableError):
        action(f"nats://127.0.0.1:{free_port()}", timeout=1).send({"subject": "a.b", "payload": "x"}, KEY)
    assert time.monotonic() - started < 5


def test_a_peer_that_never_answers_hits_the_deadline() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts TCP, never sends NATS INFO
        port = silent.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(RetryableError):
            action(f"nats://127.0.0.1:{port}", timeout=0.5).send({"subject": "a.b", "payload": "x"}, KEY)
    assert time.monotonic() - started < 5


def test_subject_template_is_rendered_from_the_event(stream: str, tmp_path: Path) -> None:
    destinations = {"bus": {"type": "nats", "servers": NATS_URL, "subject": stream + ".{{ type }}"}}
    ruleset = load(tmp_path, """
        rules:
          - id: to-bus
            event: login.loginFailed
            actions:
              - nats: {to: bus}
        """, destinations=destinations)
    [rendered] = decide(ruleset, envelope())["to-bus"].actions
    assert rendered.fields["subject"] == f"{stream}.login.loginFailed"
    assert rendered.fields["payload"]["type"] == "login.loginFailed"
    assert rendered.fields["payload"]["decision"] == {"rule": "to-bus", "matched": True}
    action().send(rendered.fields, KEY)
    [message] = stored(stream)
    assert json.loads(message.data)["event"] == rendered.fields["payload"]["event"]


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as failure:
        NatsAction("bus", {"type": "nats", "servers": ["http://x"], "subject": "a", "ca_file": str(tmp_path / "no.pem"),
                           "cert_file": "c.pem"}, ActionContext())
    assert failure.value.problems == [
        "config.yaml:0: destinations.bus.cert_file: unknown key (did you mean 'ca_file'?); expected one of: servers, subject, credentials, "
        "tls, ca_file, timeout, type, retry",
        "config.yaml:0: destinations.bus.servers: expected nats://host:port or tls://host:port (or a list of them)",
        f"config.yaml:0: destinations.bus.ca_file: no such file: {tmp_path / 'no.pem'}"]


def test_credentials_file_is_read_as_a_secret_and_servers_may_be_secrets(tmp_path: Path) -> None:
    """config.yaml's credentials_file is read into a Secret; a server URL from ${ENV} carrying a password
    is a Secret too, and neither is ever shown in an error."""
    from engine.config.settings import load_config

    (tmp_path / "bus.creds").write_text("-----BEGIN NATS USER JWT-----\neyJhbGciOi.secretjwt\n------END NATS USER JWT------\n")
    config = tmp_path / "config.yaml"
    config.write_text("webhooks: [{name: asgardeo, secret: x}]\n"
                      "destinations:\n  bus: {type: nats, servers: ['${NATS_URL}', 'nats://127.0.0.1:1'], "
                      "subject: 'a.{{ type }}', credentials_file: bus.creds, timeout: 1}\n")
    loaded = load_config(config, env={"NATS_URL": f"nats://user:pw-7731@127.0.0.1:{free_port()}"})
    bus = NatsAction("bus", loaded.destinations["bus"], ActionContext())
    assert isinstance(bus.credentials, Secret) and "secretjwt" not in repr(loaded)
    with pytest.raises(RetryableError) as failure:
        bus.send({"subject": "a.b", "payload": "x"}, KEY)
    assert "pw-7731" not in str(failure.value) and "secretjwt" not in str(failure.value)


def test_check_subject_accepts_ordinary_subjects() -> None:
    assert check_subject("idhooks.login.loginFailed") == "idhooks.login.loginFailed"
