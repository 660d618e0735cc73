"""config.yaml -> frozen dataclasses. Strict: unknown keys are errors with a did-you-mean.

`${VAR}` and `${VAR:-default}` are expanded in string values after YAML parsing (so a variable can never
inject YAML). Values expanded inside `webhooks[].secret(s)` and `destinations` become `Secret`s; a key
`X_file: PATH` reads secret `X` from a file. Relative paths resolve against the config file's folder.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from engine.config.durations import format_duration, parse_duration
from engine.errors import ConfigError
from engine.secrets import Secret, find_secrets, read_secret_file, redact_url, url_credentials
from engine.config.storeurl import POSTGRES_SCHEMES, REDIS_SCHEMES, TLS_SCHEMES
from engine.config.yamlsource import LineDict, load_yaml_file

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PATH_KEYS = ("ca_file",)
"""Destination keys that name a file to use (not a secret to read), resolved against the config folder."""
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1_048_576
    threads: int = 8
    log_format: str = "text"
    # waitress's limits on idle and slow clients (its own defaults, 100 connections idle for 120 s, let
    # about 100 idle connections lock everyone out): see docs/deployment.md for what a front proxy adds
    connection_limit: int = 1000
    channel_timeout: float = 30.0
    cleanup_interval: float = 10.0
    max_request_header_size: int = 65_536
    trusted_proxy: str | None = None  # the front proxy's address: X-Forwarded-For from it names the client
    processes: int | str = 1  # `auto`: one per CPU core (engine/processes.py)


@dataclass(frozen=True)
class StoreConfig:
    url: str = field(default="sqlite:///var/idhooks.db", repr=False)  # may hold a Redis password
    group: str = "idhooks"
    dedup_window: float = 7 * 86400.0
    retention: float = 30 * 86400.0
    spool_dir: Path | None = None
    ca_file: Path | None = None  # rediss:// or PostgreSQL: the CA that signed the server's certificate
    cert_file: Path | None = None  # rediss:// or PostgreSQL: this client's certificate, when the server asks for one
    key_file: Path | None = None
    password: Secret | None = None  # PostgreSQL: from store.password_file (else in the URL, e.g. via ${ENV})

    def __repr__(self) -> str:
        return (f"StoreConfig(url={redact_url(self.url)!r}, group={self.group!r}, dedup_window={self.dedup_window}, "
                f"retention={self.retention}, spool_dir={self.spool_dir!r}, ca_file={self.ca_file!r}, "
                f"cert_file={self.cert_file!r}, key_file={self.key_file!r}, password={self.password!r})")


@dataclass(frozen=True)
class WebhookConfig:
    name: str
    path: str
    secrets: tuple[Secret, ...]
    topics: tuple[str, ...] = ("*",)
    silence_after: float = 24 * 3600.0


@dataclass(frozen=True)
class RulesConfig:
    paths: tuple[Path, ...] = ()
    watch: bool = True
    watch_interval: float = 1.0


@dataclass(frozen=True)
class EnrichConfig:
    """Operator-supplied MaxMind / DB-IP files for IP enrichment; None: the bundled country data."""

    geoip_file: Path | None = None
    asn_file: Path | None = None


@dataclass(frozen=True)
class QuarantineConfig:
    max_entries: int = 1000
    max_bytes: int = 50 * 1_048_576


@dataclass(frozen=True)
class SubscriptionsConfig:
    """What is kept of the hub's verification requests (any caller can send them) and when a lease warns."""

    max_records: int = 200  # per webhook: the oldest records go first
    warn_before: float = 3 * 86400.0  # `idhooks subscriptions` warns when a lease ends within this


@dataclass(frozen=True)
class DeliveryConfig:
    workers: int = 4
    lease: float = 60.0
    retry_for: float = 24 * 3600.0
    backoff_initial: float = 5.0
    backoff_max: float = 3600.0
    per_destination_concurrency: int = 2
    shutdown_grace: float = 10.0


@dataclass(frozen=True)
class MetricsConfig:
    """Where /metrics is served: on the main port (default) or only on `listen`; optionally behind a token."""

    listen: tuple[str, int] | None = None
    token: Secret | None = None


