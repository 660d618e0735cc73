"""An in-process app around a real SQLite file, shared by the hostile-input tests of HTTP callers."""

from __future__ import annotations

import time
from pathlib import Path

import falcon.testing

from engine.config.settings import load_config
from engine.metrics import Metrics
from engine.receive.app import create_app
from engine.store.sqlite import SQLiteStore
from tests.conftest import basic_config

TOPIC = "acme.b5e0d3c2-7f1a-4c8e-9d2b-3a6f1e0c9b47.schema.wso2.v1.event.login"


class App:
    """`create_app` on tmp_path/var/idhooks.db with a settable clock; `metric(line)` reads /metrics."""

    def __init__(self, tmp_path: Path, extra: str = "", now: float | None = None) -> None:
        self.tmp_path = tmp_path
        self.config_path = basic_config(tmp_path, extra=extra)
        self.config = load_config(self.config_path)
        self.store = SQLiteStore(tmp_path / "var" / "idhooks.db")
        self.now = now or time.time()
        self.metrics = Metrics()
        self.client = falcon.testing.TestClient(create_app(self.config, self.store, metrics=self.metrics,
                                                           clock=lambda: self.now))

    def post(self, body: bytes, headers: dict[str, str]):
        return self.client.simulate_post("/webhooks/asgardeo", body=body, headers=headers)

    def hub(self, **params: str):
        return self.client.simulate_get("/webhooks/asgardeo", params={f"hub.{k}": v for k, v in params.items()})

    def scrape(self) -> str:
        return self.client.simulate_get("/metrics").text

    def metric(self, series: str) -> float:
        """The value of one series line (e.g. 'idhooks_x_total{webhook="asgardeo"}'), 0 when absent."""
        for line in self.scrape().splitlines():
            if line.startswith(series + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0
