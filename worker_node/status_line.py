"""The live per-camera status line a worker prints: fps, frame age, drops. A sink that shows
the statistics and never changes them (the driver rolls the fps window)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping
from typing import TextIO

from framebus.common.redact import redact
from framebus.common.words import State
from framebus.worker_node.sink import BaseSink, ReceiverView
from framebus.worker_node.subscription import Subscription


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
    if sub.status.reason and sub.status.state != State.STREAMING:
        line += f" ({redact(sub.status.reason)})"  # a node may be older than this worker
    return line + (f" {extra}" if extra else "")


def print_status(
    subs: Iterable[Subscription], out: TextIO = sys.stdout, notes: Mapping[str, object] | None = None
) -> None:
    """One line per camera; `notes[camera]` adds what the worker itself has to say (files not saved)."""
    for sub in subs:
        print(format_line(sub, str((notes or {}).get(sub.name, ""))), file=out, flush=True)


class StatusLine(BaseSink):
    """Prints the status lines every `every_s`. `notes()` is asked once per print for what the
    worker has to add per camera since the last one (and forgets it)."""

    def __init__(
        self,
        every_s: float,
        notes: Callable[[], Mapping[str, object]] | None = None,
        out: TextIO | None = None,
    ) -> None:
        self.cadence = every_s
        self._notes = notes
        self._out = out

    def on_tick(self, receiver: ReceiverView) -> None:
        notes = self._notes() if self._notes else {}
        print_status(receiver.subscriptions.values(), self._out or sys.stdout, notes)
