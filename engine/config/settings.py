"""config.yaml -> frozen dataclasses. Strict: unknown keys are errors with a did-you-mean.

Each section is a dataclass whose plain keys are declared once, as `setting()` fields (engine/config/
schema.py reads them with the dataclass's defaults and the same type rules as every other YAML reader);
the few keys that need more (paths, secrets, the store URL) are read by hand below.

`${VAR}` and `${VAR:-default}` are expanded in string values after YAML parsing (so a variable can never
inject YAML). Values expanded inside `webhooks[].secret(s)` and `destinations` become `Secret`s; a key
`X_file: PATH` reads secret `X` from a file. Relative paths resolve against the config file's folder.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from engine.config.durations import format_duration
from engine.config.schema import Reader, line_of, read_settings, setting, short_repr, suggest
from engine.config.storeurl import POSTGRES_SCHEMES, STORE_SCHEMES, TLS_SCHEMES
from engine.config.yamlsource import LineDict, load_yaml_file
from engine.cpus import PIN_MODES
from engine.errors import ConfigError
from engine.secrets import Secret, find_secrets, read_secret_file, redact_url, url_credentials

__all__ = ["API_ROLES", "ApiConfig", "ApiToken", "Config", "DeliveryConfig", "EnrichConfig", "MetricsConfig", "QuarantineConfig", "RulesConfig",
           "ServerConfig", "StoreConfig", "SubscriptionsConfig", "WebhookConfig", "all_secrets", "load_config",
           "suggest"]

_ENV_PATTERN = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_PATH_KEYS = ("ca_file",)
"""Destination keys that name a file to use (not a secret to read), resolved against the config folder."""
HTTP_SERVERS = ("granian", "waitress")
_NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]*$")


@dataclass(frozen=True)
class ServerConfig:
    host: str = setting("127.0.0.1")
    port: int = setting(8080)
    max_body_bytes: int = setting(1_048_576, minimum=1)
    threads: int = setting(8, minimum=1)
    log_format: str = setting("text")  # or "json"
    # granian: the async intake (engine/receive/front.py); waitress: a thread per request, as before issue 14
    http_server: str = setting("granian")
    # waitress's limits on idle and slow clients (its own defaults, 100 connections idle for 120 s, let
    # about 100 idle connections lock everyone out): see docs/deployment.md for what a front proxy adds
    connection_limit: int = setting(1000, minimum=1)
    channel_timeout: float = setting(30.0, kind="duration", above_zero=True)
    cleanup_interval: float = setting(10.0, kind="duration", above_zero=True)
    max_request_header_size: int = setting(65_536, minimum=1024)
    # granian: request bodies held at once over all connections (engine/receive/front.py, BodyBudget)
    max_buffered_bytes: int = setting(67_108_864, minimum=65_536)
    trusted_proxy: str | None = None  # the front proxy's address: X-Forwarded-For from it names the client
    processes: int | str = 1  # `auto`: one per CPU this process may use (engine/cpus.py)
    cpu_pinning: str = "auto"  # auto | always | never (engine/cpus.py: pinned_cpus, split_cpus)


@dataclass(frozen=True)
class StoreConfig:
    url: str = setting("sqlite:///var/idhooks.db", shown=False)  # may hold a Redis password
    group: str = setting("idhooks")
    dedup_window: float = setting(7 * 86400.0, kind="duration")
    retention: float = setting(30 * 86400.0, kind="duration")
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
    silence_after: float = setting(24 * 3600.0, kind="duration")


@dataclass(frozen=True)
class RulesConfig:
    paths: tuple[Path, ...] = ()
    watch: bool = setting(True)
    watch_interval: float = setting(1.0, kind="duration")


@dataclass(frozen=True)
class EnrichConfig:
    """Operator-supplied MaxMind / DB-IP files for IP enrichment; None: the bundled country data."""

    geoip_file: Path | None = None
    asn_file: Path | None = None


@dataclass(frozen=True)
class QuarantineConfig:
    max_entries: int = setting(1000)
    max_bytes: int = setting(50 * 1_048_576)


@dataclass(frozen=True)
class SubscriptionsConfig:
    """What is kept of the hub's verification requests (any caller can send them) and when a lease warns."""

    max_records: int = setting(200, minimum=1)  # per webhook: the oldest records go first
    warn_before: float = setting(3 * 86400.0, kind="duration")  # `idhooks subscriptions` warns when a lease ends within this


