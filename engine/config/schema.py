"""One reader for every YAML mapping idhooks turns into typed values: config.yaml's sections, a destination
(actions/destination.py), the stateful rule keys (engine/match/stateful/specs.py) and the rule loader's
flags. Line lookup, did-you-mean, type checks and their messages live here once, so a key means the same
and is reported the same way wherever it is written.

Types (the same for every reader):
- A value has its YAML type. Text that came from `${ENV}` expansion (config.yaml only) is converted to the
  type the key needs, since an environment variable is always text.
- A boolean is `true` or `false`. YAML 1.1 words PyYAML reads as booleans when unquoted (`yes`, `no`,
  `on`, `off`) are booleans too, everywhere; quoted text (`"yes"`, `"1"`) is an error everywhere, except
  `true`/`false` (any case) from `${ENV}`.
- A whole number is a YAML integer (not a boolean); a number may also be a float.
- A duration is a number of seconds or text like `30s`, `10m`, `1h`, `7d` (engine/config/durations.py).

Settings classes declare their keys once, as dataclass fields made with `setting()`; `read_settings()`
reads every such field with the dataclass's own default, so adding a key is one edit.
"""

from __future__ import annotations

import dataclasses
import difflib
import reprlib
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from engine.config.durations import parse_duration

Report = Callable[[int, str, str], None]
"""report(line, where, message): collects one problem; `where` is the dotted key path (`delivery.workers`)."""

Expand = Callable[[str], str]
"""Expands `${ENV}` in a text value; raises ValueError naming the missing variable."""

_MISSING: Any = object()


def line_of(node: Any, key: Any = None) -> int:
    """The YAML line of `node` (or of its mapping key / list index `key`), 0 when unknown. Every reader
    uses this one lookup (the YAML loader records lines on LineDict / LineList)."""
    lookup = getattr(node, "line_of", None)
    if key is not None and lookup is not None:
        return int(lookup(key))
    return int(getattr(node, "line", 0))


def suggest(word: Any, options: Iterable[str]) -> str:
    """` (did you mean 'x'?)` when `word` is close to one of `options`, else ''."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def setting(default: Any, *, kind: str = "", minimum: float | None = None, maximum: float | None = None,
            above_zero: bool = False, shown: bool = True) -> Any:
    """A dataclass field that is a config key of the same name. `kind`: 'duration', or '' to go by the
    default's type (bool, int, float, str). Limits apply to numbers and durations; `shown=False` keeps the
    value out of the dataclass's repr (a URL that may hold a password)."""
    metadata = {"kind": kind or _kind_of(default), "minimum": minimum, "maximum": maximum,
                "above_zero": above_zero}
    return dataclasses.field(default=default, metadata={"setting": metadata}, repr=shown)


def _kind_of(default: Any) -> str:
    for kind, python in (("boolean", bool), ("integer", int), ("number", float), ("text", str)):
        if isinstance(default, python):
            return kind
    raise TypeError(f"setting(): give kind= for a default of {type(default).__name__}")


def setting_names(cls: type) -> tuple[str, ...]:
    """The keys a settings dataclass declares with setting()."""
    return tuple(f.name for f in dataclasses.fields(cls) if "setting" in f.metadata)


