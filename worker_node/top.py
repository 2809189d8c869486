"""`worker-node top`: a live table of every camera of one or more nodes, for people on call.

Node-side figures (state, source and published fps, reconnects) come from the nodes' describe
replies; received fps, frame age and drops are what this worker itself receives.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from framebus.common.cli_args import arg_type
from framebus.common.shutdown import ShutdownSignals
from framebus.common.units import parse_duration
from framebus.common.words import State
from framebus.worker_node import flags
from framebus.worker_node.sink import BaseSink, Driver, ReceiveOptions, ReceiverView
from framebus.worker_node.subscription import STALE

_STYLE: dict[str, str] = {
    State.STREAMING: "green",
    STALE: "bold red",
    State.RECONNECTING: "yellow",
    State.SOURCE_ERROR: "bold red",
    State.CONNECTING: "yellow",
}


def render(receiver: ReceiverView) -> Table:
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


class TopTable(BaseSink):
    """The table, redrawn in place every `refresh_s`: a sink (worker_node.sink) that only reads
    the statistics (frames feed them on their way through the receiver). `count` refreshes
    (0: no limit) end the run, for scripts and tests."""

    def __init__(self, refresh_s: float = 1.0, count: int = 0, console: Console | None = None) -> None:
        self.cadence = refresh_s
        self._count = count
        self._console = console or Console()
        self._stack = ExitStack()
        self._live: Live | None = None
        self.shown = 0

    @property
    def done(self) -> bool:
        return bool(self._count) and self.shown >= self._count

    def start(self, receiver: ReceiverView) -> None:
        live = Live(render(receiver), console=self._console, refresh_per_second=4, auto_refresh=False)
        self._live = self._stack.enter_context(live)
        self._stack.enter_context(logs_above(live))

    def on_tick(self, receiver: ReceiverView) -> None:
        if self._live is not None:
            self._live.update(render(receiver), refresh=True)
            self.shown += 1

    def close(self) -> None:
        self._stack.close()


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


# ---------------------------------------------------------------------------- `worker-node top`


def add_arguments(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    top = sub.add_parser(
        "top",
        help="a live table of cameras: state, fps, age, drops, reconnects",
        description="A table of every camera of the nodes, refreshed in place: state, received fps, frame age, "
        "frames dropped by conflation and reconnects. Ctrl-C quits.",
    )
    flags.add_nodes(top)
    top.add_argument(
        "--refresh", type=arg_type(parse_duration), default=1.0, metavar="T", help="refresh every T (default 1s)"
    )
    top.add_argument(
        "--count", type=arg_type(flags.positive_int), default=0, metavar="N", help="stop after N refreshes"
    )
    top.set_defaults(func=main)
    return top


def main(args: argparse.Namespace) -> int:
    """Refresh every --refresh until Ctrl-C (or --count refreshes)."""
    receive = ReceiveOptions(args.node, args.camera, access=flags.access(args))
    driver = Driver([TopTable(args.refresh, args.count)], receive, window_s=args.refresh)
    flags.serve_metrics_of(args, driver)
    driver.run(ShutdownSignals())
    return 0
