"""Failed token attempts per client address: after `limit` wrong tokens within `window` seconds, an address is
refused (429, Retry-After) until that window ends, whatever it sends, a correct token included, so a guess
cannot be confirmed while it is refused. The API's bearer tokens and the console's login form share one table
(ApiDeps.throttle); the /metrics token has its own. A request that sends no token at all is not counted.

Without it, one client could try tokens as fast as the server answers. The table is bounded (`max_addresses`,
the oldest forgotten first), so a client rotating addresses costs memory up to that bound and no more. The
address is the one waitress gives (the proxy's X-Forwarded-For only with `server.trusted_proxy`). Counts are
per process; with `--processes N` an address may try N times `limit` per window."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from typing import Callable

from engine.errors import TooManyRequestsError

log = logging.getLogger("idhooks.auth")

LIMIT = 10
WINDOW = 60.0
MAX_ADDRESSES = 10_000


class FailedAuthThrottle:
    """Counts wrong tokens per address in fixed windows; `check` refuses an address over the limit."""

    def __init__(self, limit: int = LIMIT, window: float = WINDOW, max_addresses: int = MAX_ADDRESSES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window, self.max_addresses, self.clock = limit, window, max_addresses, clock
        self._windows: OrderedDict[str, tuple[float, int]] = OrderedDict()  # address -> (window start, failures)
        self._lock = threading.Lock()

    def check(self, address: str, what: str) -> None:
        """Raise TooManyRequestsError while `address` is refused."""
        now = self.clock()
        with self._lock:
            entry = self._windows.get(address)
        if entry is not None and entry[1] >= self.limit and now < entry[0] + self.window:
            wait = max(1, math.ceil(entry[0] + self.window - now))
            raise TooManyRequestsError(f"too many wrong tokens from your address for {what}; try again in {wait} s",
                                       retry_after=wait)

    def failed(self, address: str, what: str) -> None:
        """Count one wrong token from `address`; the one that reaches the limit is logged."""
        now = self.clock()
        with self._lock:
            start, count = self._windows.pop(address, (now, 0))
            if now >= start + self.window:
                start, count = now, 0
            self._windows[address] = (start, count + 1)  # the most recent last: the oldest is forgotten first
            while len(self._windows) > self.max_addresses:
                self._windows.popitem(last=False)
        if count + 1 == self.limit:
            log.warning("wrong tokens: refusing an address for the rest of the window",
                        extra={"address": address, "for": what, "failures": self.limit, "window": self.window})

    def __len__(self) -> int:
        with self._lock:
            return len(self._windows)
