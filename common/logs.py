"""One log format for every node: one line per event, to stderr, with secrets redacted."""

from __future__ import annotations

import logging
import sys
import threading
from types import TracebackType

from framebus.common.redact import Public, redact

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactingFormatter(logging.Formatter):
    """Every line, tracebacks included, passes through common.redact: a camera URL with its
    password can reach a log line from anywhere (an exception, a library, a peer's text)."""

    def format(self, record: logging.LogRecord) -> str:
        args = record.args if isinstance(record.args, tuple) else ()
        public = [a for a in args if isinstance(a, Public)]
        if not public:
            return redact(super().format(record))
        # Public values (CURVE public keys) are set aside while the line is redacted.
        marks = [f"\ue000{i}\ue001" for i in range(len(public))]
        it = iter(marks)
        record.args = tuple(next(it) if isinstance(a, Public) else a for a in args)
        try:
            line = redact(super().format(record))
        finally:
            record.args = args
        for mark, value in zip(marks, public, strict=True):
            line = line.replace(mark, value)
        return line


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