@dataclass
class Reader:
    """Reads typed values out of one YAML mapping at `where`, reporting every problem instead of stopping
    at the first. A node that is not a mapping reads as empty (report it with `expect_mapping()`)."""

    node: Any
    where: str
    report: Report
    expand: Expand | None = None
    line: int | None = None  # where the mapping's own problems are reported (default: its first line)

    def __post_init__(self) -> None:
        self.raw = self.node
        self.ok = isinstance(self.node, Mapping)
        if not self.ok:
            self.node = {}

    # -- reporting -------------------------------------------------------------------------------
    def path(self, key: Any = None) -> str:
        if key is None:
            return self.where
        return f"{self.where}.{key}" if self.where else str(key)

    def add(self, key: Any, message: str) -> None:
        """A problem of `key` (None: of the mapping itself), at its line."""
        if key is None or not self.ok:
            line = self.line if self.line is not None else line_of(self.raw)
        else:
            line = line_of(self.raw, key)
        self.report(line, self.path(key), message)

    def expect_mapping(self, what: str) -> bool:
        """Report unless the node is a mapping; `what` says what it should hold."""
        if not self.ok:
            self.add(None, f"expected a mapping {what}, got {short_repr(self.raw)}")
        return self.ok

    def check_keys(self, allowed: Iterable[str]) -> None:
        """Every key not in `allowed` is an error with a did-you-mean."""
        names = tuple(allowed)
        for key in self.node:
            if key not in names:
                self.unknown_key(key, names)

    def unknown_key(self, key: Any, names: tuple[str, ...]) -> None:
        self.add(key, f"unknown key{suggest(key, names)}; expected one of: {', '.join(names)}")

    def given(self, key: str, required: bool = False, what: str = "") -> bool:
        """Whether `key` is set; a missing required one is reported."""
        if key not in self.node and required:
            self.add(None, f"missing '{key}'" + (f" ({what})" if what else ""))
        return key in self.node

    # -- values ----------------------------------------------------------------------------------
    def _value(self, key: str, default: Any) -> tuple[Any, bool]:
        """(value, whether it is text from ${ENV}); `default` when absent or when the expansion failed."""
        if key not in self.node:
            return default, False
        value = self.node[key]
        if self.expand is None or not isinstance(value, str) or "${" not in value:
            return value, False
        try:
            return self.expand(value), True
        except ValueError as exc:
            self.add(key, str(exc))
            return default, False

    def value(self, key: str, default: Any = None) -> Any:
        """The value as written (text expanded), untyped."""
        return self._value(key, default)[0]

    def text(self, key: str, default: Any = None, *, required: bool = False, empty: bool = True) -> Any:
        if not self.given(key, required):
            return default
        value, _ = self._value(key, _MISSING)
        if value is _MISSING:
            return default
        if not isinstance(value, str) or (not empty and not value):
            self.add(key, f"expected {'non-empty ' if not empty else ''}text, got {short_repr(value)}")
            return default
        return value

    def boolean(self, key: str, default: bool) -> bool:
        value, from_env = self._value(key, default)
        if isinstance(value, bool):
            return value
        if from_env and isinstance(value, str) and value.strip().lower() in ("true", "false"):
            return value.strip().lower() == "true"
        self.add(key, f"expected true or false, got {short_repr(value)}")
        return default

    def integer(self, key: str, default: Any, *, minimum: float | None = 0, maximum: float | None = None,
                required: bool = False) -> Any:
        if not self.given(key, required, _integer_words(minimum, maximum)):
            return default
        value, from_env = self._value(key, _MISSING)
        if from_env:
            value = _to_number(value, int)
        if isinstance(value, bool) or not isinstance(value, int) or not _within(value, minimum, maximum):
            self.add(key, f"expected {_integer_words(minimum, maximum)}, got {short_repr(value)}")
            return default
        return value

    def number(self, key: str, default: Any, *, minimum: float | None = 0, maximum: float | None = None) -> Any:
        value, from_env = self._value(key, _MISSING)
        if value is _MISSING:
            return default
        if from_env:
            value = _to_number(value, float)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not _within(value, minimum, maximum) \
                or value != value:
            self.add(key, f"expected a number >= {_num(minimum or 0)}, got {short_repr(value)}" if maximum is None else
                     f"expected a number from {_num(minimum or 0)} to {_num(maximum)}, got {short_repr(value)}")
            return default
        return value

    def duration(self, key: str, default: Any, *, minimum: float | None = None, above_zero: bool = False,
                 required: bool = False) -> Any:
        if not self.given(key, required, "a duration like 30s, 10m, 1h"):
            return default
        value, _ = self._value(key, _MISSING)
        if value is _MISSING:
            return default
        try:
            seconds = parse_duration(value)
        except ValueError as exc:
            self.add(key, str(exc))
            return default
        if above_zero and seconds <= 0:
            self.add(key, "expected a duration above zero, e.g. 30s")
            return default
        if minimum is not None and seconds < minimum:
            self.add(key, f"must be at least {minimum:g}s, got {short_repr(value)}")
            return default
        return seconds

    def text_list(self, key: str, *, single: bool = False, what: str = "a list of strings",
                  max_items: int = 10_000) -> list[str] | None:
        """A list of non-empty strings (None when absent or wrong). With `single`, one string counts as a
        list of one."""
        if key not in self.node:
            return None
        value = self.node[key]
        items = [value] if single and isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(i, str) and i.strip() for i in items):
            self.add(key, f"expected {what}, got {short_repr(value)}")
            return None
        if len(items) > max_items:
            self.add(key, f"expected at most {max_items:,} items, got {len(items):,}")
            return None
        return list(items)

    def section(self, key: str) -> Reader:
        """The reader of the mapping under `key` (empty when absent; reported when not a mapping)."""
        value = self.node.get(key)
        reader = Reader(value, self.path(key), self.report, self.expand)
        if value is not None and not reader.ok:
            self.add(key, "expected a mapping of keys to values")
        return reader

    def setting(self, field: dataclasses.Field[Any]) -> Any:
        """One field declared with setting(), read with the field's default."""
        spec = field.metadata["setting"]
        kind, minimum, maximum = spec["kind"], spec["minimum"], spec["maximum"]
        if kind == "boolean":
            return self.boolean(field.name, bool(field.default))
        if kind == "integer":
            return self.integer(field.name, field.default, minimum=0 if minimum is None else minimum,
                                maximum=maximum)
        if kind == "number":
            return self.number(field.name, field.default, minimum=0 if minimum is None else minimum,
                               maximum=maximum)
        if kind == "duration":
            return self.duration(field.name, field.default, minimum=minimum, above_zero=spec["above_zero"])
        value = self.text(field.name, field.default)
        return value


