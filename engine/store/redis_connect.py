"""Connect to the Redis named by a store URL: one server (`redis://`, `rediss://`, `unix://`), or the current
primary of a replicated Redis found through Sentinel (`redis+sentinel://`, `rediss+sentinel://`), so that a
failover moves every idhooks process to the new primary by itself.

    redis+sentinel://[:PASSWORD@]SENTINEL:26379[,SENTINEL:26379...]/MASTER_NAME[/DB]

The password is the data nodes' (`requirepass`); the sentinels are asked without one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from engine.errors import ConfigError
from engine.secrets import redact_url
from engine.config.storeurl import SENTINEL_SCHEMES, TLS_SCHEMES

try:
    import redis as redis_lib
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry
    from redis.sentinel import Sentinel
except ImportError:  # pragma: no cover - exercised only without the optional dependency
    redis_lib = None

SENTINEL_PORT = 26379


def connect(url: str, *, ca_file: Path | None = None, cert_file: Path | None = None,
            key_file: Path | None = None) -> "redis_lib.Redis":
    """A client for `url` (not yet connected). Over TLS the server's certificate is always verified."""
    if redis_lib is None:
        raise ConfigError("store.url: the Redis store needs the redis package: pip install 'idhooks[redis]'")
    tls: dict[str, Any] = {name: str(path) for name, path in (("ssl_ca_certs", ca_file), ("ssl_certfile", cert_file),
                                              ("ssl_keyfile", key_file)) if path is not None}
    if tls and not url.startswith(TLS_SCHEMES):
        raise ConfigError(f"store: a CA file or client certificate needs a TLS URL (rediss://), got {redact_url(url)}")
    common = {"socket_timeout": 5, "socket_connect_timeout": 2, "health_check_interval": 30,
              "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), 1)}
    if not url.startswith(SENTINEL_SCHEMES):
        try:
            return redis_lib.Redis.from_url(url, **common, **tls)
        except ValueError as exc:
            raise ConfigError(f"store.url: {redact_url(url)}: {exc}") from None
    sentinels, master, db, username, password = parse_sentinel_url(url)
    if url.startswith(TLS_SCHEMES):
        tls["ssl"] = True
    sentinel = Sentinel(sentinels, socket_timeout=2, socket_connect_timeout=2, sentinel_kwargs=dict(tls))
    return sentinel.master_for(master, db=db, username=username, password=password, **common, **tls)


def parse_sentinel_url(url: str) -> tuple[list[tuple[str, int]], str, int, str | None, str | None]:
    """(sentinel addresses, master name, db, username, password) of a redis+sentinel:// URL."""
    shown = redact_url(url)
    form = "redis+sentinel://[:PASSWORD@]HOST:26379[,HOST:26379...]/MASTER_NAME[/DB]"
    parts = urlsplit(url)
    hosts = parts.netloc.rpartition("@")[2]
    sentinels = []
    for item in filter(None, hosts.split(",")):
        host, colon, port = item.rpartition(":") if not item.endswith("]") else (item, "", "")
        if not colon:
            host, port = item, str(SENTINEL_PORT)
        if not port.isdigit():
            raise ConfigError(f"store.url: {shown}: bad sentinel address {item!r}: expected HOST:PORT ({form})")
        sentinels.append((host.strip("[]"), int(port)))
    if not sentinels:
        raise ConfigError(f"store.url: {shown}: no sentinel address: expected {form}")
    path = [segment for segment in parts.path.split("/") if segment]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ConfigError(f"store.url: {shown}: expected the master name and optionally a db number after the "
                          f"sentinels: {form}")
    db = int(path[1]) if len(path) == 2 else 0
    password = unquote(parts.password) if parts.password is not None else None
    username = unquote(parts.username) if parts.username else None
    return sentinels, unquote(path[0]), db, username, password
