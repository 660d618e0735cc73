"""The async intake's RSGI app (engine/receive/front.py) in this process, called as granian calls it: an
event POST stored before its 202, the WSGI environ it builds for every other route, and a bug answered 500.
(Against a real `idhooks serve` and granian: tests/hostile/test_async_intake.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator

from engine.config.settings import load_config
from engine.metrics import Metrics
from engine.receive.app import create_app, webhook_sink
from engine.receive.front import Front, client_address, wsgi_environ
from engine.runtime import Current
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config, sample_event, signed


class Headers:
    """What granian's RSGIHeaders offers: lower-case names, repeated headers kept in order."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self.pairs = [(name.lower(), value) for name, value in pairs]

    def __contains__(self, key: str) -> bool:
        return any(name == key for name, _ in self.pairs)

    def get(self, key: str, default: Any = None) -> Any:
        return next((value for name, value in self.pairs if name == key), default)

    def get_all(self, key: str) -> list[str]:
        return [value for name, value in self.pairs if name == key]

    def items(self) -> list[tuple[str, str]]:
        return list(self.pairs)


@dataclass
class Scope:
    method: str
    path: str
    headers: Headers
    client: str = "192.0.2.10:40000"
    proto: str = "http"
    query_string: str = ""
    server: str = "127.0.0.1:8080"
    scheme: str = "http"
    http_version: str = "1.1"


@dataclass
class Transport:
    body: bytes
    answers: list[tuple[int, list[tuple[str, str]], bytes]] = field(default_factory=list)

    async def __call__(self) -> bytes:
        return self.body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.body

    def response_bytes(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.answers.append((status, headers, body))


def scope(method: str, path: str, headers: dict[str, str] | list[tuple[str, str]],
          client: str = "192.0.2.10:40000") -> Scope:
    pairs = list(headers.items()) if isinstance(headers, dict) else headers
    return Scope(method, path, Headers(pairs), client=client)


def call(front: Front, request: Scope, body: bytes) -> tuple[int, dict[str, str], bytes]:
    if body and "content-length" not in request.headers:
        request.headers.pairs.append(("content-length", str(len(body))))
    transport = Transport(body)
    asyncio.run(front.__rsgi__(request, transport))
    [(status, headers, answer)] = transport.answers
    return status, dict(headers), answer


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
    assert headers["content-type"].startswith("application/json")
    front.close()
    store.close()


def test_the_environ_never_carries_proxy_headers_or_header_names_with_underscores():
    request = scope("GET", "/api/v1/events", [("X-Forwarded-For", "203.0.113.9"), ("X-Forwarded-Proto", "https"),
                                              ("Forwarded", "for=203.0.113.9"), ("X_Auth", "spoof"),
                                              ("Authorization", "Bearer t"), ("Accept", "a"), ("accept", "b")])
    environ = wsgi_environ(request, b"", "192.0.2.10")
    assert environ["REMOTE_ADDR"] == "192.0.2.10" and environ["wsgi.url_scheme"] == "http"
    assert not [key for key in environ if "FORWARDED" in key or key == "HTTP_X_AUTH"]
    assert environ["HTTP_AUTHORIZATION"] == "Bearer t" and environ["HTTP_ACCEPT"] == "a,b"
    assert environ["PATH_INFO"] == "/api/v1/events"


def test_x_forwarded_for_counts_only_from_the_trusted_proxy():
    request = scope("GET", "/", {"X-Forwarded-For": "198.51.100.7, 203.0.113.9"}, client="127.0.0.1:40000")
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


def test_granian_addresses_and_a_decoded_path_become_what_wsgi_expects():
    """granian gives "host:port" ("[v6]:port") and the path percent-decoded as UTF-8; PEP 3333 wants the host
    alone and the path's bytes as latin-1 characters (Falcon decodes them back as UTF-8)."""
    request = scope("GET", "/console/é", {}, client="[::1]:40000")
    request.server = "[::1]:8080"
    environ = wsgi_environ(request, b"", client_address(request, None))
    assert environ["REMOTE_ADDR"] == "::1"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("::1", "8080")
    assert environ["PATH_INFO"] == "/console/é".encode().decode("latin-1")
    assert client_address(scope("GET", "/", {"X-Forwarded-For": "2001:db8::7"}, client="[::1]:1"), "::1") == "2001:db8::7"


class StalledTransport(Transport):
    """A client that declared a body and never sends it."""

    async def __call__(self) -> bytes:
        await asyncio.sleep(3600)
        return b""


def test_a_body_that_does_not_arrive_in_time_is_answered_408(tmp_path):
    front, store = make_front(tmp_path)
    front.settings = dataclasses.replace(front.settings, channel_timeout=0.05)
    request = scope("POST", "/webhooks/asgardeo", {"content-type": "application/json", "content-length": "10"})
    transport = StalledTransport(b"")
    asyncio.run(asyncio.wait_for(front.__rsgi__(request, transport), 5))
    [(status, _, answer)] = transport.answers
    assert status == 408 and b"server.channel_timeout" in answer
    assert front.budget.held == 0  # what the stalled body reserved was given back
    store.close()


def test_a_request_cancelled_before_its_deadline_is_not_answered_as_a_timeout(tmp_path):
    """A shutdown cancels the request's task: that cancellation goes on, it is not the body's deadline (408)."""
    front, store = make_front(tmp_path)
    request = scope("POST", "/webhooks/asgardeo", {"content-type": "application/json", "content-length": "10"})
    transport = StalledTransport(b"")

    async def cancel_soon() -> bool:
        task = asyncio.create_task(front.__rsgi__(request, transport))
        await asyncio.sleep(0.05)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(cancel_soon())
    assert transport.answers == [] and front.in_flight == 0
    store.close()


def rsgi_init_on_a_thread(front: Front) -> dict[str, set[int]]:
    """front.__rsgi_init__ as granian calls it, on a thread of its own (the test process keeps its CPUs): the CPUs
    of the loop's thread before, while granian would start its threads, of a thread started then, and after the
    loop's next turn."""
    seen: dict[str, set[int]] = {}

    async def main() -> None:
        seen["before"] = os.sched_getaffinity(0)
        front.__rsgi_init__(asyncio.get_running_loop())
        seen["during"] = os.sched_getaffinity(0)
        started = threading.Thread(target=lambda: seen.update(started=os.sched_getaffinity(0)))
        started.start()
        started.join()
        await asyncio.sleep(0)
        seen["after"] = os.sched_getaffinity(0)

    runner = threading.Thread(target=asyncio.run, args=(main(),))
    runner.start()
    runner.join()
    return seen


def test_granian_threads_start_on_their_cpus_and_the_loop_keeps_its_own(tmp_path):
    front, store = make_front(tmp_path)
    cpus = sorted(os.sched_getaffinity(0))
    front.granian_cpus = {cpus[-1]}
    seen = rsgi_init_on_a_thread(front)
    store.close()
    assert seen["during"] == seen["started"] == {cpus[-1]}
    assert seen["after"] == seen["before"] == set(cpus)


def test_cpus_the_kernel_refuses_leave_granian_threads_where_the_loop_runs(tmp_path):
    front, store = make_front(tmp_path)
    front.granian_cpus = {100_000}  # no such CPU: sched_setaffinity fails with EINVAL
    seen = rsgi_init_on_a_thread(front)
    store.close()
    assert seen["before"] == seen["during"] == seen["started"] == seen["after"] == os.sched_getaffinity(0)
