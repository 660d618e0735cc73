"""Strict reading of one `destinations.<name>` mapping for an action's `__init__`.

Every problem is collected (unknown keys with a did-you-mean, wrong types, missing keys) and raised
together as one ConfigError, each as `config.yaml:LINE: destinations.NAME.KEY: what is wrong`.
Values that came from `${ENV}` or `X_file` are Secrets, and so are inline credentials (engine/config/
settings.py makes `webhook_url`, `token` and `password` Secrets whatever their form); `secret_text()`
accepts them, the other readers take plain values only, so a secret can never end up somewhere that
prints it. A plain URL with a userinfo or a query (a proxy `user:pass@`, a `?token=`) adds those parts to
`secrets()`, which every action redacts from what it reports.
"""

from __future__ import annotations

from typing import Any, Mapping
from urllib.parse import urlsplit

from actions.httpclient import FRAMING_HEADERS
from engine.config.retry import check_retry
from engine.config.schema import Reader
from engine.errors import ConfigError
from engine.secrets import Secret, find_secrets, url_credentials

_MISSING = object()


class DestinationReader:
    """Reads typed values out of one destination, remembering every problem. The typed reads are
    engine.config.schema.Reader's (the rules every YAML reader shares); this adds what destinations need:
    secrets, URLs, headers."""

    def __init__(self, source: str, name: str, destination: Mapping[str, Any]) -> None:
        self.source, self.name, self.node = source, name, destination
        self.problems: list[str] = []
        self._url_secrets: list[Secret] = []
        self.read = Reader(destination, f"destinations.{name}", self._report)

    def _report(self, line: int, where: str, message: str) -> None:
        self.problems.append(f"{self.source}:{line}: {where}: {message}")

    def add(self, key: str | None, message: str) -> None:
        self.read.add(key, message)

    def check_keys(self, allowed: Mapping[str, Any]) -> None:
        self.read.check_keys(tuple(allowed) + ("type", "retry"))
        check_retry(self.read)

    def _get(self, key: str, required: bool) -> Any:
        value = self.node.get(key, _MISSING)
        if value is _MISSING and required:
            self.add(None, f"missing required key '{key}'")
        return value

    def text(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        value = self._get(key, required)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or not value:
            self.add(key, "expected a non-empty string" + (" (use ${ENV} or *_file only for secrets)"
                                                          if isinstance(value, Secret) else ""))
            return default
        return value

    def secret_text(self, key: str, *, required: bool = False) -> Secret | str | None:
        """A string that may be a Secret (from ${ENV} or KEY_file)."""
        value = self._get(key, required)
        if value is _MISSING:
            return None
        if isinstance(value, Secret) and value.reveal() or isinstance(value, str) and value:
            return value
        self.add(key, "expected a non-empty string (or ${ENV} / " + key + "_file)")
        return None

    def http_timeouts(self) -> tuple[float, float]:
        """(connect_timeout, timeout) of an HTTP destination, 5 s and 10 s by default; `timeout` bounds the
        whole attempt (actions/deadline.py)."""
        return (self.number("connect_timeout", 5.0, minimum=0.001), self.number("timeout", 10.0, minimum=0.001))

    def number(self, key: str, default: float, *, minimum: float = 0, whole: bool = False) -> Any:
        if whole:
            return self.read.integer(key, default, minimum=minimum)
        return self.read.number(key, default, minimum=minimum)

    def boolean(self, key: str, default: bool) -> bool:
        return self.read.boolean(key, default)

    def text_list(self, key: str) -> list[str]:
        """A list of non-empty strings ([] when absent or wrong)."""
        return self.read.text_list(key) or []

    def headers(self, key: str) -> dict[str, Secret | str]:
        """A mapping of header names to values (values may be Secrets)."""
        value = self._get(key, False)
        if value is _MISSING:
            return {}
        if not isinstance(value, Mapping) or not all(
                isinstance(k, str) and isinstance(v, (str, Secret)) for k, v in value.items()):
            self.add(key, "expected a mapping of header names to string values")
            return {}
        framing = [name for name in value if name.lower() in FRAMING_HEADERS]
        for name in framing:
            self.add(f"{key}.{name}", "this header is set by idhooks (it frames the request)")
        for name, v in value.items():  # the value itself is never shown: it may be a secret
            text = v.reveal() if isinstance(v, Secret) else v
            if any(c in text for c in "\r\n\x00"):
                self.add(f"{key}.{name}", "a header value may not hold CR, LF or NUL (it would end the header)")
        return {name: v for name, v in value.items() if name not in framing}

    def url(self, key: str, *, required: bool = False, secret: bool = False) -> Any:
        """An absolute http(s) URL. With `secret` (the URL itself is a credential, e.g. a Slack webhook
        URL) the value is returned as it was given (possibly a Secret, revealed only to send); otherwise
        as text to build calls from. Either way its credential parts join `secrets()`."""
        value = self.secret_text(key, required=required)
        if value is None:
            return None
        plain = value.reveal() if isinstance(value, Secret) else value
        self._url_secrets += url_credentials(plain, source=f"destinations.{self.name}.{key}", whole=secret)
        try:
            parts = urlsplit(plain)
            valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        except ValueError:  # e.g. an unbalanced '[' in the host
            valid = False
        if not valid:
            self.add(key, "expected an absolute http:// or https:// URL")
            return None
        return value if secret else plain

    def secrets(self) -> list[Secret]:
        """Every secret of this destination: its Secret values and the credential parts of its URLs."""
        return find_secrets(self.node) + self._url_secrets

    def done(self) -> None:
        """Raise the collected problems, if any."""
        if self.problems:
            raise ConfigError(self.problems)
