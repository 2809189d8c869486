"""Console-script entry points that are quiet from the first instant.

A node spends its first ~0.5 s (seconds on a loaded Pi) importing OpenCV, NumPy and ZeroMQ,
before it installs its own signal handlers. A Ctrl-C in that window printed a KeyboardInterrupt
traceback, and a SIGTERM (systemd stopping a unit that just started) killed it with -15. Here
the handlers come first, from the standard library alone: a stop request before the node is
running ends it at once with status 0, as a stop request to a running node does (it has nothing
to clean up yet). A capture node's SIGHUP (reload) before there is a config to reload is
ignored; a worker has no reload, and a SIGHUP (its terminal closed) stops it like the others.
The node's own handlers replace these once it runs.
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
from types import FrameType


def _stop_now(_signum: int, _frame: FrameType | None) -> None:
    os._exit(0)  # mid-import: nothing opened yet, and unwinding an import half-way helps no one


def _run(target: str, reloads: bool) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) is not signal.SIG_IGN:  # ignored (nohup, a shell's background job): keep so
            signal.signal(sig, signal.SIG_IGN if reloads and sig == signal.SIGHUP else _stop_now)
    module, _, function = target.partition(":")
    sys.exit(getattr(importlib.import_module(module), function)())


def capture_node() -> None:
    _run("framebus.capture_node.cli:main", reloads=True)


def worker_node() -> None:
    _run("framebus.worker_node.cli:main", reloads=False)
