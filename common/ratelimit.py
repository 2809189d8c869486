"""Rate limits for what peers make us do: log lines (a rogue peer can send 10k bad messages/s),
sockets opened, requests answered."""

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


class LogBudget:
    """At most `count` lines per `interval` seconds per key, then a count of the others: for
    lines that are normally few (a camera subscribed) but that a peer can multiply."""

    def __init__(self, logger: logging.Logger, count: int = 32, interval: float = 60.0) -> None:
        self._logger = logger
        self._count = count
        self._interval = interval
        self._windows: dict[str, tuple[float, int]] = {}  # key -> (window start, lines in it)

    def info(self, key: str, message: str, *args: object) -> None:
        self.log(logging.INFO, key, message, *args)

    def warning(self, key: str, message: str, *args: object) -> None:
        self.log(logging.WARNING, key, message, *args)

    def log(self, level: int, key: str, message: str, *args: object) -> None:
        now = time.monotonic()
        if len(self._windows) >= MAX_KEYS and key not in self._windows:
            self._windows.clear()
        start, used = self._windows.get(key, (now, 0))
        if now - start >= self._interval:
            if used > self._count:
                self._logger.log(level, "%s: %d more such lines were not logged", key, used - self._count)
            start, used = now, 0
        used += 1
        self._windows[key] = (start, used)
        if used <= self._count:
            self._logger.log(level, message, *args)
        elif used == self._count + 1:
            self._logger.log(
                level, "%s: more than %d such lines in %.0f s; counting them instead", key, self._count, self._interval
            )


class TokenBucket:
    """`burst` at once, then `per_second`: the classic shape for work a peer can ask for."""

    def __init__(self, burst: float, per_second: float) -> None:
        self.burst, self.per_second = float(burst), per_second
        self.tokens = float(burst)
        self.updated = time.monotonic()

    def take(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True
