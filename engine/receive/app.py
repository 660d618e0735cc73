"""The Falcon app: webhook intake and WebSub verification, health, readiness and metrics.

`create_app()` does no I/O: its collaborators (config holder, store, metrics, clock) are arguments, so tests
build apps around a tmp SQLite file and a fake clock. Every refusal is a RequestError whose `status` is mapped
to the HTTP response in one place (`error_answer`).
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from typing import Any, Callable

import falcon

from engine.config.settings import Config, WebhookConfig
from engine.errors import BusyError, RequestError, StoreError, TooLargeError, UnsupportedMediaError
from engine.logs import event_line
from engine.receive.intake import Blocking, Intake, IntakeResult
from engine.metrics import Metrics
from engine.runtime import Current
from engine.secrets import Secret
from engine.throttle import FailedAuthThrottle
from engine.store.base import Store
from engine.receive.websub import UnsubscribedWebhooks, answer, mode_label
from engine.verify.envelope import RecentEnvelopes
from engine.verify.signature import SIGNATURE_HEADERS

log = logging.getLogger("idhooks.http")

_BEARER = re.compile(r"^bearer +(\S+) *$", re.IGNORECASE)  # RFC 7235: the scheme is case-insensitive
INTAKE_HEADERS = SIGNATURE_HEADERS + ("content-type",)
"""The headers intake reads: the signature, and Content-Type for the quarantine."""
_INTAKE_CGI_NAMES = tuple((name, "CONTENT_TYPE" if name == "content-type" else "HTTP_" + name.upper().replace("-", "_"))
                          for name in INTAKE_HEADERS)
_OUTCOMES = {401: "bad_signature", 400: "bad_payload", 408: "timeout", 413: "too_large", 415: "unsupported_media",
             503: "store_error"}


def _json(resp: falcon.Response, status: int, data: dict[str, Any]) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(data)


def error_answer(ex: RequestError | StoreError, path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    """Status, headers and JSON body of a refusal: the one mapping of errors to responses, used by the Falcon
    app's error handlers and by the async intake (engine/receive/front.py)."""
    if isinstance(ex, RequestError):
        return ex.status, dict(ex.headers), {"error": str(ex)}
    # 503 makes the hub retry (for ~20 s): right for a short store fault, and never a lost event.
    log.error("store unavailable", extra={"path": path, "error": str(ex)})
    return 503, {}, {"error": "the event store is unavailable; retry later"}


def _handle_error(req: falcon.Request, resp: falcon.Response, ex: RequestError | StoreError, params: dict) -> None:
    status, headers, data = error_answer(ex, req.path)
    resp.set_headers(headers)
    _json(resp, status, data)


def read_body(req: falcon.Request, limit: int) -> bytes:
    """The raw body, refusing more than `limit` bytes without reading it all."""
    if req.content_length is not None and req.content_length > limit:
        raise TooLargeError(f"body of {req.content_length} bytes exceeds max_body_bytes ({limit})")
    body = req.bounded_stream.read(limit + 1)
    if len(body) > limit:
        raise TooLargeError(f"body exceeds max_body_bytes ({limit})")
    return body


def intake_headers(req: falcon.Request) -> dict[str, str]:
    """The headers intake reads (the signature headers, and Content-Type for the quarantine), read from the
    WSGI environ by their CGI names: `req.headers` copies every header of every request into a new dict, and
    get_header() works out the CGI name on each call (issue 14)."""
    env = req.env
    return {name: value for name, key in _INTAKE_CGI_NAMES if (value := env.get(key)) is not None}


def check_json_media(content_type: str | None) -> None:
    media = (content_type or "").split(";", 1)[0].strip().lower()
    if media != "application/json":
        raise UnsupportedMediaError("expected Content-Type: application/json")


