"""One log format for every node: one line per event, to stderr, with secrets redacted."""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType

from common.redact import redact

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Every line, tracebacks included, passes through common.redact: a camera URL with its
    password can reach a log line from anywhere (an exception, a library, a peer's text)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(RedactingFormatter(FORMAT))
    logging.basicConfig(level=level, handlers=[handler])
    # Uncaught exceptions go through the same formatter (Python would print them unredacted).
    sys.excepthook = _log_uncaught
    threading.excepthook = _log_uncaught_in_thread


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    logging.getLogger("uncaught").critical("uncaught exception", exc_info=(kind, exc, tb))


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None or args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    logging.getLogger("uncaught").critical(
        "thread %s died", name, exc_info=(args.exc_type, args.exc_value, args.exc_traceback)
    )
