"""Sending as the delivery lane does (engine/deliver/lane.py): an event loop in a thread of its own, where
`send_async` and `exchange_async` run. The `via` fixture runs a test once through a blocking send and once through
the lane, so that every outbound rule the client tests hold is held by both."""

from __future__ import annotations

import asyncio
import threading
from typing import Any, Coroutine, Iterator, Mapping

import pytest
import uvloop

from actions.base import Action
from actions.httpclient import HttpClient
from actions.httplane import LaneClient
from actions.httpresult import HttpResult, exchange, exchange_async


class LaneLoop:
    """A uvloop loop running in a daemon thread; `run()` waits for a coroutine on it."""

    def __init__(self) -> None:
        self.loop = uvloop.new_event_loop()
        self._clients: dict[HttpClient, LaneClient] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, name="test-lane", daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def client(self, http: HttpClient) -> LaneClient:
        """The lane's connections for `http`, kept for the test (reuse shows as fewer connections)."""
        if http not in self._clients:
            self._clients[http] = LaneClient(http)
        return self._clients[http]

    def close(self) -> None:
        async def close_all() -> None:
            for client in self._clients.values():
                client.close()
        self.run(close_all())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class Via:
    """Sends one way: `thread` (send / exchange, blocking) or `lane` (send_async / exchange_async on a loop)."""

    def __init__(self, way: str, lane: LaneLoop | None) -> None:
        self.way, self.lane = way, lane

    def send(self, action: Action, rendered: Mapping[str, Any], key: str) -> Any:
        if self.lane is None:
            return action.send(rendered, key)
        return self.lane.run(action.send_async(rendered, key, self.lane.client(action.context.http)))

    def exchange(self, client: HttpClient, method: str, url: str, **kwargs: Any) -> HttpResult:
        if self.lane is None:
            return exchange(client, method, url, **kwargs)
        return self.lane.run(exchange_async(self.lane.client(client), method, url, **kwargs))


@pytest.fixture(params=["thread", "lane"])
def via(request: pytest.FixtureRequest) -> Iterator[Via]:
    if request.param == "thread":
        yield Via("thread", None)
        return
    lane = LaneLoop()
    try:
        yield Via("lane", lane)
    finally:
        lane.close()
