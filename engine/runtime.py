"""Holders for what a reload swaps: readers always see one whole config / rule set, never a half-loaded one."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class Current(Generic[T]):
    """The current value of something that reloads; `get()` is a plain attribute read (atomic in CPython)."""

    def __init__(self, value: T) -> None:
        self._value = value
        self._lock = threading.Lock()

    def get(self) -> T:
        return self._value

    def set(self, value: T) -> None:
        with self._lock:
            self._value = value