@dataclass(frozen=True)
class Config:
    path: Path
    server: ServerConfig = field(default_factory=ServerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
    rules: RulesConfig = field(default_factory=RulesConfig)
    quarantine: QuarantineConfig = field(default_factory=QuarantineConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    destinations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    enrich: EnrichConfig = field(default_factory=EnrichConfig)
    subscriptions: SubscriptionsConfig = field(default_factory=SubscriptionsConfig)

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def webhook(self, name: str) -> WebhookConfig | None:
        return next((w for w in self.webhooks if w.name == name), None)


class _Problems:
    """Collects every problem of one file so they are reported together."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[str] = []

    def add(self, line: int, where: str, message: str) -> None:
        self.items.append(f"{self.source}:{line}: {where}: {message}")


def suggest(word: str, options: list[str] | tuple[str, ...]) -> str:
    """` (did you mean 'x'?)` when `word` is close to one of `options`, else ''."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _check_keys(node: Mapping, allowed: tuple[str, ...], where: str, problems: _Problems) -> None:
    for key in node:
        if key not in allowed:
            line = node.line_of(key) if isinstance(node, LineDict) else 0
            problems.add(line, f"{where}.{key}" if where else str(key),
                         f"unknown key{suggest(key, allowed)}; expected one of: {', '.join(allowed)}")


def _line(node: Any, key: Any = None) -> int:
    if isinstance(node, LineDict):
        return node.line_of(key) if key is not None else node.line
    return getattr(node, "line", 0)


def expand_env(value: str, where: str, env: Mapping[str, str]) -> tuple[str, bool]:
    """Expand `${VAR}` / `${VAR:-default}`; returns (text, whether a variable was used)."""
    used = False

    def replace(match: re.Match) -> str:
        nonlocal used
        name, default = match.group(1), match.group(2)
        if name in env:
            used = True
            return env[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set (and has no ${{{name}:-default}})")

    return _ENV_PATTERN.sub(replace, value), used


class _Reader:
    """Turns the raw YAML tree into dataclasses, collecting problems instead of stopping at the first."""

    def __init__(self, path: Path, env: Mapping[str, str], read_secrets: bool = True) -> None:
        self.path = path
        self.env = env
        self.read_secrets = read_secrets
        self.problems = _Problems(str(path))

    # -- scalars ---------------------------------------------------------------------------------
    def text(self, node: Mapping, key: str, where: str, default: Any = None, *, secret: bool = False) -> Any:
        if key not in node:
            return default
        value = node[key]
        if not isinstance(value, str):
            if secret:
                self.problems.add(_line(node, key), f"{where}.{key}", "expected a string")
                return default
            return value
        try:
            expanded, used = expand_env(value, f"{self.path}:{_line(node, key)}: {where}.{key}", self.env)
        except ConfigError as exc:
            self.problems.items.append(str(exc))
            return default
        if secret:
            return Secret(expanded, source=value if used else "inline")
        return expanded

    def number(self, node: Mapping, key: str, where: str, default: Any, kind: type = int,
               minimum: float = 0) -> Any:
        value = self.text(node, key, where, default)
        try:
            number = kind(value)
            if isinstance(value, bool) or number < minimum:
                raise ValueError
            return number
        except (TypeError, ValueError):
            self.problems.add(_line(node, key), f"{where}.{key}",
                              f"expected a {'whole ' if kind is int else ''}number >= {minimum}, got {value!r}")
            return default

    def duration(self, node: Mapping, key: str, where: str, default: float) -> float:
        value = self.text(node, key, where, default)
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.problems.add(_line(node, key), f"{where}.{key}", str(exc))
            return default

    def positive_duration(self, node: Mapping, key: str, where: str, default: float) -> float:
        value = self.duration(node, key, where, default)
        if value <= 0:
            self.problems.add(_line(node, key), f"{where}.{key}", "expected a duration above zero, e.g. 30s")
            return default
        return value

    def boolean(self, node: Mapping, key: str, where: str, default: bool) -> bool:
        value = self.text(node, key, where, default)
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        self.problems.add(_line(node, key), f"{where}.{key}", f"expected true or false, got {value!r}")
        return default

    def mapping(self, node: Mapping, key: str, where: str) -> LineDict:
        value = node.get(key)
        if value is None:
            return LineDict()
        if not isinstance(value, dict):
            self.problems.add(_line(node, key), f"{where}{key}", "expected a mapping of keys to values")
            return LineDict()
        return value

    def resolve_path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else (self.path.parent / path)

    # -- sections --------------------------------------------------------------------------------
    def server(self, node: Mapping) -> ServerConfig:
        _check_keys(node, ("host", "port", "max_body_bytes", "threads", "log_format", "connection_limit",
                           "channel_timeout", "cleanup_interval", "max_request_header_size", "trusted_proxy",
                           "processes"), "server", self.problems)
        d = ServerConfig()
        log_format = self.text(node, "log_format", "server", "text")
        if log_format not in ("text", "json"):
            self.problems.add(_line(node, "log_format"), "server.log_format", "expected 'text' or 'json'")
            log_format = "text"
        return ServerConfig(
            host=str(self.text(node, "host", "server", "127.0.0.1")),
            port=self.number(node, "port", "server", 8080),
            max_body_bytes=self.number(node, "max_body_bytes", "server", 1_048_576, minimum=1),
            threads=self.number(node, "threads", "server", 8, minimum=1),
            log_format=log_format,
            connection_limit=self.number(node, "connection_limit", "server", d.connection_limit, minimum=1),
            channel_timeout=self.positive_duration(node, "channel_timeout", "server", d.channel_timeout),
            cleanup_interval=self.positive_duration(node, "cleanup_interval", "server", d.cleanup_interval),
            max_request_header_size=self.number(node, "max_request_header_size", "server",
                                                d.max_request_header_size, minimum=1024),
            trusted_proxy=self.trusted_proxy(node),
            processes=self.processes(node),
        )

    def trusted_proxy(self, node: Mapping) -> str | None:
        value = self.text(node, "trusted_proxy", "server", None)
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(str(value)))
        except ValueError:
            self.problems.add(_line(node, "trusted_proxy"), "server.trusted_proxy",
                              f"expected the IP address of the reverse proxy (e.g. 127.0.0.1), got {value!r}")
            return None

    def processes(self, node: Mapping) -> int | str:
        """`server.processes`: a whole number of at least 1, or `auto` (one per CPU core)."""
        value = self.text(node, "processes", "server", 1)
        if isinstance(value, str) and value.isdigit():  # from ${VAR}
            value = int(value)
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        self.problems.add(_line(node, "processes"), "server.processes",
                          f"expected a whole number >= 1 or 'auto', got {value!r}")
        return 1

    def store(self, node: Mapping) -> StoreConfig:
        _check_keys(node, ("url", "group", "dedup_window", "retention", "spool_dir", "ca_file", "cert_file",
                           "key_file", "password_file"), "store", self.problems)
        url = str(self.text(node, "url", "store", "sqlite:///var/idhooks.db"))
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = "sqlite:///" + str(self.resolve_path(url[len("sqlite:///"):]))
        elif not url.startswith(("sqlite:///", *REDIS_SCHEMES, *POSTGRES_SCHEMES)):
            self.problems.add(_line(node, "url"), "store.url",
                              f"unsupported store URL {url.split(':')[0]!r}: use sqlite:///PATH, redis://HOST:PORT/DB, "
                              "redis+sentinel://HOST:26379/MASTER_NAME or postgresql://HOST:5432/DBNAME")
        spool = self.text(node, "spool_dir", "store", None)
        dedup_window = self.duration(node, "dedup_window", "store", 7 * 86400.0)
        retention = self.duration(node, "retention", "store", 30 * 86400.0)
        if retention < dedup_window:
            self.problems.add(_line(node, "retention"), "store.retention",
                              f"must be at least store.dedup_window ({format_duration(dedup_window)}): a jti is "
                              "recognised as a repeat for as long as its event is kept")
        tls = self.store_tls_files(node, url)
        password = self.store_password(node, url)
        return StoreConfig(
            url=url,
            group=str(self.text(node, "group", "store", "idhooks")),
            dedup_window=dedup_window,
            retention=retention,
            spool_dir=self.resolve_path(spool or "var/spool"),
            password=password,
            **tls,
        )

    def store_password(self, node: Mapping, url: str) -> Secret | None:
        """`store.password_file` of a PostgreSQL store, as a Secret (never shown)."""
        value = self.text(node, "password_file", "store", None)
        if value is None:
            return None
        if not url.startswith(POSTGRES_SCHEMES):
            self.problems.add(_line(node, "password_file"), "store.password_file",
                              "only used with a PostgreSQL store (a Redis password goes in the URL: "
                              "redis://:${REDIS_PASSWORD}@HOST:6379/0)")
            return None
        path = self.resolve_path(str(value))
        try:
            return Secret(read_secret_file(path), source=str(value))
        except OSError as exc:
            self.problems.add(_line(node, "password_file"), "store.password_file", f"cannot read {path}: {exc.strerror}")
        except UnicodeDecodeError:
            self.problems.add(_line(node, "password_file"), "store.password_file", f"{path} is not UTF-8 text")
        return None

    def store_tls_files(self, node: Mapping, url: str) -> dict[str, Path]:
        """`ca_file`, `cert_file` and `key_file` for a rediss:// or PostgreSQL store: files that exist, the last
        two together."""
        files: dict[str, Path] = {}
        for key in ("ca_file", "cert_file", "key_file"):
            value = self.text(node, key, "store", None)
            if value is None:
                continue
            if not url.startswith((*TLS_SCHEMES, *POSTGRES_SCHEMES)):
                self.problems.add(_line(node, key), f"store.{key}",
                                  "only used with a TLS store URL: write rediss://HOST:PORT/DB (or use PostgreSQL)")
                continue
            path = self.resolve_path(str(value))
            if not path.is_file():
                self.problems.add(_line(node, key), f"store.{key}", f"no such file: {path}")
                continue
            files[key] = path
        if ("cert_file" in node) != ("key_file" in node):
            given, missing = ("cert_file", "key_file") if "cert_file" in node else ("key_file", "cert_file")
            self.problems.add(_line(node, given), f"store.{missing}",
                              f"store.{given} needs store.{missing}: a client certificate and its private key go "
                              "together")
        return files

    def webhook(self, node: Any, index: int, seen: set[str]) -> WebhookConfig | None:
        where = f"webhooks[{index}]"
        if not isinstance(node, dict):
            self.problems.add(_line(node), where, "expected a mapping with name, path and secret")
            return None
        _check_keys(node, ("name", "path", "secret", "secret_file", "secrets", "topics", "silence_after"),
                    where, self.problems)
        name = str(node.get("name", ""))
        if not _NAME_PATTERN.match(name):
            self.problems.add(_line(node, "name"), f"{where}.name",
                              f"expected a name of lowercase letters, digits, '-' or '_', got {name!r}")
        elif name in seen:
            self.problems.add(_line(node, "name"), f"{where}.name", f"duplicate webhook name {name!r}")
        seen.add(name)
        path = str(node.get("path", f"/webhooks/{name}"))
        if not path.startswith("/"):
            self.problems.add(_line(node, "path"), f"{where}.path", f"expected a path starting with '/', got {path!r}")
        secrets = self.webhook_secrets(node, where)
        topics = node.get("topics", ["*"])
        if isinstance(topics, str):
            topics = [topics]
        if not isinstance(topics, list) or not all(isinstance(t, str) and t for t in topics):
            self.problems.add(_line(node, "topics"), f"{where}.topics", "expected a list of topic patterns")
            topics = []
        return WebhookConfig(name=name, path=path, secrets=tuple(secrets), topics=tuple(topics),
                             silence_after=self.duration(node, "silence_after", where, 24 * 3600.0))

    def webhook_secrets(self, node: Mapping, where: str) -> list[Secret]:
        given = [k for k in ("secret", "secret_file", "secrets") if k in node]
        if len(given) != 1:
            what = "no secret" if not given else f"both {' and '.join(given)}"
            self.problems.add(_line(node), where,
                              f"{what}: give exactly one of secret: ${{ENV_VAR}}, secret_file: PATH, "
                              "or secrets: [new, old]")
            return []
        key = given[0]
        if not self.read_secrets:  # an offline command: the webhook secret is only needed to receive
            return []
        if key == "secret_file":
            file_path = self.resolve_path(str(self.text(node, key, where, "")))
            try:
                value = read_secret_file(file_path)
            except OSError as exc:
                self.problems.add(_line(node, key), f"{where}.secret_file",
                                  f"cannot read secret file {file_path}: {exc.strerror or exc}")
                return []
            secrets = [Secret(value, source=str(file_path))]
        elif key == "secret":
            secrets = [self.text(node, key, where, None, secret=True)]
        else:
            items = node[key] if isinstance(node[key], list) else []
            secrets = [self.text({"s": item}, "s", f"{where}.secrets", None, secret=True) for item in items]
        secrets = [s for s in secrets if s is not None]
        if not secrets or any(not s.reveal().strip() for s in secrets):
            self.problems.add(_line(node, key), f"{where}.{key}",
                              "the secret is empty (or only whitespace): set it to the secret shown in the "
                              "Asgardeo console")
            return []
        return secrets

    def rules(self, node: Mapping) -> RulesConfig:
        _check_keys(node, ("paths", "watch", "watch_interval"), "rules", self.problems)
        paths = node.get("paths", ["rules/"])
        if isinstance(paths, str):
            paths = [paths]
        if not isinstance(paths, list):
            self.problems.add(_line(node, "paths"), "rules.paths", "expected a list of folders or files")
            paths = []
        return RulesConfig(paths=tuple(self.resolve_path(str(p)) for p in paths),
                           watch=self.boolean(node, "watch", "rules", True),
                           watch_interval=self.duration(node, "watch_interval", "rules", 1.0))

    def enrich(self, node: Mapping) -> EnrichConfig:
        _check_keys(node, ("geoip_file", "asn_file"), "enrich", self.problems)
        files: dict[str, Path | None] = {}
        for key in ("geoip_file", "asn_file"):
            value = self.text(node, key, "enrich")
            files[key] = None
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                self.problems.add(_line(node, key), f"enrich.{key}", f"expected the path of a .mmdb file, got {value!r}")
            elif not self.resolve_path(value).is_file():
                self.problems.add(_line(node, key), f"enrich.{key}", f"no such file: {self.resolve_path(value)}")
            else:
                files[key] = self.resolve_path(value)
        return EnrichConfig(**files)

    def quarantine(self, node: Mapping) -> QuarantineConfig:
        _check_keys(node, ("max_entries", "max_bytes"), "quarantine", self.problems)
        return QuarantineConfig(max_entries=self.number(node, "max_entries", "quarantine", 1000),
                                max_bytes=self.number(node, "max_bytes", "quarantine", 50 * 1_048_576))

    def subscriptions(self, node: Mapping) -> SubscriptionsConfig:
        _check_keys(node, ("max_records", "warn_before"), "subscriptions", self.problems)
        d = SubscriptionsConfig()
        return SubscriptionsConfig(
            max_records=self.number(node, "max_records", "subscriptions", d.max_records, minimum=1),
            warn_before=self.duration(node, "warn_before", "subscriptions", d.warn_before))

    def metrics(self, node: Mapping) -> MetricsConfig:
        _check_keys(node, ("listen", "token", "token_file"), "metrics", self.problems)
        listen = None
        if "listen" in node:
            host, _, port = str(self.text(node, "listen", "metrics", "")).rpartition(":")
            if not host or not port.isdigit():
                self.problems.add(_line(node, "listen"), "metrics.listen",
                                  "expected HOST:PORT, e.g. 127.0.0.1:9100")
            else:
                listen = (host.strip("[]"), int(port))
        if "token" in node and "token_file" in node:
            self.problems.add(_line(node, "token_file"), "metrics", "give token or token_file, not both")
        token = self.text(node, "token", "metrics", None, secret=True)
        if "token_file" in node:
            token_path = self.resolve_path(str(node["token_file"]))
            try:
                token = Secret(read_secret_file(token_path), source=str(token_path))
            except OSError as exc:
                self.problems.add(_line(node, "token_file"), "metrics.token_file",
                                  f"cannot read {token_path}: {exc.strerror or exc}")
        if token is not None and not token.reveal().strip():
            self.problems.add(_line(node), "metrics", "the token is empty (or only whitespace)")
        return MetricsConfig(listen=listen, token=token)

    def delivery(self, node: Mapping) -> DeliveryConfig:
        keys = ("workers", "lease", "retry_for", "backoff_initial", "backoff_max",
                "per_destination_concurrency", "shutdown_grace")
        _check_keys(node, keys, "delivery", self.problems)
        d = DeliveryConfig()
        return DeliveryConfig(
            workers=self.number(node, "workers", "delivery", d.workers, minimum=1),
            lease=self.duration(node, "lease", "delivery", d.lease),
            retry_for=self.duration(node, "retry_for", "delivery", d.retry_for),
            backoff_initial=self.duration(node, "backoff_initial", "delivery", d.backoff_initial),
            backoff_max=self.duration(node, "backoff_max", "delivery", d.backoff_max),
            per_destination_concurrency=self.number(node, "per_destination_concurrency", "delivery",
                                                    d.per_destination_concurrency, minimum=1),
            shutdown_grace=self.duration(node, "shutdown_grace", "delivery", d.shutdown_grace),
        )

    def destinations(self, node: Mapping) -> dict[str, dict[str, Any]]:
        """Destinations stay dicts here (each action plugin validates its own keys); values that used
        `${ENV}` and every `X_file` become Secrets."""
        result: dict[str, dict[str, Any]] = {}
        for name, body in node.items():
            where = f"destinations.{name}"
            if not isinstance(body, dict) or "type" not in body:
                self.problems.add(_line(node, name), where, "expected a mapping with a 'type' (slack, email, http)")
                continue
            result[str(name)] = self.destination_values(body, where)
        return result

    def destination_values(self, body: Any, where: str) -> Any:
        if isinstance(body, dict):
            out = LineDict()
            out.line, out.key_lines = _line(body), dict(getattr(body, "key_lines", {}))
            for key, value in body.items():
                if key in _PATH_KEYS and isinstance(value, str):
                    out[key] = str(self.resolve_path(value))
                    continue
                if isinstance(key, str) and key.endswith("_file") and isinstance(value, str):
                    target = key[: -len("_file")]
                    if target in body:
                        self.problems.add(_line(body, key), f"{where}.{key}", f"give {target} or {key}, not both")
                    try:
                        out[target] = Secret(read_secret_file(self.resolve_path(value)), source=value)
                    except OSError as exc:
                        self.problems.add(_line(body, key), f"{where}.{key}", f"cannot read {value}: {exc.strerror}")
                    continue
                out[key] = self.destination_values(value, f"{where}.{key}") if isinstance(value, (dict, list)) \
                    else self.destination_scalar(body, key, where)
            return out
        return [self.destination_values(v, f"{where}[{i}]") if isinstance(v, (dict, list))
                else self.destination_scalar({i: v}, i, where) for i, v in enumerate(body)]

    def destination_scalar(self, body: Mapping, key: Any, where: str) -> Any:
        """A `${ENV}` value as a Secret; an inline credential (a Slack webhook URL, a token, a password, a
        URL with a userinfo or a query) is a Secret too, so it is never logged, stored or shown whichever
        way it was written."""
        value = body[key]
        if not isinstance(value, str):
            return value
        if "${" in value:
            return self.text(body, key, where, None, secret=True)
        if key in CREDENTIAL_KEYS or url_credentials(value):
            return Secret(value, source=f"{where}.{key}")
        return value


CREDENTIAL_KEYS = frozenset({"webhook_url", "token", "password"})
"""Destination keys whose value is a credential even when written inline in config.yaml."""

_TOP_KEYS = ("server", "store", "webhooks", "rules", "quarantine", "delivery", "destinations", "metrics", "enrich",
             "subscriptions")


def load_config(path: str | Path, env: Mapping[str, str] | None = None, *, offline: bool = False) -> Config:
    """Read and validate config.yaml; raises ConfigError listing every problem found. `offline` (commands
    that receive nothing: validate, test, replay, events, ...) skips reading the webhook secrets, so they
    work on a fresh clone without var/webhook-secret; their webhooks then have no secrets."""
    path = Path(path).resolve()
    env = os.environ if env is None else env
    raw = load_yaml_file(path)
    raw = LineDict() if raw is None else raw
    reader = _Reader(path, env, read_secrets=not offline)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}:1: expected a mapping with server, store, webhooks and rules")
    _check_keys(raw, _TOP_KEYS, "", reader.problems)
    webhooks_raw = raw.get("webhooks") or []
    if not isinstance(webhooks_raw, list):
        reader.problems.add(_line(raw, "webhooks"), "webhooks", "expected a list of webhooks")
        webhooks_raw = []
    seen: set[str] = set()
    webhooks = [reader.webhook(node, i, seen) for i, node in enumerate(webhooks_raw)]
    paths = [w.path for w in webhooks if w]
    for dup in {p for p in paths if paths.count(p) > 1}:
        reader.problems.add(_line(raw, "webhooks"), "webhooks", f"two webhooks share the path {dup!r}")
    config = Config(
        path=path,
        server=reader.server(reader.mapping(raw, "server", "")),
        store=reader.store(reader.mapping(raw, "store", "")),
        webhooks=tuple(w for w in webhooks if w),
        rules=reader.rules(reader.mapping(raw, "rules", "")),
        quarantine=reader.quarantine(reader.mapping(raw, "quarantine", "")),
        delivery=reader.delivery(reader.mapping(raw, "delivery", "")),
        destinations=reader.destinations(reader.mapping(raw, "destinations", "")),
        metrics=reader.metrics(reader.mapping(raw, "metrics", "")),
        enrich=reader.enrich(reader.mapping(raw, "enrich", "")),
        subscriptions=reader.subscriptions(reader.mapping(raw, "subscriptions", "")),
    )
    if reader.problems.items:
        raise ConfigError(reader.problems.items)
    return config


def all_secrets(config: Config) -> list[Secret]:
    """Every secret in the config, for redacting error messages and response snippets."""
    return [s for w in config.webhooks for s in w.secrets] + find_secrets(dict(config.destinations))