def read_settings(cls: type, reader: Reader, *, extra_keys: Iterable[str] = (), skip: Iterable[str] = ()) -> dict[str, Any]:
    """Every setting() field of dataclass `cls` read from `reader` (defaults from the dataclass), as keyword
    arguments; unknown keys (not a field and not in `extra_keys`) are reported. `skip` names fields the
    caller reads itself."""
    reader.check_keys(setting_names(cls) + tuple(extra_keys))
    skipped = set(skip)
    return {f.name: reader.setting(f) for f in dataclasses.fields(cls) if "setting" in f.metadata
            and f.name not in skipped}


def _integer_words(minimum: float | None, maximum: float | None) -> str:
    if maximum is not None:
        return f"a whole number from {_num(minimum or 0)} to {_num(maximum)}"
    return f"a whole number >= {_num(minimum)}" if minimum is not None else "a whole number"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _within(value: float, minimum: float | None, maximum: float | None) -> bool:
    return (minimum is None or value >= minimum) and (maximum is None or value <= maximum)


def _to_number(text: Any, kind: type) -> Any:
    try:
        return kind(str(text).strip())
    except ValueError:
        return text


class _ShortRepr(reprlib.Repr):
    """reprlib's limits for YAML's list and dict subclasses too (LineList, LineDict)."""

    def repr1(self, x: Any, level: int) -> str:
        if isinstance(x, list) and type(x) is not list:
            return self.repr_list(x, level)
        if isinstance(x, dict) and type(x) is not dict:
            return self.repr_dict(x, level)
        return super().repr1(x, level)


_SHORT = _ShortRepr()
_SHORT.maxstring, _SHORT.maxother, _SHORT.maxlist, _SHORT.maxdict, _SHORT.maxlevel = 80, 80, 6, 6, 3


def short_repr(value: Any) -> str:
    """A value for an error message, cut short (a hostile file may hold a huge or deeply nested list)."""
    return _SHORT.repr(value)
