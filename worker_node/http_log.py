"""The web viewer's log is not the clients': aiohttp logs every malformed request (a URL over
8 KiB, a broken header, a bad chunk) as an ERROR with a traceback, so any client on the network
could fill the log with tracebacks. Those become one WARNING line without traceback, at most
every REPEAT_S per kind of problem."""

from __future__ import annotations

import logging

from aiohttp.http_exceptions import HttpProcessingError

from framebus.common.ratelimit import RateLimitedLog

REPEAT_S = 30.0

log = logging.getLogger("worker_node.web")


class _ClientErrors(logging.Filter):
    def __init__(self) -> None:
        super().__init__()
        self._repeats = RateLimitedLog(log, REPEAT_S)

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if not isinstance(exc, HttpProcessingError):
            return True  # our own failures keep their traceback
        problem = (exc.message or type(exc).__name__).splitlines()[0][:120]
        peer = record.args[0] if isinstance(record.args, tuple) and record.args else "?"
        self._repeats.warning(
            type(exc).__name__, "refused a malformed HTTP request from %s (%s): %s", peer, exc.code, problem
        )
        return False


def quiet_client_errors() -> None:
    """Install once, before serving."""
    server_log = logging.getLogger("aiohttp.server")
    if not any(isinstance(f, _ClientErrors) for f in server_log.filters):
        server_log.addFilter(_ClientErrors())
