"""The live per-camera status line a worker prints: fps, frame age, drops."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import TextIO

from common.redact import redact
from worker_node.subscription import Subscription


def format_line(sub: Subscription, extra: str = "") -> str:
    s = sub.stats
    line = (
        f"{sub.name:<16} {sub.status.state:<12} {s.fps:5.1f} fps  age {s.last_age_s * 1000:6.0f} ms  "
        f"dropped {s.dropped:<6} received {s.received:<7}"
    )
    if s.malformed:
        line += f" malformed {s.malformed}"
    if s.too_large:
        line += f" too large {s.too_large}"
    if sub.status.reason and sub.status.state != "streaming":
        line += f" ({redact(sub.status.reason)})"  # a node may be older than this worker
    return line + (f" {extra}" if extra else "")


def print_status(
    subs: Iterable[Subscription], out: TextIO = sys.stdout, extra: Callable[[Subscription], str] | None = None
) -> None:
    """One line per camera; `extra(sub)` adds what the worker itself has to say (files not saved)."""
    for sub in subs:
        sub.stats.roll_window()
        print(format_line(sub, extra(sub) if extra else ""), file=out, flush=True)