class WebhookSink:
    """Every configured webhook path: GET = WebSub verification, POST = signed events. Looked up in the
    current config on each request, so a config reload can add, move or remove webhooks."""

    def __init__(self, config: Current[Config], store: Store, intake: Intake, metrics: Metrics,
                 clock: Callable[[], float], on_accepted: Callable[[], None]) -> None:
        self.config, self.store, self.intake, self.metrics = config, store, intake, metrics
        self.clock, self.on_accepted = clock, on_accepted
        self.unsubscribed = UnsubscribedWebhooks(store, clock)
        self._paths: tuple[Config | None, dict[str, WebhookConfig]] = (None, {})

    def _by_path(self) -> dict[str, WebhookConfig]:
        """The current config's webhooks by path, made again when a reload replaced the config."""
        config = self.config.get()
        if self._paths[0] is not config:
            paths: dict[str, WebhookConfig] = {}
            for webhook in config.webhooks:
                paths.setdefault(webhook.path, webhook)  # the first of a path wins, as the list search did
            self._paths = (config, paths)
        return self._paths[1]

    def __call__(self, req: falcon.Request, resp: falcon.Response, **_: Any) -> None:
        webhook = self.webhook_for(req.path)
        if webhook is None:
            raise falcon.HTTPNotFound()
        if req.method == "GET":
            self.verify(webhook, req, resp)
        elif req.method == "POST":
            self.receive(webhook, req, resp)
        else:
            raise falcon.HTTPMethodNotAllowed(["GET", "POST"])

    def verify(self, webhook: WebhookConfig, req: falcon.Request, resp: falcon.Response) -> None:
        params = {k: req.get_param(k) or "" for k in ("hub.mode", "hub.topic", "hub.challenge",
                                                       "hub.lease_seconds", "hub.reason")}
        self.metrics.verifications.labels(webhook.name, mode_label(params["hub.mode"])).inc()
        try:
            result = answer(webhook, params, self.store, self.clock(), self.config.get().subscriptions.max_records)
        except RequestError as exc:
            log.warning("verification refused", extra={"webhook": webhook.name, "status": exc.status,
                                                       "mode": mode_label(params["hub.mode"]), "reason": str(exc),
                                                       "topic": params["hub.topic"][:200]})
            raise
        self.unsubscribed.changed()
        if result.evicted:
            self.metrics.subscription_evicted.labels(webhook.name).inc(result.evicted)
            log.warning("subscription records over subscriptions.max_records: dropped the oldest",
                        extra={"webhook": webhook.name, "dropped": result.evicted})
        resp.status = 200
        resp.content_type = "text/plain"
        resp.data = result.body.encode("utf-8")

    def receive(self, webhook: WebhookConfig, req: falcon.Request, resp: falcon.Response) -> None:
        started = time.perf_counter()
        try:
            body = read_body(req, self.config.get().server.max_body_bytes)
            check_json_media(req.content_type)
            result = self.intake.receive(webhook, intake_headers(req), body, source=req.remote_addr or "")
        except (RequestError, StoreError) as exc:
            self.refused(webhook, exc, started)
            raise
        _json(resp, 202, self.answered(webhook, result, started))

    async def receive_async(self, webhook: WebhookConfig, headers: dict[str, str], body: bytes, source: str,
                            blocking: Blocking) -> dict[str, Any]:
        """`receive` for the async intake (engine/receive/front.py), which has read the body within
        server.max_body_bytes and checked its media type: the 202's JSON body, or RequestError/StoreError."""
        started = time.perf_counter()
        try:
            result = await self.intake.receive_async(webhook, headers, body, source, blocking)
        except (RequestError, StoreError) as exc:
            self.refused(webhook, exc, started)
            raise
        if result.outcome == "accepted" and self.unsubscribed.stale():  # a store read: not in the event loop
            await blocking(self.unsubscribed.refresh)
        return self.answered(webhook, result, started)

    def refused(self, webhook: WebhookConfig, exc: RequestError | StoreError, started: float) -> None:
        """Count and log a refused event POST (the one WARNING line of a refusal)."""
        status = exc.status if isinstance(exc, RequestError) else 503
        outcome = "busy" if isinstance(exc, BusyError) else _OUTCOMES.get(status, "refused")
        self.metrics.count_received(webhook.name, outcome)
        log.warning("event refused", extra={"webhook": webhook.name, "outcome": outcome, "status": status,
                                            "reason": str(exc),
                                            "latency_ms": round((time.perf_counter() - started) * 1000, 2)})

    def answered(self, webhook: WebhookConfig, result: IntakeResult, started: float) -> dict[str, Any]:
        """Count and log a stored (or duplicate) event, wake the processor; the 202's body."""
        elapsed = time.perf_counter() - started
        self.metrics.count_received(webhook.name, result.outcome)
        self.metrics.child(self.metrics.request_latency, webhook.name).observe(elapsed)
        event_line(log, f"event {result.outcome}", {"webhook": webhook.name, "latency_ms": round(elapsed * 1000, 2),
                                                    "outcome": result.outcome, "jti": result.envelope.jti,
                                                    "types": result.types, "status": 202})
        if result.outcome == "accepted":
            self.after_unsubscribe(webhook.name, result.envelope.jti)
            self.on_accepted()
        return {"status": result.outcome, "jti": result.envelope.jti}

    def webhook_for(self, path: str) -> WebhookConfig | None:
        """The webhook served at `path` (a trailing slash allowed), in the current config."""
        paths = self._by_path()
        return paths.get(path) or paths.get(path.rstrip("/"))

    def after_unsubscribe(self, webhook: str, jti: str) -> None:
        """Accept, but warn about and count, an event for a webhook whose every topic was unsubscribed
        (`idhooks subscriptions` lists them): the console may hold a subscription idhooks no longer has."""
        since = self.unsubscribed.since(webhook)
        if since is not None:
            self.metrics.after_unsubscribe.labels(webhook).inc()
            log.warning("event for an unsubscribed webhook: accepted; check the subscriptions in the console",
                        extra={"webhook": webhook, "jti": jti, "unsubscribed_at": since})


