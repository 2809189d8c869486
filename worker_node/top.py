"""`worker-node top`: a live table of every camera of one or more nodes, for people on call.

Node-side figures (state, source and published fps, reconnects) come from the nodes' describe
replies; received fps, frame age and drops are what this worker itself receives.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import zmq
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from common.shutdown import ShutdownSignals
from worker_node.access import Access
from worker_node.receiver import FrameReceiver

_STYLE = {
    "streaming": "green",
    "stale": "bold red",
    "reconnecting": "yellow",
    "source-error": "bold red",
    "connecting": "yellow",
    "not answering": "bold red",
}


def render(receiver: FrameReceiver) -> Table:
    table = Table(title=f"framebus top  {time.strftime('%H:%M:%S')}", expand=False)
    for column in (
        "camera",
        "node state",
        "received",
        "source fps",
        "published fps",
        "received fps",
        "age ms",
        "drops",
        "reconnects",
    ):
        table.add_column(column, justify="left" if column in ("camera", "node state", "received") else "right")
    problems = []
    for health in receiver.node_health():
        if not health.answering:
            table.add_row(escape(health.node), "[bold red]not answering[/]", "-", "-", "-", "-", "-", "-", "-")
            problems.append(f"node {escape(health.node)}: {escape(health.problem)}")
    if problems:
        table.caption = "\n".join(problems)
        table.caption_style = "red"
    names = sorted(set(receiver.camera_info) | set(receiver.subscriptions))
    for name in names:
        info = receiver.camera_info.get(name)
        sub = receiver.subscriptions.get(name)
        node_state = info.state if info else "?"
        status = sub.status.state if sub else "-"
        table.add_row(
            escape(name),
            f"[{_STYLE.get(node_state, '')}]{node_state}[/]" if node_state in _STYLE else node_state,
            f"[{_STYLE.get(status, '')}]{status}[/]" if status in _STYLE else status,
            f"{info.fps:.1f}" if info else "-",
            f"{info.published_fps:.1f}" if info else "-",
            f"{sub.stats.fps:.1f}" if sub else "-",
            f"{sub.stats.last_age_s * 1000:.0f}" if sub and sub.stats.received else "-",
            str(sub.stats.dropped) if sub else "-",
            str(info.reconnects) if info else "-",
        )
    return table


def run_top(
    nodes: Sequence[str], cameras: Sequence[str], refresh_s: float = 1.0, count: int = 0, access: Access | None = None
) -> int:
    """Refresh every refresh_s until Ctrl-C (or `count` refreshes, for scripts and tests)."""
    signals = ShutdownSignals()
    ctx = zmq.Context()
    receiver = FrameReceiver(ctx, nodes, cameras, wake_fd=signals.fd, access=access)
    console = Console()
    shown = 0
    try:
        with (
            Live(render(receiver), console=console, refresh_per_second=4, auto_refresh=False) as live,
            logs_above(live),
        ):
            next_refresh = time.monotonic() + refresh_s
            while not signals.requested and not (count and shown >= count):
                receiver.poll(max(0.0, next_refresh - time.monotonic()))  # frames only feed the statistics
                if time.monotonic() >= next_refresh:
                    for sub in receiver.subscriptions.values():
                        sub.stats.roll_window()
                    live.update(render(receiver), refresh=True)
                    shown += 1
                    next_refresh += refresh_s
    finally:
        receiver.close()
        ctx.destroy(0)
        signals.drain()
    return 0


class _ConsoleHandler(logging.Handler):
    def __init__(self, console: Console, formatter: logging.Formatter | None) -> None:
        super().__init__()
        self._console = console
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._console.print(self.format(record), markup=False, highlight=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - logging must not break the table
            self.handleError(record)


@contextmanager
def logs_above(live: Live) -> Iterator[None]:
    """Log lines written to the terminal behind Live's back shift its picture down: each redraw
    then starts lower and leaves the previous one on screen. While the table is live on a
    terminal, log lines go through its console, which prints them above the table."""
    root = logging.getLogger()
    if not live.console.is_terminal:
        yield
        return
    saved = root.handlers[:]
    formatter = next((h.formatter for h in saved if h.formatter), None)
    root.handlers = [_ConsoleHandler(live.console, formatter)]
    try:
        yield
    finally:
        root.handlers = saved