@dataclass(frozen=True)
class DeliveryConfig:
    workers: int = setting(4, minimum=1)
    lease: float = setting(60.0, kind="duration")
    retry_for: float = setting(24 * 3600.0, kind="duration")
    backoff_initial: float = setting(5.0, kind="duration")
    backoff_max: float = setting(3600.0, kind="duration")
    per_destination_concurrency: int = setting(2, minimum=1)
    shutdown_grace: float = setting(10.0, kind="duration")
    lane: bool = setting(True)


@dataclass(frozen=True)
class MetricsConfig:
    """Where /metrics is served: on the main port (default) or only on `listen`; optionally behind a token."""

    listen: tuple[str, int] | None = None
    token: Secret | None = None


API_ROLES = ("viewer", "operator")


@dataclass(frozen=True)
class ApiToken:
    """One bearer token of the API and console: `viewer` reads, `operator` also retries, drops, reverifies."""

    name: str
    token: Secret
    role: str = "viewer"


@dataclass(frozen=True)
class ApiConfig:
    """The JSON API and console: off unless a token is configured; on the main port or only on `listen`;
    `mask` names the fields shown masked to viewers."""

    listen: tuple[str, int] | None = None
    tokens: tuple[ApiToken, ...] = ()
    mask: tuple[str, ...] = ()


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
    api: ApiConfig = field(default_factory=ApiConfig)

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


def expand_env(value: str, env: Mapping[str, str]) -> tuple[str, bool]:
    """Expand `${VAR}` / `${VAR:-default}`; returns (text, whether a variable was used). ValueError names
    a variable that is neither set nor has a default."""
    used = False

    def replace(match: re.Match) -> str:
        nonlocal used
        name, default = match.group(1), match.group(2)
        if name in env:
            used = True
            return env[name]
        if default is not None:
            return default
        raise ValueError(f"environment variable {name} is not set (and has no ${{{name}:-default}})")

    return _ENV_PATTERN.sub(replace, value), used


