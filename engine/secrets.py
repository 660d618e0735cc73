"""Secrets that cannot leak by accident: `repr`, `str`, f-strings and logs show `***`."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit


class Secret:
    """A secret value. Only `reveal()` gives the value; everything else prints a mask."""

    __slots__ = ("_value", "source")

    def __init__(self, value: str, source: str = "") -> None:
        self._value = value
        self.source = source  # where it came from (env var name or file path), safe to show

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret({self.source or '***'})"

    def __str__(self) -> str:
        return "***"

    def __format__(self, spec: str) -> str:
        return "***"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(("Secret", self._value))

    def __reduce__(self):  # never pickled or copied into a payload by accident
        raise TypeError("a Secret cannot be serialised")


def read_secret_file(path: Path) -> str:
    """The file's content without the trailing whitespace editors add (a newline, CRLF from Windows editors,
    spaces); raises OSError if unreadable. A file of only whitespace gives '' (which config loading refuses)."""
    return Path(path).read_text(encoding="utf-8").rstrip()


def reveal(value: object) -> object:
    """`value` with every Secret inside (dicts, lists) replaced by its real value, for sending."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [reveal(v) for v in value]
    return value


def find_secrets(value: object) -> list[Secret]:
    """Every Secret inside `value` (dicts, lists), for redacting what an action or the config prints."""
    if isinstance(value, Secret):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in find_secrets(v)]
    if isinstance(value, list):
        return [s for v in value for s in find_secrets(v)]
    return []


def redact(text: str, secrets: list[Secret]) -> str:
    """`text` with every secret value replaced by `***` (for error messages and response snippets)."""
    for secret in secrets:
        value = secret.reveal()
        if value:
            text = text.replace(value, "***")
    return text


def url_credentials(url: str, source: str = "", *, whole: bool = False) -> list[Secret]:
    """Secrets for the parts of a URL that can carry a credential: the userinfo (`user:password@`), the
    password alone, the whole query and each query value, so a message quoting the URL shows `***`. With
    `whole` (a URL that is itself the credential, like a Slack webhook URL) also its path, which is what
    urllib3's errors quote."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return [Secret(url, source=source)] if whole else []
    found = [url] if whole else []
    if whole and len(parts.path) >= 8:
        found += [parts.path + (f"?{parts.query}" if parts.query else ""), parts.path]
    if "@" in parts.netloc:
        found.append(parts.netloc.rpartition("@")[0])
    if parts.password:
        found.append(parts.password)
    if parts.query:
        found.append(parts.query)
        found += [value for _, value in parse_qsl(parts.query) if len(value) >= 4]
    return [Secret(value, source=source) for value in dict.fromkeys(found) if value]


def redact_url(url: str) -> str:
    """`url` with any password (in the userinfo or a `password=` parameter) replaced by `***`."""
    parts = urlsplit(url)
    netloc, query = parts.netloc, parts.query
    if parts.password is not None:
        netloc = f"{parts.username or ''}:***@{netloc.rpartition('@')[2]}"
    if query:
        query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(query)], safe="*")
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
