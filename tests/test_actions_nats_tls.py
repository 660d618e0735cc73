"""nats over TLS and with a login, against a private nats-server (JetStream) this test starts with a
certificate from a CA the test makes: the server is verified with `ca_file`, an untrusted certificate and a
wrong password are permanent failures, and the password in a `${ENV}` server URL never shows."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import trustme

from actions.base import ActionContext
from actions.nats import NatsAction
from engine.errors import PermanentError
from engine.secrets import Secret
from tests.conftest import free_port

pytestmark = pytest.mark.slow
USER, PASSWORD = "idhooks", "nats-pass-4471"


@pytest.fixture(scope="module")
def tls_nats(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(binary).exists():
        if os.environ.get("IDHOOKS_REQUIRE_NATS") or os.environ.get("CI"):
            pytest.fail("NATS is required in CI but there is no nats-server binary")
        pytest.skip("no nats-server binary")
    folder = tmp_path_factory.mktemp("nats-tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    (folder / "chain.pem").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    port = free_port()
    process = subprocess.Popen([binary, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(folder / "js"),
                                "--tls", "--tlscert", str(folder / "chain.pem"), "--tlskey", str(folder / "key.pem"),
                                "--user", USER, "--pass", PASSWORD], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "nats-server did not start"
                time.sleep(0.05)
        server = {"url": f"tls://127.0.0.1:{port}", "port": port, "ca": str(folder / "ca.pem")}
        asyncio.run(_js(server, lambda js: _add_stream(js)))
        yield server
    finally:
        process.terminate()
        process.wait(10)


async def _add_stream(js: Any) -> None:
    from nats.js.api import StreamConfig

    await js.add_stream(StreamConfig(name="TLS_TEST", subjects=["tls-test.>"]))


async def _js(server: dict[str, Any], work: Any) -> Any:
    import nats

    context = ssl.create_default_context(cafile=server["ca"])
    connection = await nats.connect(f"tls://{USER}:{PASSWORD}@127.0.0.1:{server['port']}", tls=context)
    try:
        return await work(connection.jetstream())
    finally:
        await connection.close()


def action(servers: Any, **extra: Any) -> NatsAction:
    return NatsAction("bus", {"type": "nats", "servers": servers, "subject": "x", "timeout": 3, **extra},
                      ActionContext())


def test_publish_over_tls_with_a_login(tls_nats: dict[str, Any]) -> None:
    url = Secret(f"tls://{USER}:{PASSWORD}@127.0.0.1:{tls_nats['port']}", "NATS_URL")
    action([url], ca_file=tls_nats["ca"]).send({"subject": "tls-test.one", "payload": "hello"}, "k-1")
    message = asyncio.run(_js(tls_nats, lambda js: js.get_last_msg("TLS_TEST", "tls-test.one")))
    assert message.data == b"hello" and message.headers["Nats-Msg-Id"] == "k-1"


def test_an_untrusted_server_certificate_is_permanent(tls_nats: dict[str, Any]) -> None:
    url = Secret(f"tls://{USER}:{PASSWORD}@127.0.0.1:{tls_nats['port']}")
    with pytest.raises(PermanentError, match="certificate") as failure:
        action([url]).send({"subject": "tls-test.two", "payload": "x"}, "k-2")  # system CAs only
    assert PASSWORD not in str(failure.value)


def test_a_wrong_password_is_permanent_and_never_shown(tls_nats: dict[str, Any]) -> None:
    url = Secret(f"tls://{USER}:wrong-pass-9@127.0.0.1:{tls_nats['port']}")
    with pytest.raises(PermanentError) as failure:
        action([url], ca_file=tls_nats["ca"]).send({"subject": "tls-test.three", "payload": "x"}, "k-3")
    assert "wrong-pass-9" not in str(failure.value)
