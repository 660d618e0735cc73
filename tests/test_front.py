"""The async intake's ASGI app (engine/receive/front.py) in this process, called as granian calls it: an
event POST stored before its 202, the WSGI environ it builds for every other route, and a bug answered 500."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path
from typing import Any

from engine.config.settings import load_config
from engine.metrics import Metrics
from engine.receive.app import create_app, webhook_sink
from engine.receive.front import Front, client_address, wsgi_environ
from engine.runtime import Current
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, sample_event, signed


def scope(method: str, path: str, headers: dict[str, str], client: str = "192.0.2.10") -> dict[str, Any]:
    return {"type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
            "client": (client, 40000), "server": ("127.0.0.1", 8080), "scheme": "http", "http_version": "1.1"}


def call(front: Front, request: dict[str, Any], body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(front(request, receive, send))
    start, answer = sent
    return start["status"], dict(start["headers"]), answer["body"]


def make_front(tmp_path: Path, wsgi_app: Any = None) -> tuple[Front, SQLiteStore]:
    config = Current(load_config(basic_config(tmp_path)))
    store = SQLiteStore(tmp_path / "var" / "idhooks.db")
    metrics = Metrics()
    sink = webhook_sink(config, store, metrics=metrics, clock=time.time, on_accepted=lambda: None,
                        recent=None)
    app = wsgi_app or create_app(config, store, metrics=metrics, sink=sink)
    return Front(sink, app, config, bridge_limit=1_048_576), store


def test_an_event_post_is_stored_before_its_202(tmp_path):
    front, store = make_front(tmp_path)
    body, headers = signed(sample_event())
    status, _, answer = call(front, scope("POST", "/webhooks/asgardeo", headers), body)
    jti = json.loads(answer)["jti"]
    assert (status, json.loads(answer)["status"]) == (202, "accepted")
    assert store.get_event(jti) is not None
    status, _, answer = call(front, scope("POST", "/webhooks/asgardeo", headers), body)
    assert (status, json.loads(answer)["status"]) == (202, "duplicate")
    front.close()
    store.close()


def test_other_routes_reach_the_falcon_app(tmp_path):
    front, store = make_front(tmp_path)
    status, headers, answer = call(front, scope("GET", "/healthz", {}), b"")
    assert (status, json.loads(answer)) == (200, {"status": "alive"})
    assert headers[b"content-type"].startswith(b"application/json")
    front.close()
    store.close()


def test_the_environ_never_carries_proxy_headers_or_header_names_with_underscores():
    request = scope("GET", "/api/v1/events", {"X-Forwarded-For": "203.0.113.9", "X-Forwarded-Proto": "https",
                                              "Forwarded": "for=203.0.113.9", "X_Auth": "spoof", "Authorization":
                                              "Bearer t", "Accept": "a", "accept": "b"})
    environ = wsgi_environ(request, b"", "192.0.2.10")
    assert environ["REMOTE_ADDR"] == "192.0.2.10" and environ["wsgi.url_scheme"] == "http"
    assert not [key for key in environ if "FORWARDED" in key or key == "HTTP_X_AUTH"]
    assert environ["HTTP_AUTHORIZATION"] == "Bearer t" and environ["HTTP_ACCEPT"] == "a,b"
    assert environ["PATH_INFO"] == "/api/v1/events"


def test_x_forwarded_for_counts_only_from_the_trusted_proxy():
    request = scope("GET", "/", {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}, client="127.0.0.1")
    assert client_address(request, None) == "127.0.0.1"
    assert client_address(request, "10.0.0.1") == "127.0.0.1"
    assert client_address(request, "127.0.0.1") == "203.0.113.9"


def test_a_bug_in_a_route_is_logged_and_answered_500(tmp_path, caplog):
    def broken(environ: dict[str, Any], start_response: Any) -> Any:
        raise RuntimeError("a bug")

    front, store = make_front(tmp_path, broken)
    with caplog.at_level(logging.ERROR, logger="idhooks.http"):
        status, _, answer = call(front, scope("GET", "/readyz", {}), b"")
    assert (status, json.loads(answer)) == (500, {"error": "internal error"})
    assert any("request failed" in r.getMessage() and r.exc_info for r in caplog.records)
    front.close()
    store.close()