class Health:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        _json(resp, 200, {"status": "alive"})


class Ready:
    """Ready when the store commits a real write and a rule set is loaded; shows reload errors either way. A
    store that spools events while its server is down is ready but "degraded"."""

    def __init__(self, store: Store, readiness: Callable[[], dict[str, Any]]) -> None:
        self.store, self.readiness = store, readiness

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        details: dict[str, Any] = {"rules": self.readiness()}
        try:
            self.store.check_writable()
            degraded = self.store.degraded()
            details["store"] = f"degraded: {degraded}" if degraded else "ok"
        except StoreError as exc:
            details["store"] = f"error: {exc}"
        # Degraded is still ready: events are kept durably (spooled) and taking traffic away would lose more.
        ready = not details["store"].startswith("error") and details["rules"].get("loaded", False)
        status = ("degraded" if details["store"] != "ok" else "ready") if ready else "not ready"
        _json(resp, 200 if ready else 503, {"status": status, **details})


class MetricsEndpoint:
    """Prometheus text format; with a token, only for `Authorization: Bearer <token>`."""

    def __init__(self, metrics: Metrics, token: Secret | None = None,
                 throttle: FailedAuthThrottle | None = None) -> None:
        self.metrics, self.token = metrics, token
        self.throttle = throttle or FailedAuthThrottle()  # wrong tokens per address (engine/throttle.py)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        if self.token is not None:
            address = req.remote_addr or ""
            self.throttle.check(address, "/metrics")
            match = _BEARER.match(req.get_header("Authorization") or "")
            given = match.group(1).encode("utf-8", "surrogateescape") if match else b""
            if not match or not hmac.compare_digest(given, self.token.reveal().encode()):
                if match:  # a token was tried
                    self.throttle.failed(address, "/metrics")
                raise falcon.HTTPUnauthorized(title="a bearer token is required for /metrics",
                                              challenges=['Bearer realm="idhooks metrics"'])
        resp.content_type = "text/plain; version=0.0.4; charset=utf-8"
        resp.data = self.metrics.render()


def create_metrics_app(metrics: Metrics, token: Secret | None) -> falcon.App:
    """The app of `metrics.listen`: /metrics alone, on its own address."""
    app = falcon.App()
    app.add_error_handler(RequestError, _handle_error)
    app.add_route("/metrics", MetricsEndpoint(metrics, token))
    return app


def create_app(config: Config | Current[Config], store: Store, *, metrics: Metrics | None = None,
               clock: Callable[[], float] = time.time,
               readiness: Callable[[], dict[str, Any]] | None = None,
               on_accepted: Callable[[], None] = lambda: None,
               recent: RecentEnvelopes | None = None, sink: WebhookSink | None = None) -> falcon.App:
    """The WSGI app. Registers the store's gauges on `metrics`. `readiness()` describes the rule set ({"loaded": bool, ...}); `on_accepted()` wakes
    the processor after a new event is stored; `recent` hands the parsed envelopes to it. `sink`: the webhook
    routes, when the async intake (engine/receive/front.py) shares them (`webhook_sink`)."""
    holder = config if isinstance(config, Current) else Current(config)
    metrics = metrics or Metrics()
    metrics.watch_store(store.stats, store.last_accepted, store.list_subscriptions)
    if sink is None:
        sink = webhook_sink(holder, store, metrics=metrics, clock=clock, on_accepted=on_accepted, recent=recent)
    app = falcon.App(media_type=falcon.MEDIA_JSON)
    app.req_options.strip_url_path_trailing_slash = False
    app.add_error_handler(RequestError, _handle_error)
    app.add_error_handler(StoreError, _handle_error)
    app.add_route("/healthz", Health())
    app.add_route("/readyz", Ready(store, readiness or (lambda: {"loaded": True})))
    metrics_config = holder.get().metrics
    if metrics_config.listen is None:  # otherwise only the separate metrics listener serves it
        app.add_route("/metrics", MetricsEndpoint(metrics, metrics_config.token))
    app.add_sink(sink, prefix="/")
    return app


def webhook_sink(config: Current[Config], store: Store, *, metrics: Metrics, clock: Callable[[], float],
                 on_accepted: Callable[[], None], recent: RecentEnvelopes | None) -> WebhookSink:
    """The webhook routes (WebSub verification and event intake) over the current config."""
    intake = Intake(store, quarantine=config.get().quarantine, dedup_window=config.get().store.dedup_window,
                    metrics=metrics, clock=clock, recent=recent)
    return WebhookSink(config, store, intake, metrics, clock, on_accepted)