class _Reader:
    """Turns the raw YAML tree into dataclasses, collecting problems instead of stopping at the first."""

    def __init__(self, path: Path, env: Mapping[str, str], read_secrets: bool = True) -> None:
        self.path = path
        self.env = env
        self.read_secrets = read_secrets
        self.problems = _Problems(str(path))

    def reader(self, node: Any, where: str) -> Reader:
        return Reader(node, where, self.problems.add, self.expand)

    def expand(self, value: str) -> str:
        return expand_env(value, self.env)[0]

    def secret(self, read: Reader, key: str) -> Secret | None:
        """A secret value: text (expanded), kept as a Secret that remembers where it came from."""
        if key not in read.node:
            return None
        value = read.node[key]
        if not isinstance(value, str):
            read.add(key, "expected a string")
            return None
        try:
            expanded, used = expand_env(value, self.env)
        except ValueError as exc:
            read.add(key, str(exc))
            return None
        return Secret(expanded, source=value if used else "inline")

    def resolve_path(self, value: str) -> Path:
        path = Path(value)
        return path if path.is_absolute() else (self.path.parent / path)

    # -- sections --------------------------------------------------------------------------------
    def server(self, read: Reader) -> ServerConfig:
        values = read_settings(ServerConfig, read, extra_keys=("trusted_proxy", "processes", "cpu_pinning"))
        if values["log_format"] not in ("text", "json"):
            read.add("log_format", "expected 'text' or 'json'")
            values["log_format"] = "text"
        if values["http_server"] not in HTTP_SERVERS:
            read.add("http_server", "expected 'granian' (the default: event POSTs in an event loop) or 'waitress' "
                                    "(a thread per request)")
            values["http_server"] = "granian"
        return ServerConfig(**values, trusted_proxy=self.trusted_proxy(read), processes=self.processes(read),
                            cpu_pinning=self.cpu_pinning(read))

    @staticmethod
    def trusted_proxy(read: Reader) -> str | None:
        value = read.value("trusted_proxy")
        if value is None:
            return None
        try:
            return str(ipaddress.ip_address(str(value)))
        except ValueError:
            read.add("trusted_proxy", f"expected the IP address of the reverse proxy (e.g. 127.0.0.1), got {value!r}")
            return None

    @staticmethod
    def processes(read: Reader) -> int | str:
        """`server.processes`: a whole number of at least 1, or `auto` (one per CPU this process may use)."""
        value = read.value("processes", 1)
        if isinstance(value, str) and value.isdigit():  # from ${VAR}
            value = int(value)
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        read.add("processes", f"expected a whole number >= 1 or 'auto', got {short_repr(value)}")
        return 1

    @staticmethod
    def cpu_pinning(read: Reader) -> str:
        """`server.cpu_pinning`: auto, always or never (YAML's true and false are always and never)."""
        value = read.value("cpu_pinning", "auto")
        if value is True or value is False:
            return "always" if value else "never"
        if value in PIN_MODES:
            return str(value)
        read.add("cpu_pinning", f"expected 'auto' (a process's Python threads on one CPU, granian's on the "
                                f"others; each of several processes on a CPU of its own when there is one CPU per "
                                f"process), 'always' or 'never', got {short_repr(value)}")
        return "auto"

    def store(self, read: Reader) -> StoreConfig:
        values = read_settings(StoreConfig, read, extra_keys=("spool_dir", "ca_file", "cert_file", "key_file",
                                                               "password_file"))
        url = values["url"]
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            url = "sqlite:///" + str(self.resolve_path(url[len("sqlite:///"):]))
        elif not url.startswith(STORE_SCHEMES):
            read.add("url", f"unsupported store URL {url.split(':')[0]!r}: use sqlite:///PATH, redis://HOST:PORT/DB, "
                            "redis+sentinel://HOST:26379/MASTER_NAME or postgresql://HOST:5432/DBNAME")
        if values["retention"] < values["dedup_window"]:
            read.add("retention", f"must be at least store.dedup_window ({format_duration(values['dedup_window'])}): "
                                  "a jti is recognised as a repeat for as long as its event is kept")
        spool = read.text("spool_dir", None)
        return StoreConfig(**{**values, "url": url}, spool_dir=self.resolve_path(spool or "var/spool"),
                           password=self.store_password(read, url), **self.store_tls_files(read, url))

    def store_password(self, read: Reader, url: str) -> Secret | None:
        """`store.password_file` of a PostgreSQL store, as a Secret (never shown)."""
        value = read.text("password_file", None)
        if value is None:
            return None
        if not url.startswith(POSTGRES_SCHEMES):
            read.add("password_file", "only used with a PostgreSQL store (a Redis password goes in the URL: "
                                      "redis://:${REDIS_PASSWORD}@HOST:6379/0)")
            return None
        path = self.resolve_path(value)
        try:
            return Secret(read_secret_file(path), source=value)
        except OSError as exc:
            read.add("password_file", f"cannot read {path}: {exc.strerror}")
        except UnicodeDecodeError:
            read.add("password_file", f"{path} is not UTF-8 text")
        return None

    def store_tls_files(self, read: Reader, url: str) -> dict[str, Path]:
        """`ca_file`, `cert_file` and `key_file` for a rediss:// or PostgreSQL store: files that exist, the last
        two together."""
        files: dict[str, Path] = {}
        for key in ("ca_file", "cert_file", "key_file"):
            value = read.text(key, None)
            if value is None:
                continue
            if not url.startswith((*TLS_SCHEMES, *POSTGRES_SCHEMES)):
                read.add(key, "only used with a TLS store URL: write rediss://HOST:PORT/DB (or use PostgreSQL)")
                continue
            path = self.resolve_path(value)
            if not path.is_file():
                read.add(key, f"no such file: {path}")
                continue
            files[key] = path
        node = read.node
        if ("cert_file" in node) != ("key_file" in node):
            given, missing = ("cert_file", "key_file") if "cert_file" in node else ("key_file", "cert_file")
            self.problems.add(line_of(node, given), f"store.{missing}",
                              f"store.{given} needs store.{missing}: a client certificate and its private key go "
                              "together")
        return files

    def webhook(self, node: Any, index: int, seen: set[str]) -> WebhookConfig | None:
        read = self.reader(node, f"webhooks[{index}]")
        if not read.ok:
            read.add(None, "expected a mapping with name, path and secret")
            return None
        values = read_settings(WebhookConfig, read, extra_keys=("name", "path", "secret", "secret_file", "secrets",
                                                                "topics"))
        name = str(node.get("name", ""))
        if not _NAME_PATTERN.match(name):
            read.add("name", f"expected a name of lowercase letters, digits, '-' or '_', got {name!r}")
        elif name in seen:
            read.add("name", f"duplicate webhook name {name!r}")
        seen.add(name)
        path = str(node.get("path", f"/webhooks/{name}"))
        if not path.startswith("/"):
            read.add("path", f"expected a path starting with '/', got {path!r}")
        topics = read.text_list("topics", single=True, what="a list of topic patterns")
        return WebhookConfig(name=name, path=path, secrets=tuple(self.webhook_secrets(read)),
                             topics=("*",) if "topics" not in node else tuple(topics or ()), **values)

    def webhook_secrets(self, read: Reader) -> list[Secret]:
        node = read.node
        given = [k for k in ("secret", "secret_file", "secrets") if k in node]
        if len(given) != 1:
            what = "no secret" if not given else f"both {' and '.join(given)}"
            read.add(None, f"{what}: give exactly one of secret: ${{ENV_VAR}}, secret_file: PATH, "
                           "or secrets: [new, old]")
            return []
        key = given[0]
        if not self.read_secrets:  # an offline command: the webhook secret is only needed to receive
            return []
        if key == "secret_file":
            file_path = self.resolve_path(str(read.value(key, "")))
            try:
                value = read_secret_file(file_path)
            except OSError as exc:
                read.add("secret_file", f"cannot read secret file {file_path}: {exc.strerror or exc}")
                return []
            found: list[Secret | None] = [Secret(value, source=str(file_path))]
        elif key == "secret":
            found = [self.secret(read, key)]
        else:
            items = node[key] if isinstance(node[key], list) else []
            found = [self.secret(self.reader({"s": item}, f"{read.where}.secrets"), "s") for item in items]
        secrets = [s for s in found if s is not None]
        if not secrets or any(not s.reveal().strip() for s in secrets):
            read.add(key, "the secret is empty (or only whitespace): set it to the secret shown in the Asgardeo "
                          "console")
            return []
        return secrets

    def rules(self, read: Reader) -> RulesConfig:
        values = read_settings(RulesConfig, read, extra_keys=("paths",))
        paths = read.text_list("paths", single=True, what="a list of folders or files")
        if "paths" not in read.node:
            paths = ["rules/"]
        return RulesConfig(paths=tuple(self.resolve_path(p) for p in paths or ()), **values)

    def enrich(self, read: Reader) -> EnrichConfig:
        read.check_keys(("geoip_file", "asn_file"))
        files: dict[str, Path | None] = {}
        for key in ("geoip_file", "asn_file"):
            value = read.value(key)
            files[key] = None
            if value is None:
                continue
            if not isinstance(value, str) or not value.strip():
                read.add(key, f"expected the path of a .mmdb file, got {value!r}")
            elif not self.resolve_path(value).is_file():
                read.add(key, f"no such file: {self.resolve_path(value)}")
            else:
                files[key] = self.resolve_path(value)
        return EnrichConfig(**files)

    def metrics(self, read: Reader) -> MetricsConfig:
        read.check_keys(("listen", "token", "token_file"))
        return MetricsConfig(listen=self.listen(read, "9100"), token=self.token(read))

    @staticmethod
    def listen(read: Reader, example_port: str) -> tuple[str, int] | None:
        """`listen: HOST:PORT` of a separate listener (metrics, api)."""
        if "listen" not in read.node:
            return None
        host, _, port = str(read.value("listen", "")).rpartition(":")
        if not host or not port.isdigit():
            read.add("listen", f"expected HOST:PORT, e.g. 127.0.0.1:{example_port}")
            return None
        return (host.strip("[]"), int(port))

    def token(self, read: Reader) -> Secret | None:
        """`token: ${ENV}` or `token_file: PATH` of a mapping (never both, never empty)."""
        node = read.node
        if "token" in node and "token_file" in node:
            read.add(None, "give token or token_file, not both")
        token = self.secret(read, "token")
        if "token_file" in node:
            token_path = self.resolve_path(str(node["token_file"]))
            try:
                token = Secret(read_secret_file(token_path), source=str(token_path))
            except (OSError, UnicodeDecodeError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
                read.add("token_file", f"cannot read {token_path}: {reason}")
        if token is not None and not token.reveal().strip():
            read.add(None, "the token is empty (or only whitespace)")
        return token

    def api(self, read: Reader) -> ApiConfig:
        read.check_keys(("listen", "tokens", "mask"))
        items = read.node.get("tokens") or []
        if not isinstance(items, list):
            read.add("tokens", "expected a list of {name, token_file, role}")
            items = []
        tokens = [self.api_token(read, item, i) for i, item in enumerate(items)]
        names = [t.name for t in tokens if t]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            read.add("tokens", f"two tokens are named {dup!r}")
        mask = read.text_list("mask", what="a list of field paths, e.g. [claims.emailaddress, claims.mobile]")
        return ApiConfig(listen=self.listen(read, "8081"), tokens=tuple(t for t in tokens if t),
                         mask=tuple(mask or ()))

    def api_token(self, parent: Reader, node: Any, index: int) -> ApiToken | None:
        read = Reader(node, f"api.tokens[{index}]", self.problems.add, self.expand,
                      line=line_of(parent.node.get("tokens"), index))
        if not read.expect_mapping("with name, token_file (or token) and role"):
            return None
        read.check_keys(("name", "token", "token_file", "role"))
        name = read.node.get("name")
        if not isinstance(name, str) or not _NAME_PATTERN.match(name):
            read.add("name", "expected a name of lowercase letters, digits, - and _, e.g. ops-team")
        role = read.node.get("role", "viewer")
        if role not in API_ROLES:
            read.add("role", f"expected viewer or operator{suggest(str(role), API_ROLES)}")
        if "token" not in read.node and "token_file" not in read.node:
            read.add(None, "give token_file: PATH or token: ${ENV_VAR}")
        if not self.read_secrets:  # an offline command: tokens are only needed to serve the API
            if "token" in read.node and "token_file" in read.node:
                read.add(None, "give token or token_file, not both")
            return None
        token = self.token(read)
        if token is None or not isinstance(name, str) or role not in API_ROLES:
            return None
        return ApiToken(name=name, token=token, role=role)

    def destinations(self, read: Reader) -> dict[str, dict[str, Any]]:
        """Destinations stay dicts here (each action plugin validates its own keys with
        actions/destination.py); values that used `${ENV}` and every `X_file` become Secrets."""
        result: dict[str, dict[str, Any]] = {}
        for name, body in read.node.items():
            if not isinstance(body, dict) or "type" not in body:
                read.add(name, "expected a mapping with a 'type' (slack, email, http, ...: see docs/actions.md)")
                continue
            result[str(name)] = self.destination_values(body, f"destinations.{name}")
        return result

    def destination_values(self, body: Any, where: str) -> Any:
        """A destination's mapping or list, values turned into Secrets where they are credentials. The
        YAML loader bounds the nesting depth, so this recursion is bounded too."""
        if isinstance(body, dict):
            out = LineDict()
            out.line, out.key_lines = line_of(body), dict(getattr(body, "key_lines", {}))
            for key, value in body.items():
                if key in _PATH_KEYS and isinstance(value, str):
                    out[key] = str(self.resolve_path(value))
                    continue
                if isinstance(key, str) and key.endswith("_file") and isinstance(value, str):
                    target = key[: -len("_file")]
                    if target in body:
                        self.problems.add(line_of(body, key), f"{where}.{key}", f"give {target} or {key}, not both")
                    try:
                        out[target] = Secret(read_secret_file(self.resolve_path(value)), source=value)
                    except OSError as exc:
                        self.problems.add(line_of(body, key), f"{where}.{key}", f"cannot read {value}: {exc.strerror}")
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
            return self.secret(self.reader(body, where), key)
        if key in CREDENTIAL_KEYS or "://" in value and url_credentials(value):
            return Secret(value, source=f"{where}.{key}")
        return value


CREDENTIAL_KEYS = frozenset({"webhook_url", "token", "password"})
"""Destination keys whose value is a credential even when written inline in config.yaml."""

_TOP_KEYS = tuple(f.name for f in dataclasses.fields(Config) if f.name != "path")
"""config.yaml's sections: the fields of Config."""


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
    top = reader.reader(raw, "")
    top.check_keys(_TOP_KEYS)
    webhooks_raw = raw.get("webhooks") or []
    if not isinstance(webhooks_raw, list):
        top.add("webhooks", "expected a list of webhooks")
        webhooks_raw = []
    seen: set[str] = set()
    webhooks = [reader.webhook(node, i, seen) for i, node in enumerate(webhooks_raw)]
    paths = [w.path for w in webhooks if w]
    for dup in {p for p in paths if paths.count(p) > 1}:
        top.add("webhooks", f"two webhooks share the path {dup!r}")
    config = Config(
        path=path,
        server=reader.server(top.section("server")),
        store=reader.store(top.section("store")),
        webhooks=tuple(w for w in webhooks if w),
        rules=reader.rules(top.section("rules")),
        quarantine=QuarantineConfig(**read_settings(QuarantineConfig, top.section("quarantine"))),
        delivery=DeliveryConfig(**read_settings(DeliveryConfig, top.section("delivery"))),
        destinations=reader.destinations(top.section("destinations")),
        metrics=reader.metrics(top.section("metrics")),
        enrich=reader.enrich(top.section("enrich")),
        subscriptions=SubscriptionsConfig(**read_settings(SubscriptionsConfig, top.section("subscriptions"))),
        api=reader.api(top.section("api")),
    )
    if reader.problems.items:
        raise ConfigError(reader.problems.items)
    return config


def all_secrets(config: Config) -> list[Secret]:
    """Every secret in the config, for redacting error messages and response snippets."""
    return [s for w in config.webhooks for s in w.secrets] + find_secrets(dict(config.destinations)) + \
        [t.token for t in config.api.tokens]
