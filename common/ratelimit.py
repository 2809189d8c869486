"""Log a recurring problem without flooding the log (a rogue peer can send 10k bad messages/s)."""

from __future__ import annotations

import logging
import time

MAX_KEYS = 1024


class RateLimitedLog:
    """At most one line per `interval` seconds per key; says how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, message: str, *args: object) -> None:
        self.log(logging.WARNING, key, message, *args)

    def log(self, level: int, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if len(self._last) >= MAX_KEYS and key not in self._last:
            self._last.clear()  # keys can come from the network (a peer's key): stay bounded
            self._suppressed.clear()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += f" ({suppressed} similar suppressed)"
        self._logger.log(level, message, *args)
