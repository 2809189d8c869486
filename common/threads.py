"""Threads whose death is never silent.

A thread that raises ends quietly in Python (a traceback on stderr, and the process goes on
without it): a web viewer whose receiving thread died kept serving its last state as "streaming".
Here a thread's death is one clear log line (the traceback at DEBUG), is remembered, and asks the
process to stop (as SIGTERM would), so that its main loop ends and exits non-zero (failure()).
install() extends this to every thread of the process, started here or by a library.
"""

from __future__ import annotations

import _thread
import logging
import signal
import threading
from collections.abc import Callable

log = logging.getLogger("framebus.threads")

_failures: list[str] = []
_lock = threading.Lock()


def failure() -> str | None:
    """The first thread death of this process, in one line; None while none died."""
    with _lock:
        return _failures[0] if _failures else None


def died(thread_name: str, exc: BaseException, stop_process: bool = True) -> str:
    """Report a thread's death: one line at ERROR, the traceback at DEBUG. Returns the line."""
    line = f"thread {thread_name!r} died: {type(exc).__name__}: {str(exc)[:300]}"
    log.error("%s (a bug: please report it; --log-level DEBUG shows the traceback)", line)
    log.debug("traceback of thread %r", thread_name, exc_info=exc)
    with _lock:
        _failures.append(line)
    if stop_process:
        _thread.interrupt_main(signal.SIGTERM)  # wakes the main loop's poll like a SIGTERM
    return line


class WatchedThread(threading.Thread):
    """A daemon thread that reports its death (died()) and then calls `on_death` with the line,
    for an owner that handles it otherwise than by stopping the process."""

    def __init__(self, target: Callable[[], None], name: str, on_death: Callable[[str], None] | None = None) -> None:
        super().__init__(name=name, daemon=True)
        self._run_target = target
        self._on_death = on_death

    def run(self) -> None:
        try:
            self._run_target()
        except BaseException as exc:  # noqa: BLE001 - reported, never silent
            line = died(self.name, exc, stop_process=self._on_death is None)
            if self._on_death is not None:
                self._on_death(line)


def install() -> None:
    """Every thread of the process that dies of an exception is reported and stops the process."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None or isinstance(args.exc_value, SystemExit):
            return
        died(args.thread.name if args.thread else "?", args.exc_value)

    threading.excepthook = hook
